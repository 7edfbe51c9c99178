"""The send half of a modem's owner thread: one reply, all its parts back to back.

It runs only in the owner thread (:class:`~appliance.modem.engine.Modem`), which asks the
outbox for a job between two reads and hands it here. A part leaves in one of two ways:

* ``stored`` (the default): ``AT+CMGW`` writes the PDU to the modem's memory, the part is
  committed with its slot, ``AT+CMSS`` sends it, ``+CMSS: mr`` is committed, ``AT+CMGD``
  frees the slot. A crash at any point leaves either nothing on the modem (the part is sent
  again) or a slot whose <stat> says whether it left (:meth:`Sender.resolve_stored`, at the
  next start), so a reply cut by a crash is completed without a duplicate.
* ``direct``: ``AT+CMGS``, one exchange per part; a part on the air when the unit dies has
  no recorded ``+CMGS: mr`` and is sent again.

A reply is encoded once, for the modem that first claims it: its parts, concatenation
reference and PDUs are persisted (``outbox.plan_encoded``) before the first part leaves.
Whatever stops it (a refused part, a timeout, an unplug, a crash), it resumes later at its
first unsent part with the very same PDUs, so the citizen's phone joins the parts by
(sender, reference) into one message. Each part is recorded (``outbox.part_sent``) before
the next one starts, and the reply's outcome goes to ``outbox.job_done``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from datetime import timedelta

from ..errors import ModemCommandError, ModemError, ModemTimeout, PduError
from . import pdu as pdumod
from .answers import parse_cmgr
from .contract import ModemSettings
from .ports import UNSENT_PARTS, Job, OutboxPort, PlanPart, SubmittedPart
from .session import ATSession


class Sender:
    """Sends the replies of one modem; owned and called by its owner thread only."""

    def __init__(self, settings: ModemSettings, outbox: OutboxPort, log: logging.Logger, *,
                 concat_ref_start: int = 0, on_part: Callable[[], None],
                 on_failure: Callable[[str], None]) -> None:
        self.settings = settings
        self.name = settings.name
        self._outbox = outbox
        self.log = log
        self._refs = pdumod.ConcatRefCounter(concat_ref_start,
                                             bits=16 if settings.concat_ref16 else 8)
        self._on_part = on_part
        self._on_failure = on_failure

    def send(self, sess: ATSession, job: Job, *, stored: bool) -> None:
        """Send ``job``'s unsent parts: from the modem's memory (``stored``) or with
        ``AT+CMGS``; the engine chose which at init, from what the modem offers."""
        s = self.settings
        sent: list[SubmittedPart] = []
        error: BaseException | None = None
        try:
            if not job.parts:
                job = self._outbox.plan_encoded(job, self._encode(job))
            for p in job.parts:
                if p.status not in UNSENT_PARTS and p.status != "stored":
                    continue  # left before: never sent twice, never re-encoded
                started = time.time()  # "submitted" = handed to the modem
                index = None
                if stored:
                    mr, index = self._send_stored(sess, job, p, started)
                else:
                    mr = sess.submit(p.tpdu_length, p.pdu, prompt_timeout=s.command_timeout_s,
                                     timeout=s.send_timeout_s)
                part = SubmittedPart(p.seq, p.total, p.concat_ref, mr, started)
                sent.append(part)
                # Recorded before the slot is deleted: a stop or a crash in between must
                # not make a sent part look unsent (it would be sent again).
                self._outbox.part_sent(job, part)
                if index is not None:
                    self._delete_quietly(sess, index)
                self._on_part()
        except (ModemCommandError, PduError) as exc:
            error = exc
        except ModemError as exc:  # timeout or port gone: report, then recover
            error = exc
            self._finish(job, error, sent)
            raise
        self._finish(job, error, sent)

    def _encode(self, job: Job) -> list[PlanPart]:
        """The reply's one encoding on this modem: a fresh concatenation reference."""
        s = self.settings
        n, _ = pdumod.count_parts(job.text, ref16=s.concat_ref16)
        ref = self._refs.next() if n > 1 else None
        validity = timedelta(hours=s.validity_hours) if s.validity_hours else None
        parts = pdumod.encode_submit(job.recipient, job.text, reference=ref,
                                     ref16=s.concat_ref16, status_report=s.status_reports,
                                     validity=validity, country_code=s.country_code)
        return [PlanPart(p.seq, p.total, p.reference, p.pdu) for p in parts]

    def _send_stored(self, sess: ATSession, job: Job, p: PlanPart,
                     started: float) -> tuple[int | None, int | None]:
        """Write, record, send from memory (the caller records, then deletes): a crash at
        any point leaves either no trace on the modem (sent again) or a slot whose <stat>
        says whether it left. Returns (mr, index to delete)."""
        s = self.settings
        try:
            index = sess.write_submit(p.tpdu_length, p.pdu, timeout=s.command_timeout_s)
        except ModemCommandError as exc:
            if exc.kind != "CMS" or exc.code != 322:
                raise
            # Memory full (TS 27.005 §3.2.5): a burst of inbound SMS fills the SIM faster
            # than sweeps drain it. Send this part directly rather than fail the reply, and
            # drain the SIM next (the session noted the 322).
            return sess.submit(p.tpdu_length, p.pdu, prompt_timeout=s.command_timeout_s,
                               timeout=s.send_timeout_s), None
        self._outbox.part_stored(job, SubmittedPart(p.seq, p.total, p.concat_ref, None, started,
                                                    storage_index=index, pdu=p.pdu))
        try:
            mr = sess.send_stored(index, timeout=s.send_timeout_s)
        except ModemCommandError:
            self._delete_quietly(sess, index)  # refused: it never left
            raise
        except ModemTimeout:
            # The network took longer than send_timeout_s. The modem may still have sent
            # it: get back in step and ask the slot before calling the part unsent (which
            # would send the reply twice).
            if not sess.resync(min(3.0, s.command_timeout_s)):
                raise
            if self._slot_stat(sess, index, p.pdu) != 3:
                self._delete_quietly(sess, index)
                raise
            self.log.info("AT+CMSS=%d timed out but the part left (stored sent)", index)
            return None, index
        return mr, index

    def resolve_stored(self, sess: ATSession) -> None:
        """After a crash: for each part written to memory whose AT+CMSS answer was never
        recorded, ask the modem. <stat> 3 ("stored sent", TS 27.005 §3.1) means it left;
        <stat> 2 means it did not, and it is sent now, so the reply completes with no
        duplicate. A slot that no longer holds our PDU means we cannot know: the part is
        sent again when its reply resumes (the same PDU: at worst a duplicate part)."""
        for part in self._outbox.stored_parts(self.name):
            stat = self._slot_stat(sess, part.storage_index, part.pdu)
            if stat is None:
                self._outbox.part_resolved(part, sent=False, mr=None)
                continue
            if stat == 3:
                self._outbox.part_resolved(part, sent=True, mr=None)
            else:
                try:
                    mr = sess.send_stored(part.storage_index,
                                          timeout=self.settings.send_timeout_s)
                except ModemCommandError as exc:
                    # Refused now (no credit, no network yet): the reply resumes later
                    # like any other. Never let it keep the modem from starting,
                    # or citizens' SMS would wait on the SIM behind it.
                    self.log.warning("stored part %d not sent at start-up: %s",
                                     part.part_id, exc)
                    self._outbox.part_resolved(part, sent=False, mr=None)
                else:
                    self._outbox.part_resolved(part, sent=True, mr=mr)
            self._delete_quietly(sess, part.storage_index)
        self._outbox.recovery_done(self.name)

    def _slot_stat(self, sess: ATSession, index: int, pdu_hex: str) -> int | None:
        """<stat> of memory slot ``index`` if it still holds ``pdu_hex``, else None."""
        try:
            lines = sess.run(f"AT+CMGR={index}", self.settings.command_timeout_s)
        except ModemCommandError:
            return None
        slot = parse_cmgr(lines)
        if slot is None or slot.pdu is None or slot.pdu.upper() != pdu_hex.upper():
            return None
        return slot.stat

    def _delete_quietly(self, sess: ATSession, index: int) -> None:
        try:
            # Part of a send: a stop waits for it, so a reply's remaining parts still go out.
            sess.run(f"AT+CMGD={index}", self.settings.command_timeout_s, interruptible=False)
        except ModemCommandError as exc:  # the next sweep deletes it
            self.log.debug("CMGD %d after CMSS: %s", index, exc)

    def _finish(self, job: Job, error: BaseException | None,
                sent: list[SubmittedPart]) -> None:
        if error is not None:
            self._on_failure(f"modem {self.name}: reply {job.outbound_id} to recipient "
                             f"…{job.recipient[-4:]} failed: {error}")
        self._outbox.job_done(job, error, sent)
