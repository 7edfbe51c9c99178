"""The two ports of a modem's owner thread, and the reply values that cross them.

The engine (:mod:`appliance.modem.engine`) knows nothing of state.db, the registry or the
policy of a bank of modems. What it receives goes to an :class:`InboxPort`; the replies it
sends come from, and their fate goes back to, an :class:`OutboxPort`. The service is the
inbox (:class:`appliance.service.unit.Service`); the outbox is
:class:`appliance.outbox.Outbox`. Both are called from the owner thread, so the path of
one SMS has no thread hop; each
call returns only once what it reports is committed.

The values are frozen dataclasses: an owner thread never shares a mutable object with the
rest of the unit.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

from ..errors import PduError
from .contract import ModemStatus
from .pdu_decode import Deliver, StatusReport

#: Part states that still wait for the radio (sent again as they are, same PDU).
UNSENT_PARTS = ("pending", "unsent")


@dataclass(frozen=True)
class PlanPart:
    """One part of a reply's encoding, as persisted: sent byte for byte as it is."""

    seq: int
    total: int
    concat_ref: int | None
    pdu: str
    status: str = "pending"

    @property
    def tpdu_length(self) -> int:
        """Octets after the SMSC prefix: what AT+CMGS/AT+CMGW want (TS 27.005 §3.5.1)."""
        return len(self.pdu) // 2 - 1 - int(self.pdu[:2], 16)


@dataclass(frozen=True)
class Job:
    """A reply claimed by one modem's owner thread; ``parts`` is its encoding for this
    modem (empty: not encoded yet, the sender encodes it and persists the plan first)."""

    outbound_id: int
    recipient: str
    text: str
    attempt: int
    modem: str
    plan: int = 0
    parts: tuple[PlanPart, ...] = ()
    sim_attempts: int = 0


@dataclass(frozen=True)
class SubmittedPart:
    """A part handed to the modem: ``mr`` is the TP-MR of ``+CMGS``/``+CMSS`` (None while
    it is only written to the modem's memory, ``storage_index`` being its slot)."""

    seq: int
    total: int
    concat_ref: int | None
    mr: int | None
    submitted_at: float
    storage_index: int | None = None
    pdu: str | None = None


@dataclass(frozen=True)
class StoredPart:
    """A part written to a modem's memory whose AT+CMSS was not seen answered."""

    part_id: int
    outbound_id: int
    storage_index: int
    pdu: str


class InboxPort(Protocol):
    """Where a modem's owner thread hands what the modem reports."""

    def on_inbound(self, modem: str, pdu_hex: str, decoded: Deliver | PduError) -> None:
        """An SMS read from the SIM (or a PDU that would not decode, to be quarantined).
        Returns once it is committed; the engine deletes it from the SIM only then."""

    def on_status(self, status: ModemStatus) -> None:
        """The modem's state, signal or identity changed."""

    def on_balance(self, modem: str, amount: float | None, text: str) -> None:
        """A balance check answered (``amount`` None: the answer was not understood)."""


class OutboxPort(Protocol):
    """Where a modem's owner thread takes its next reply, and reports how it went."""

    def next_job(self, modem: str) -> Job | None:
        """The next reply for this modem now, or None (nothing due, or paced, or capped)."""

    def plan_encoded(self, job: Job, parts: list[PlanPart]) -> Job:
        """Persist a reply's one encoding before its first part leaves."""

    def part_stored(self, job: Job, part: SubmittedPart) -> None:
        """A part is in the modem's memory (``+CMGW``), about to be sent (``AT+CMSS``)."""

    def part_sent(self, job: Job, part: SubmittedPart) -> None:
        """A part left (``+CMGS``/``+CMSS: mr``): recorded before the next one starts."""

    def job_done(self, job: Job, error: BaseException | None,
                 parts: list[SubmittedPart]) -> None:
        """The reply's turn on this modem is over: sent, or ``error`` (retry, move, fail)."""

    def stored_parts(self, modem: str) -> list[StoredPart]:
        """Parts left in this modem's memory by a crash, to be asked about at start-up."""

    def part_resolved(self, part: StoredPart, *, sent: bool, mr: int | None) -> None:
        """What the modem said about one of :meth:`stored_parts`."""

    def recovery_done(self, modem: str) -> None:
        """Every stored part of this modem is resolved: its replies may resume."""

    def on_status_report(self, modem: str, report: StatusReport) -> None:
        """A delivery report (TS 23.040 SMS-STATUS-REPORT) for a part this modem sent."""

    def on_status(self, status: ModemStatus) -> None:
        """The modem's state changed: it may take replies, or its replies may move."""
