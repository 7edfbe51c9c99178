"""The outbox: every reply, from queued to delivered.

It is the :class:`~appliance.modem.ports.OutboxPort` of every modem's owner thread, and the
one place that decides a reply's fate:

* **queue** (:func:`.queue.queue_sms`, in the caller's transaction) and **wake** a modem
  once it is committed;
* **route, pace and cap** (:class:`.bank.Bank`): which modem takes the next reply, and when;
* **persist** each step before the next (:class:`.table.ReplyTable`): the reply's one
  encoding, each part as it is stored and as it leaves;
* **the policy for send errors** (:meth:`Outbox.job_done`, by :func:`.states.classify`):
  retry on the same SIM in seconds, move to another SIM, give an attempt back, or fail
  and tell a technician;
* **crash recovery**: at start-up (:meth:`Outbox.recover`), per modem once it has asked its
  memory about stored parts (:meth:`Outbox.recovery_done`), and for replies whose modem
  never came back (:meth:`Outbox.requeue_stuck`);
* **delivery reports**, matched to the part they are about.

Its calls run in the owner threads; each returns once what it records is committed.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable
from typing import Any, Protocol

from .. import journal
from ..backoff import Backoff
from ..config import ReliabilityConfig
from ..modem.contract import ModemStatus
from ..modem.pdu_decode import StatusReport
from ..modem.ports import Job, PlanPart, StoredPart, SubmittedPart
from ..rules.wording import plural
from .bank import Bank, SlotSettings
from .queue import Queued, queue_sms
from .states import ErrorClass, State, classify
from .table import ReplyTable

log = logging.getLogger(__name__)

#: Longer than any send can take (parts × send timeout): a reply still "sending" after this
#: belongs to a modem that died mid-send and never came back to resolve it.
STUCK_SENDING_S = 1800.0

#: Link failures (timeouts, unplugs) a reply may meet, per allowed attempt, before it fails.
LINK_FAILURES_PER_ATTEMPT = 3


class AlarmSink(Protocol):
    """Where the outbox tells a technician (the unit's
    :class:`~appliance.service.alarms.Alarms`)."""

    def raise_(self, kind: str, message: str) -> None: ...

    def clear(self, kind: str) -> None: ...


class Emit(Protocol):
    """An event for the service's listener (tests, the demo): ``sent``, ``failed``…"""

    def __call__(self, event: str, **data: Any) -> None: ...


def _no_event(event: str, **data: Any) -> None:
    pass


class Outbox:
    """Replies from queued to delivered, for a bank of modems. See the module docstring."""

    def __init__(self, slots: Iterable[tuple[str, SlotSettings]], rules: ReliabilityConfig,
                 *, country_code: str, alarms: AlarmSink, emit: Emit = _no_event,
                 ref16: bool = False) -> None:
        self.rules = rules
        self.country_code = country_code
        self.ref16 = ref16  # some modem uses 16-bit concatenation references
        self.alarms = alarms
        self._emit = emit
        self.table = ReplyTable()
        self.bank = Bank(self.table, slots, block_after_failures=rules.block_after_failures,
                         block_cooldown_s=rules.block_cooldown_s,
                         move_after_s=rules.move_after_s,
                         on_alarm=alarms.raise_, on_clear=alarms.clear)
        self.backoff = Backoff(rules.retry_base_s, rules.retry_max_s)
        self.crash_resent = 0  # replies resumed after a crash, since start
        self._count_lock = threading.Lock()  # owner threads add to it
        self._closed = threading.Event()

    # -- wiring and lifecycle --------------------------------------------------------------

    def attach(self, modem: str, wake: Callable[[], None]) -> None:
        """``wake`` tells ``modem``'s owner thread that a reply may be waiting for it."""
        self.bank.pokers[modem] = wake

    def concat_ref_start(self, modem: str) -> int:
        """Where ``modem``'s concatenation references left off (no reuse after a restart)."""
        return self.table.last_concat_ref(modem)

    def recover(self) -> None:
        """At start-up, before any modem opens: settle the replies a stop left ``sending``."""
        _, resent = self.table.recover_after_crash()
        self.crash_resent = resent
        if resent:
            log.warning("%s on the air when the unit stopped; each resumes at its "
                        "first unsent part", plural(resent, "reply was", "replies were"))

    def close(self) -> None:
        """No reply is handed out any more (the unit is stopping)."""
        self._closed.set()

    # -- queueing --------------------------------------------------------------------------

    def queue(self, *, to: str, text: str, kind: str, preferred_modem: str | None,
              inbound_ids: Iterable[int] = ()) -> Queued:
        """Queue an SMS in the caller's write transaction (or its own); :meth:`wake` once
        it is committed."""
        return queue_sms(to=to, country_code=self.country_code, text=text, kind=kind,
                         preferred_modem=preferred_modem, inbound_ids=list(inbound_ids),
                         ref16=self.ref16)

    def wake(self, preferred: str | None) -> None:
        """A reply was committed: wake its preferred modem, or everyone who could take it."""
        self.bank.poke(preferred)

    def requeue_stuck(self, older_than_s: float = STUCK_SENDING_S) -> int:
        """Replies ``sending`` for longer than any send can take (their modem never came
        back): queued again from their first part not known to have left."""
        stuck = self.table.requeue_stuck(time.time() - older_than_s)
        if stuck:
            log.warning("%s stuck in 'sending' (modem gone); sending again",
                        plural(stuck, "reply", "replies"))
            self.bank.poke(None)
        return stuck

    def balance_ok(self, modem: str) -> None:
        """A balance check passed: a modem out of rotation for credit comes back."""
        if self.bank.credit_blocked(modem):
            self.bank.readmit(modem)

    # -- status ----------------------------------------------------------------------------

    def pending_count(self) -> int:
        return self.table.pending_count()

    def snapshot(self) -> dict[str, Any]:
        """The outbox's part of the unit's status: queue depth per preferred modem, the
        bank's view of each modem, and counters."""
        return {"depth": self.table.queue_depth(), "bank": self.bank.snapshot(),
                "pending": self.table.pending_count(), "splits": self.table.split_count(),
                "crash_resent": self.crash_resent}

    # -- the OutboxPort (modem owner threads) ----------------------------------------------

    def next_job(self, modem: str) -> Job | None:
        if self._closed.is_set():
            return None
        return self.bank.next_job(modem)

    def plan_encoded(self, job: Job, parts: list[PlanPart]) -> Job:
        return self.table.record_plan(job, parts)

    def part_stored(self, job: Job, part: SubmittedPart) -> None:
        self.table.record_stored(job, part)

    def part_sent(self, job: Job, part: SubmittedPart) -> None:
        self.table.record_parts(job, [part])
        self.bank.part_sent(job.modem, part.submitted_at)

    def stored_parts(self, modem: str) -> list[StoredPart]:
        return self.table.stored_parts(modem)

    def part_resolved(self, part: StoredPart, *, sent: bool, mr: int | None) -> None:
        self.table.resolve_part(part.part_id, sent=sent, mr=mr)
        log.info("reply %d: a part stored before the stop was %s", part.outbound_id,
                 "sent" if sent else "not sent")

    def recovery_done(self, modem: str) -> None:
        _, resent = self.table.recover_after_crash(modem)
        with self._count_lock:
            self.crash_resent += resent
        if resent:
            self.bank.poke(modem)

    def on_status_report(self, modem: str, report: StatusReport) -> None:
        changed = self.table.match_report(modem, report.reference, report.status,
                                          report.delivered, report.final)
        if changed is not None:
            self._emit("report", modem=modem, id=changed, delivered=report.delivered)

    def on_status(self, status: ModemStatus) -> None:
        self.bank.on_status(status)

    def job_done(self, job: Job, error: BaseException | None,
                 parts: list[SubmittedPart]) -> None:
        now = time.time()
        if error is None:
            self.table.move(job.outbound_id, State.SENT, sent_at=now, last_error=None)
            self.bank.send_succeeded(job.modem)
            self.alarms.clear("reply_failed")  # replies are leaving again
            self._journal(job, "sent", len(parts))
            self._emit("sent", modem=job.modem, recipient=job.recipient, text=job.text,
                       id=job.outbound_id, parts=len(parts))
            return
        cls = classify(error)
        reason = str(error)
        rules = self.rules
        if cls is not ErrorClass.LINK:
            # Refused, so it never left (a link failure leaves a stored part to be asked
            # about when the modem is back).
            self.table.unstore_refused(job)
        link_limit = LINK_FAILURES_PER_ATTEMPT * rules.max_attempts
        failed = ""  # why the reply failed for good: a technician is told
        if cls is ErrorClass.LINK and self.table.link_failures(job.outbound_id) + 1 >= link_limit:
            # Every modem it met hung or vanished: something about this reply (or the whole
            # bank) is wrong. Stop and tell a technician rather than retry for ever.
            self.table.move(job.outbound_id, State.FAILED, last_error=reason,
                            link_failure=True)
            failed = f"{link_limit} timeouts or disconnects while sending; last: {reason}"
        elif cls is ErrorClass.LINK:
            # A hung or unplugged modem is not the reply's fault: the attempt is given back
            # and the reply waits for its SIM to come back (another modem takes it at once
            # if none of its parts has left, or after move_after_s).
            self.table.move(job.outbound_id, State.RETRY, last_error=reason,
                            next_attempt_at=now + 1.0, give_back_attempt=True,
                            link_failure=True)
        elif cls is ErrorClass.MODEM:
            # Not the reply's fault: give it back without spending an attempt.
            self.table.move(job.outbound_id, State.QUEUED, last_error=reason,
                            give_back_attempt=True)
        elif cls is ErrorClass.PERMANENT or job.attempt >= rules.max_attempts:
            self.table.move(job.outbound_id, State.FAILED, last_error=reason)
            failed = f"after {plural(job.attempt, 'attempt', 'attempts')}: {reason}"
        else:
            # Temporary (congestion: +CMS ERROR 500, 38): again in seconds, on the same SIM,
            # from the first unsent part. The streak restarts when a part got through.
            streak = 1 if parts else job.sim_attempts + 1
            if streak >= rules.attempts_per_sim:
                self.table.release_plan(job.outbound_id, f"{streak} failed tries in a row on "
                                        f"{job.modem}; last: {reason}")
                streak = 0
            self.table.move(job.outbound_id, State.RETRY, last_error=reason,
                            sim_attempts=streak,
                            next_attempt_at=now + self.backoff.delay(max(1, streak)))
        # The modem's error streak first (a modem fault takes it out of rotation at once),
        # so that an alarm SMS queued next is not handed to the modem that just failed.
        self.bank.send_failed(job.modem, modem_fault=cls is ErrorClass.MODEM, reason=reason,
                              reply=job.outbound_id)
        if failed:
            self.alarms.raise_("reply_failed", f"reply {job.outbound_id} failed {failed}")
        self._journal(job, None, len(parts), reason)
        self._emit("failed", modem=job.modem, id=job.outbound_id, error=reason,
                   error_class=cls.value)

    def _journal(self, job: Job, outcome: str | None, parts_sent: int,
                 error: str = "") -> None:
        """The journal line of one reply leaving (or not): its kind, part count and (after
        a failure) new state are read back from its row (the job carries none of them)."""
        try:
            row = self.table.reply_summary(job.outbound_id)
            kind, parts, status = row if row is not None else (None, None, "?")
            if outcome is None:  # queued again without spending an attempt: "requeued"
                outcome = {"queued": "requeued"}.get(status, status)
            journal.reply_out(modem=job.modem, recipient=job.recipient,
                              reply_id=job.outbound_id, verdict=kind or "reply",
                              parts=parts or parts_sent, attempt=job.attempt,
                              outcome=outcome, error=error).log()
        except Exception:  # a log line must never turn a sent reply into a failed one
            log.exception("reply %d: journal line failed", job.outbound_id)
