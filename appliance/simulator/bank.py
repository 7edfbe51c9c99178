"""A bank of simulated GSM modems on ptys and the network around them.

The appliance is tested, demonstrated and rehearsed without hardware through this module:
each modem is a pty whose slave is symlinked as ``DIR/sim0`` … (so a configuration names
it like a real ``/dev/serial/by-path`` port), speaking real AT in PDU mode with a family's
quirks (:mod:`appliance.simulator.profiles`), finite SIM storage and run-time faults (:class:`Faults`).
Citizens are handsets with numbers: :meth:`Simulator.citizen_send` puts their SMS on a
modem, :meth:`Simulator.inbox` shows what the appliance answered them, and every submitted
PDU is kept in :attr:`Simulator.submitted` — decoded by the simulator's own codec, so the
appliance's codec is judged by an independent implementation.

Example::

    with Simulator(tmp_path, modems=2, profile="sim800,ec25", time_scale=0.01) as sim:
        sim.citizen_send("+923001234567", "sim0", "35202-1234567-1")
        assert sim.wait_for(lambda: sim.inbox("+923001234567"), timeout=10)
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from types import TracebackType

from appliance.simulator.faults import Faults
from appliance.simulator.modem import SimModem, StoredSms
from appliance.simulator.network import Network, Received, SubmittedPart
from appliance.simulator.pdu import Alphabet
from appliance.simulator.profiles import PROFILES, operator_named, profile_named

__all__ = ["Faults", "ModemSpec", "Received", "SimModem", "Simulator", "StoredSms",
           "SubmittedPart", "PROFILES"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ModemSpec:
    """How to build one modem; None means "the simulator's default for this position"."""

    name: str | None = None
    profile: str | None = None
    number: str | None = None
    operator: str = "Jazz"
    pin: str | None = None          # the SIM asks for this PIN at every power-up
    sim_capacity: int | None = None  # SM slots; the profile's default otherwise
    balance: float = 123.45         # what *123# reports


class Simulator:
    """The modem bank and its network. Thread-safe; use as a context manager."""

    def __init__(self, directory: Path | str, modems: int | list[ModemSpec] = 4, *,
                 profile: str = "sim800", time_scale: float = 1.0, seed: int = 0) -> None:
        self.directory = Path(directory)
        self.time_scale = time_scale
        self.network = Network(seed=seed)
        specs = [ModemSpec() for _ in range(modems)] if isinstance(modems, int) else modems
        profiles = [p.strip() for p in profile.split(",") if p.strip()]
        if not profiles:
            raise ValueError("profile must name at least one modem family")
        self.modems: list[SimModem] = []
        for i, spec in enumerate(specs):
            family = profile_named(spec.profile or profiles[i % len(profiles)])
            modem = SimModem(
                name=spec.name or f"sim{i}", index=i, profile=family,
                operator=operator_named(spec.operator),
                number=spec.number or f"+9230000000{i:02d}", pin=spec.pin,
                sim_capacity=spec.sim_capacity or family.sim_capacity,
                balance=spec.balance, directory=self.directory, network=self.network,
                time_scale=time_scale, seed=seed)
            self.modems.append(modem)
            self.network.add_modem(modem)
        names = [m.name for m in self.modems]
        if len(set(names)) != len(names):
            raise ValueError(f"modem names must be unique, got {names}")
        self._started = False

    # --- lifecycle ---------------------------------------------------------------------------

    def start(self) -> Simulator:
        self.directory.mkdir(parents=True, exist_ok=True)
        for modem in self.modems:
            modem.start()
        self._started = True
        log.info("simulator: %d modems in %s", len(self.modems), self.directory)
        return self

    def stop(self) -> None:
        if not self._started:
            return
        self._started = False
        for modem in self.modems:
            modem.stop()

    def __enter__(self) -> Simulator:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    # --- driving it ----------------------------------------------------------------------------

    def modem(self, which: str | int) -> SimModem:
        """A modem by name ("sim0"), by SIM number, or by position."""
        if isinstance(which, int):
            return self.modems[which]
        for modem in self.modems:
            if which in (modem.name, modem.number):
                return modem
        raise KeyError(f"no simulated modem {which!r}; have "
                       f"{', '.join(m.name for m in self.modems)}")

    def citizen_send(self, sender: str, modem: str | int, text: str, *,
                     store_only: bool = False, alphabet: Alphabet | None = None,
                     ref16: bool = False, sent_at: datetime | None = None) -> None:
        """Citizen ``sender`` texts ``modem``; long text arrives as concatenated parts.

        ``store_only``: the message is already on the SIM when the appliance starts (no URC,
        even before :meth:`start`). ``ref16`` uses 16-bit concatenation references.
        ``sent_at`` (timezone-aware): the SMSC timestamp, e.g. days ago for a SIM that comes
        with its previous owner's messages; ``sender`` may be alphanumeric ("Jazz").
        """
        self.network.citizen_send(sender, self.modem(modem), text, store_only=store_only,
                                  alphabet=alphabet, ref16=ref16, sent_at=sent_at)

    def store_pdu(self, modem: str | int, pdu: str, tpdu_length: int | None = None, *,
                  notify: bool = True) -> None:
        """Deliver a raw SMS-DELIVER PDU (hex, SMSC prefix included), e.g. from a real phone."""
        if tpdu_length is None:
            tpdu_length = len(pdu) // 2 - 1 - int(pdu[:2], 16)
        self.network.store_pdu(self.modem(modem), pdu.upper(), tpdu_length, notify=notify)

    # --- observing it --------------------------------------------------------------------------

    def inbox(self, number: str) -> list[str]:
        """Complete texts handset ``number`` received, in order."""
        return [r.text for r in self.network.inbox(number)]

    def inbox_messages(self, number: str) -> list[Received]:
        return self.network.inbox(number)

    @property
    def submitted(self) -> list[SubmittedPart]:
        """Every SMS-SUBMIT part the modems accepted, in order (a copy)."""
        with self.network.lock:
            return list(self.network.submitted)

    def deliveries_count(self) -> int:
        """SMS-DELIVER parts the network has handed to modems (stored or sent as +CMT)."""
        with self.network.lock:
            return self.network.deliveries

    def deferred_count(self) -> int:
        """Parts that had to wait in the network (modem full, off or unregistered)."""
        with self.network.lock:
            return self.network.deferred

    def wait_for(self, predicate: Callable[[], object], timeout: float = 5.0) -> bool:
        """Wait until ``predicate()`` is truthy; False after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        with self.network.changed:
            while not predicate():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                # Re-check at least every 50 ms: some conditions (a client's own state)
                # change without the network noticing.
                self.network.changed.wait(min(remaining, 0.05))
        return True

    def config_snippet(self) -> str:
        """A ``[[modems]]`` TOML fragment naming every simulated port."""
        blocks = [f'[[modems]]\nname = "{m.name}"\nport = "{m.port}"\n'
                  f'# profile {m.profile.name}, SIM number {m.number}' for m in self.modems]
        return "\n\n".join(blocks) + "\n"
