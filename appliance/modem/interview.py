"""The questions every modem is asked on meeting it, written once for the engine
(start-up and health check) and for ``probe``: who it is (TS 27.007 §5.1-5.4), which
subscriber its SIM carries (§5.6 +CIMI), and how it sees the network: signal (§8.5
+CSQ), registration in each domain (§7.2, §10.1.20, §10.1.22, §10.1.52) and operator
(§7.3 +COPS).

The interview owns no port: it asks through ``ask``, a callable that runs one command
and returns its answer lines. Each caller passes its own, so the engine keeps its one
owner thread and its own policy for a refusal (the engine's health check lets a refused
+CSQ fail, the probe turns every refusal into a note); the answers are read by
atvalues.py and atregistration.py. What only the engine does (unlocking the SIM, choosing
storage and +CNMI with atsms.py's rules) and what only the probe asks (+CNUM, +CPMS?
counts) stay with them: the probe must change nothing on a modem it looks at.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, field

from ..errors import ModemCommandError
from .atregistration import Registration, parse_registration
from .atvalues import Operator, Signal, parse_operator, parse_signal, parse_text_answer

#: Runs one AT command and returns its information lines. A refusal either comes back as
#: no lines or raises ModemCommandError (then see each function for what it skips).
Ask = Callable[[str], Sequence[str]]

#: TS 27.007 §5.1 +CGMI, §5.2 +CGMM, §5.3 +CGMR, §5.4 +CGSN, in the order they are asked.
IDENTITY_COMMANDS = (("manufacturer", "AT+CGMI"), ("model", "AT+CGMM"),
                     ("revision", "AT+CGMR"), ("imei", "AT+CGSN"))


@dataclass(frozen=True)
class Identity:
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    imei: str = ""
    imsi: str = ""   # asked only once the SIM is ready: a locked SIM refuses +CIMI

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def identify(ask: Ask, *, imsi: bool = False) -> Identity:
    """Ask the modem who it is; with ``imsi`` (the SIM is known to be ready) also which
    subscriber it carries."""
    values = {key: parse_text_answer(ask(cmd)) for key, cmd in IDENTITY_COMMANDS}
    if imsi:
        values["imsi"] = read_imsi(ask)
    return Identity(**values)


def read_imsi(ask: Ask) -> str:
    """TS 27.007 §5.6 +CIMI: the SIM's subscriber identity."""
    return parse_text_answer(ask("AT+CIMI"))


@dataclass(frozen=True)
class NetworkReading:
    """One look at the network. ``signal`` and ``operator`` are None when not answered
    (``+COPS: 0``, registered to none, names no operator); ``registrations`` holds the
    last report of each domain that answered."""

    signal: Signal | None
    registrations: Mapping[str, Registration] = field(default_factory=dict)
    operator: Operator | None = None


def read_network(ask: Ask, registrations: Sequence[str], *,
                 quiet: Ask | None = None) -> NetworkReading:
    """Signal, the read form of each registration command in ``registrations`` (``+CREG``
    first), then the operator by its long name.

    A refused +CSQ is the caller's to handle (it propagates). A refused registration read
    is skipped: a 2G-only modem refuses +CEREG. ``quiet``, when given, asks every
    registration but the first (the probe: a refusal there is not worth a note). A refused
    ``AT+COPS=3,0`` or ``AT+COPS?`` leaves ``operator`` None."""
    signal = parse_signal(ask("AT+CSQ"))
    regs: dict[str, Registration] = {}
    for i, name in enumerate(registrations):
        run = quiet if quiet is not None and i > 0 else ask
        try:
            lines = run(f"AT{name}?")
        except ModemCommandError:
            continue
        for line in lines:
            if reg := parse_registration(line, solicited=True):
                regs[reg.command] = reg
    try:
        ask("AT+COPS=3,0")   # TS 27.007 §7.3: <format> 0, the long alphanumeric name
        operator = parse_operator(ask("AT+COPS?"))
    except ModemCommandError:
        operator = None
    return NetworkReading(signal, regs, operator)
