"""The simulated GSM network: an SMSC between the modem bank and citizens' handsets.

Citizens' messages become SMS-DELIVER parts in a modem's storage; what the modems submit
is decoded, captured for tests and reassembled into the recipient handset's inbox. Like a
real SMSC it keeps a message it cannot deliver (modem unplugged, unregistered, SIM full)
and retries when the modem can take it again, in order. One re-entrant lock guards the
network and every modem's state, so no lock ordering can deadlock; it is held only for
microseconds at a time, never across a simulated delay.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import defaultdict, deque
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING

from appliance.simulator import pdu as sim_pdu
from appliance.simulator.pdu import PAKISTAN, Alphabet, Concat, EncodedPdu, Submit

if TYPE_CHECKING:
    from appliance.simulator.modem import SimModem

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class SubmittedPart:
    """One SMS-SUBMIT as the network received it from ``AT+CMGS``."""

    modem: str
    pdu: str
    recipient: str
    text: str
    concat: Concat | None
    time: float
    mr: int
    status_report: bool
    submit: Submit


@dataclass(frozen=True)
class Received:
    """A complete message in a handset's inbox (parts already reassembled)."""

    sender: str
    text: str
    modem: str
    time: float
    parts: int


@dataclass
class _Pending:
    kind: str  # "deliver" or "status-report"
    pdu: EncodedPdu
    notify: bool = True
    force: bool = False


def handset_number(raw: str) -> str:
    """The handset a submitted address reaches: +92… as is, national 03… made international.

    Anything else (92… without '+', TON unknown) is kept verbatim, so a sender that forgets
    the '+' is seen failing to reach the citizen instead of being quietly corrected.
    """
    if len(raw) == 11 and raw.startswith("03") and raw.isdigit():
        return "+92" + raw[1:]
    return raw


class Network:
    """Routing, capture and store-and-forward; see the module docstring."""

    def __init__(self, *, seed: int = 0) -> None:
        self.lock = threading.RLock()
        self.changed = threading.Condition(self.lock)
        self.modems: dict[str, SimModem] = {}
        self.submitted: list[SubmittedPart] = []
        self.deliveries = 0       # SMS-DELIVER parts handed to modems
        self.deferred = 0         # parts that had to wait in the network at least once
        self.status_reports = 0
        self._inboxes: dict[str, list[Received]] = defaultdict(list)
        self._partial: dict[tuple[str, str, int, int, bool], dict[int, str]] = {}
        self._pending: dict[str, deque[_Pending]] = defaultdict(deque)
        self._rng = random.Random(seed)
        self._refs: dict[str, int] = {}

    def add_modem(self, modem: SimModem) -> None:
        with self.lock:
            self.modems[modem.name] = modem

    # --- citizen → modem ---------------------------------------------------------------------

    def citizen_send(self, sender: str, modem: SimModem, text: str, *, store_only: bool = False,
                     alphabet: Alphabet | None = None, ref16: bool = False,
                     sent_at: datetime | None = None) -> list[EncodedPdu]:
        """A handset sends ``text`` to ``modem``'s number; returns the DELIVER parts.
        ``sent_at``: the SMSC timestamp, if not now (a message that waited on the SIM)."""
        with self.lock:
            ref = self._refs.get(sender, self._rng.randrange(0x10000))
            self._refs[sender] = (ref + 1) % 0x10000
            parts = sim_pdu.encode_deliver(
                sender, text, smsc=modem.operator.smsc, alphabet=alphabet,
                timestamp=(sent_at or datetime.now(PAKISTAN)).replace(microsecond=0),
                reference=ref, ref16=ref16)
            for part in parts:
                self._enqueue(modem, _Pending("deliver", part, not store_only, store_only))
            return parts

    def store_pdu(self, modem: SimModem, pdu: str, tpdu_length: int, *,
                  notify: bool = True) -> None:
        """Deliver a ready-made SMS-DELIVER PDU (e.g. one captured from a real phone)."""
        with self.lock:
            self._enqueue(modem, _Pending("deliver", EncodedPdu(pdu, tpdu_length),
                                          notify, not notify))

    def retry(self, modem: SimModem) -> None:
        """Offer waiting messages again, oldest first, until one is refused."""
        with self.lock:
            waiting = self._pending.get(modem.name)
            while waiting and self._offer(modem, waiting[0]):
                waiting.popleft()
            self.changed.notify_all()

    def pending(self, modem: SimModem) -> int:
        with self.lock:
            return len(self._pending.get(modem.name, ()))

    def _enqueue(self, modem: SimModem, item: _Pending) -> None:
        waiting = self._pending[modem.name]
        if waiting or not self._offer(modem, item):
            if item.kind == "deliver":
                self.deferred += 1
            log.info("network: %s for %s waits (modem off, unregistered or full)",
                     item.kind, modem.name)
            waiting.append(item)
        self.changed.notify_all()

    def _offer(self, modem: SimModem, item: _Pending) -> bool:
        if item.kind == "status-report":
            return modem.accept_status_report(item.pdu)
        if modem.accept_deliver(item.pdu, notify=item.notify, force=item.force):
            self.deliveries += 1
            return True
        return False

    # --- modem → handset -----------------------------------------------------------------------

    def on_submit(self, modem: SimModem, submit: Submit, pdu: str, mr: int) -> None:
        """Capture a submitted part, deliver it, and schedule its status report if asked."""
        with self.lock:
            now = time.time()
            self.submitted.append(SubmittedPart(modem.name, pdu, submit.recipient, submit.text,
                                                submit.concat, now, mr, submit.status_report,
                                                submit))
            log.info("network: %s submitted mr=%d to %s (%s)", modem.name, mr,
                     submit.recipient, f"part {submit.concat.seq}/{submit.concat.total}"
                     if submit.concat else "single part")
            text, count = self._reassemble(modem, submit)
            if text is not None:
                self._hand_over(modem, handset_number(submit.recipient), text, count, now)
            if submit.status_report:
                smsc = submit.smsc or modem.smsc
                submitted_at = datetime.now(PAKISTAN).replace(microsecond=0)
                modem.schedule(modem.scaled(modem.faults.report_delay),
                               lambda: self._report(modem, smsc, mr, submit.recipient,
                                                    submitted_at))
            self.changed.notify_all()

    def _reassemble(self, modem: SimModem, submit: Submit) -> tuple[str | None, int]:
        concat = submit.concat
        if concat is None or concat.total == 1:
            return sim_pdu.join_texts([submit.text]), 1
        key = (submit.recipient, modem.number, concat.reference, concat.total, concat.ref16)
        parts = self._partial.setdefault(key, {})
        parts[concat.seq] = submit.text
        if len(parts) < concat.total:
            return None, 0
        del self._partial[key]
        return sim_pdu.join_texts([parts[i] for i in sorted(parts)]), concat.total

    def _hand_over(self, modem: SimModem, number: str, text: str, parts: int,
                   now: float) -> None:
        target = next((m for m in self.modems.values() if m.number == number), None)
        if target is not None:  # modem to modem: it arrives as a fresh SMS-DELIVER
            self.citizen_send(modem.number, target, text)
            return
        self._inboxes[number].append(Received(modem.number, text, modem.name, now, parts))

    def _report(self, modem: SimModem, smsc: str, mr: int, recipient: str,
                submitted_at: datetime) -> None:
        pdu = sim_pdu.encode_status_report(
            smsc=smsc, mr=mr, recipient=recipient, submitted=submitted_at,
            discharged=datetime.now(PAKISTAN).replace(microsecond=0))
        self.status_reports += 1
        self._enqueue(modem, _Pending("status-report", pdu))

    # --- what tests read ------------------------------------------------------------------------

    def inbox(self, number: str) -> list[Received]:
        with self.lock:
            return list(self._inboxes.get(handset_number(number), ()))

    def numbers(self) -> list[str]:
        with self.lock:
            return sorted(self._inboxes)
