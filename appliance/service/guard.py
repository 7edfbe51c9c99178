"""Who gets an answer: the rules applied before the responder sees a message.

An open SMS number invites floods, scraping and reply loops with other machines, and every
answer costs credit on a SIM the operator suspends for bulk sending (docs/field-notes.md). The
rules, in the order :meth:`Guard.check` applies them:

1. **Never answered**: no sender, alphanumeric senders (operators' and banks' broadcasts:
   "Jazz", "HBL"), short codes up to ``limits.short_code_max_len`` digits, and the unit's own
   SIM numbers; answering any of them at best wastes credit and at worst starts a reply
   loop with another machine.
2. **Loop guard**: ``loop_guard_count`` messages from one sender within
   ``loop_guard_seconds`` (answered or not) mark an auto-responder or a loop; that message
   and the following ones are not answered while the rate lasts.
3. **Duplicates**: a message whose CNICs were *all* answered to this sender within
   ``duplicate_window_hours`` is not answered again. Only real verdicts count as answered;
   after "service unavailable" the citizen may ask again at once.
4. **Quotas**: ``per_sender_hourly`` / ``per_sender_daily`` answers in any sliding hour /
   24 hours. The first message over a quota gets one "limit reached" reply; later ones are
   not answered until the window has room again; at most one limit reply per hour, and
   one per day for the daily quota. Sliding windows, because with calendar hours a burst
   at 10:59 and 11:01 would get twice the quota.

A sender is its normalised number (``0300-1234567`` and ``+923001234567`` are one sender).
The counters live in ``state.db`` (tables ``guard_event``, ``guard_cnic``), so a restart does
not reset anyone's quota; they only need to tell senders apart, so a sender is kept there as
its keyed pseudonym (:meth:`Guard.counter_key`) and a CNIC as the audit log's keyed hash,
never in clear.
``check`` writes its "seen" and "limit" events in the same ``BEGIN IMMEDIATE`` transaction
that reads the counters, so two modems' threads (or processes) cannot both hand one
sender a limit reply. Windows count events at or after ``now - window`` with no upper
bound: after the clock steps back, recent events still count (the safe side).

Every decision, answered or not, is written to the audit log (:mod:`appliance.state.audit`):
``record`` after a reply is queued, ``record_ignored`` for a message not answered.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import peewee as pw

from ..config import Config
from ..modem.pdu import is_alphanumeric, normalise_number
from ..rules.cnic import CnicParse, parse_message
from ..state.audit import Audit, purge as purge_audit, verdict_entries
from ..state.secret import load_or_create_secret
from ..state.store import Inbound, db, run_sql, write_txn

log = logging.getLogger(__name__)

HOUR_S = 3600.0
DAY_S = 86_400.0

_SEEN, _ANSWER = "seen", "answer"
_LIMIT_HOUR, _LIMIT_DAY = "limit_hour", "limit_day"
#: Reply kinds that gave a verdict for each CNIC asked (the duplicate rule's "answered").
VERDICT_KINDS = frozenset({"hit", "no_record", "mixed"})


class GuardEvent(pw.Model):
    """One message seen from, one reply counted for, or one limit reply sent to a sender."""

    id = pw.AutoField()
    sender = pw.CharField()
    at = pw.FloatField()
    kind = pw.CharField()

    class Meta:
        database = db
        table_name = "guard_event"
        indexes = ((("sender", "kind", "at"), False), (("at",), False))


class GuardCnic(pw.Model):
    """A CNIC (keyed hash) answered to a sender with a verdict, for the duplicate rule."""

    id = pw.AutoField()
    sender = pw.CharField()
    cnic_hmac = pw.CharField()
    at = pw.FloatField()

    class Meta:
        database = db
        table_name = "guard_cnic"
        indexes = ((("sender", "cnic_hmac", "at"), False), (("at",), False))


def _event(sender: str, at: float, kind: str) -> None:
    run_sql("INSERT INTO guard_event (sender, at, kind) VALUES (?, ?, ?)", (sender, at, kind))


@dataclass(frozen=True)
class GuardVerdict:
    """``answer``: reply or not; ``reason``: why, for the log and the inbound row;
    ``limit_reply``: answer with the "limit reached" text instead of a lookup; ``code``:
    the short reason in the audit log's ``ignored:<code>`` (``limit`` for a limit reply)."""

    answer: bool
    reason: str = ""
    limit_reply: bool = False
    code: str = ""


class Guard:
    """The unit's abuse rules and the audit log's writer. Needs the Store opened first."""

    def __init__(self, config: Config, *, secret: bytes | None = None) -> None:
        self.config = config
        cc = config.unit.country_code
        self.own = frozenset(normalise_number(n, cc) for n in config.unit.own_numbers)
        db.create_tables([GuardEvent, GuardCnic], safe=True)
        self.audit = Audit(secret if secret is not None
                           else load_or_create_secret(config.secret_path))
        self._pseudonymise_old_rows()

    def _pseudonymise_old_rows(self) -> None:
        """Rows an earlier version wrote with the clear number: hash them now, so that an
        upgrade neither resets anyone's quota nor keeps the numbers until they expire."""
        with write_txn():
            for table in ("guard_event", "guard_cnic"):
                clear = [r[0] for r in run_sql(
                    f"SELECT DISTINCT sender FROM {table} WHERE NOT (length(sender) = 64 "
                    f"AND sender NOT GLOB '*[^0-9a-f]*')").fetchall()]
                db.connection().executemany(
                    f"UPDATE {table} SET sender = ? WHERE sender = ?",
                    [(self.audit.sender_hash(s), s) for s in clear])

    def sender_key(self, sender: str) -> str:
        """One identity per number, however it was written."""
        return normalise_number(sender, self.config.unit.country_code)

    def counter_key(self, sender: str) -> str:
        """The sender as the guard's tables keep it: the keyed pseudonym of its number."""
        return self.audit.sender_hash(self.sender_key(sender))

    # -- the decision ------------------------------------------------------------------------

    def check(self, sender: str | None, sender_type: str | None, text: str | CnicParse, *,
              now: float | None = None) -> GuardVerdict:
        """Decide whether to answer; records the message as seen (and a limit reply).
        ``text``: the message, or its CNICs if the caller parsed it already."""
        if not sender:
            return GuardVerdict(False, "no sender address", code="no_sender")
        refused = self._never_answered(sender, sender_type)
        if refused is not None:
            return refused
        key = self.counter_key(sender)
        now = time.time() if now is None else now
        limits = self.config.limits
        cnics = self._cnics(text)
        with write_txn():
            _event(key, now, _SEEN)
            seen = self._count(key, _SEEN, now - limits.loop_guard_seconds)
            if seen >= limits.loop_guard_count:
                return GuardVerdict(False, f"loop guard: {seen} messages from this sender in "
                                    f"{limits.loop_guard_seconds:g} s (an automated sender?)",
                                    code="loop")
            window_start = now - limits.duplicate_window_hours * HOUR_S
            if cnics and limits.duplicate_window_hours > 0 \
                    and self._all_answered(key, cnics, window_start):
                return GuardVerdict(False, f"duplicate: every CNIC in it was answered to this "
                                    f"sender within {limits.duplicate_window_hours:g} h",
                                    code="duplicate")
            over = self._over_quota(key, now)
            if over is None:
                return GuardVerdict(True)
            window, what = over
            # One limit reply per hour, and one per day for the daily quota: a citizen told
            # "try later" at 10:00 who hits the daily quota at 15:00 is told again, once.
            told = (self._count(key, _LIMIT_DAY, now - DAY_S) if window == DAY_S else
                    self._count(key, (_LIMIT_HOUR, _LIMIT_DAY), now - HOUR_S))
            if told:
                return GuardVerdict(False, f"{what}; the limit reply was already sent",
                                    code="over_limit")
            _event(key, now, _LIMIT_DAY if window == DAY_S else _LIMIT_HOUR)
            return GuardVerdict(True, f"{what}; sending the limit reply", limit_reply=True,
                                code="limit")

    def _never_answered(self, sender: str, sender_type: str | None) -> GuardVerdict | None:
        if sender_type == "alphanumeric" or is_alphanumeric(sender):
            return GuardVerdict(False, "alphanumeric sender (a broadcast, cannot be answered)",
                                code="alphanumeric")
        key = self.sender_key(sender)
        digits = key.lstrip("+")
        if len(digits) <= self.config.limits.short_code_max_len:
            return GuardVerdict(False, f"short code sender ({len(digits)} digits)",
                                code="short_code")
        if key in self.own:
            return GuardVerdict(False, "the unit's own number (reply loop)", code="own_number")
        return None

    def _count(self, key: str, kind: str | tuple[str, ...], since: float) -> int:
        # Plain SQL: these run for every SMS (see store.run_sql).
        kinds = [kind] if isinstance(kind, str) else list(kind)
        (n,) = run_sql(f"SELECT COUNT(*) FROM guard_event WHERE sender = ? AND kind IN "
                       f"({', '.join('?' * len(kinds))}) AND at >= ?",
                       [key, *kinds, since]).fetchone()
        return int(n)

    def _all_answered(self, key: str, cnics: Sequence[str], since: float) -> bool:
        wanted = sorted({self.audit.cnic_hash(c) for c in cnics})
        (n,) = run_sql(f"SELECT COUNT(DISTINCT cnic_hmac) FROM guard_cnic WHERE sender = ? AND "
                       f"cnic_hmac IN ({', '.join('?' * len(wanted))}) AND at >= ?",
                       [key, *wanted, since]).fetchone()
        return int(n) == len(wanted)

    def _over_quota(self, key: str, now: float) -> tuple[float, str] | None:
        """(window length, what was exceeded), the daily quota first (its wait is longer)."""
        limits = self.config.limits
        day = self._count(key, _ANSWER, now - DAY_S)
        if day >= limits.per_sender_daily:
            return DAY_S, f"over the daily limit ({day} answers to this sender in 24 h)"
        hour = self._count(key, _ANSWER, now - HOUR_S)
        if hour >= limits.per_sender_hourly:
            return HOUR_S, f"over the hourly limit ({hour} answers to this sender in 1 h)"
        return None

    # -- accounting and audit ----------------------------------------------------------------

    def record(self, sender: str, reply: Any, inbound_ids: list[int], outbound_id: int,
               modem: str, *, now: float | None = None) -> None:
        """A reply was queued for these inbound rows: count it, remember the CNICs it gave a
        verdict on (duplicate rule), and audit it — in one transaction."""
        key = self.counter_key(sender)
        now = time.time() if now is None else now
        kind: str = reply.kind
        if kind in VERDICT_KINDS:
            entries = [(v.cnic, "hit" if v.hit else "no_record") for v in reply.verdicts]
        elif kind == "limit":
            entries = verdict_entries(self._asked(inbound_ids), "limit")
        else:
            entries = verdict_entries(tuple(reply.cnics), kind)
        with write_txn():
            if kind != "limit":  # the limit reply was counted by check()
                _event(key, now, _ANSWER)
            if kind in VERDICT_KINDS:
                db.connection().executemany(
                    "INSERT INTO guard_cnic (sender, cnic_hmac, at) VALUES (?, ?, ?)",
                    [(key, self.audit.cnic_hash(v.cnic), now) for v in reply.verdicts])
            self.audit.append(modem=modem, sender=self.sender_key(sender), entries=entries,
                              reply=outbound_id,
                              inbound=min(inbound_ids, default=None), at=now)

    def record_ignored(self, sender: str | None, verdict: GuardVerdict, inbound_ids: list[int],
                       modem: str, text: str | CnicParse, *, now: float | None = None) -> None:
        """Audit a message :meth:`check` refused (``verdict.answer`` False). The service calls
        it where it marks the inbound rows ``ignored``."""
        cnics = self._cnics(text)
        who = self.sender_key(sender) if sender else None
        self.audit.append(modem=modem, sender=who,
                          entries=verdict_entries(cnics, f"ignored:{verdict.code or 'other'}"),
                          inbound=min(inbound_ids, default=None), at=now)

    def _cnics(self, text: str | CnicParse) -> tuple[str, ...]:
        if isinstance(text, CnicParse):
            return text.cnics
        return parse_message(text or "", max_cnics=self.config.replies.max_cnics).cnics

    def _asked(self, inbound_ids: list[int]) -> tuple[str, ...]:
        """The CNICs of a message that got the limit reply (the reply itself names none)."""
        rows = (Inbound.select(Inbound.text).where(Inbound.id.in_(list(inbound_ids)))
                .order_by(Inbound.concat_seq, Inbound.id))
        text = "".join(r.text or "" for r in rows)
        return parse_message(text, max_cnics=self.config.replies.max_cnics).cnics

    # -- housekeeping ------------------------------------------------------------------------

    def purge(self, now: float | None = None) -> tuple[int, int]:
        """The daily job: drop guard rows no window can reach any more, and audit rows past
        ``audit.retention_days``. Returns (guard rows, audit rows) deleted."""
        now = time.time() if now is None else now
        limits = self.config.limits
        horizon = max(DAY_S, limits.loop_guard_seconds, limits.duplicate_window_hours * HOUR_S)
        with write_txn():
            guard = (GuardEvent.delete().where(GuardEvent.at < now - horizon).execute()
                     + GuardCnic.delete().where(GuardCnic.at < now - horizon).execute())
        return int(guard), purge_audit(self.config.audit.retention_days, now)
