"""The outbound SQL: every query of the ``outbound`` and ``part`` tables of ``state.db``.

The tables themselves are declared with the rest of ``state.db`` (:mod:`appliance.state.store`:
one schema, one migration ledger, one retention classification of every column). Here is
what the outbox does with them, each method one write transaction (joined to the caller's,
if any): queue, claim, plan, record each part, move through the state table
(:mod:`.states`), recover after a crash, match delivery reports, and count.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import replace
from typing import Any

import peewee as pw

from ..modem.ports import Job, PlanPart, StoredPart, SubmittedPart
from ..state.store import Outbound, Part, run_sql, set_inbound_status, write_txn
from .states import PENDING, State, check_move

log = logging.getLogger(__name__)

#: Part states of a part that reached (or may have reached) the network.
LEFT_PARTS = ("stored", "sent", "delivered", "failed")


class ReplyTable:
    """The queries of the outbox. Stateless: the database is the one ``Store`` opened."""

    def queue_reply(self, *, recipient: str, text: str, parts: int, preferred_modem: str | None,
                    inbound_ids: Sequence[int] = (), kind: str = "reply",
                    inbound_status: str = "answered", reason: str | None = None) -> int:
        """Commit a reply (and mark the inbound rows it answers) in one transaction."""
        now = time.time()
        with write_txn():
            oid = int(run_sql(
                "INSERT INTO outbound (inbound, recipient, text, kind, preferred_modem, status, "
                "attempts, resends, link_failures, parts, next_attempt_at, created_at, "
                "updated_at) VALUES (?, ?, ?, ?, ?, ?, 0, 0, 0, ?, 0.0, ?, ?)",
                (inbound_ids[0] if inbound_ids else None, recipient, text, kind,
                 preferred_modem, State.QUEUED.value, parts, now, now)).lastrowid)
            if inbound_ids:
                set_inbound_status(inbound_ids, inbound_status, reason=reason or None,
                                   reply=oid)
        return oid

    def claim_next(self, modem: str, *, others_unavailable: Sequence[str] = (),
                   long_down: Sequence[str] = (), alone: bool = False,
                   steal_after: float | None = None) -> Job | None:
        """Claim the next reply for ``modem``.

        A reply encoded for a SIM (``plan_modem``) is that SIM's: it resumes there, first
        of all. Another modem takes it only when its SIM is unavailable and no part of it
        has left (re-encoded whole, nothing orphaned), or when its SIM has been unavailable
        for longer than the move limit (``long_down``: a split, counted). A reply not
        encoded yet: ``modem``'s own first, then orphans of unavailable modems, then (after
        ``steal_after`` seconds of waiting) anybody's; a reply whose SIM gave up on it goes
        to another SIM unless ``modem`` is ``alone``."""
        now = time.time()
        others = list(others_unavailable)
        params: list[Any] = [now, modem]                    # next_attempt_at, plan_modem
        mine = "preferred_modem = ? OR preferred_modem IS NULL"
        params.append(modem)
        if others:
            mine += f" OR preferred_modem IN ({_marks(others)})"
            params += others
        if steal_after is not None:
            mine += " OR created_at < ?"
            params.append(now - steal_after)
        unplanned = f"plan_modem IS NULL AND ({mine})"
        if not alone:
            unplanned += " AND NOT (plan > 0 AND modem = ?)"
            params.append(modem)
        rules = ["plan_modem = ?", f"({unplanned})"]
        if long_down:
            rules.append(f"plan_modem IN ({_marks(long_down)})")
            params += list(long_down)
        if others:
            rules.append(
                f"(plan_modem IN ({_marks(others)}) AND NOT EXISTS (SELECT 1 FROM part "
                "WHERE part.outbound_id = outbound.id AND part.attempt = outbound.plan "
                f"AND part.status IN ({_marks(LEFT_PARTS)})))")
            params += [*others, *LEFT_PARTS]
        where = (f"(status = 'queued' OR (status = 'retry' AND next_attempt_at <= ?)) "
                 f"AND ({' OR '.join(rules)})")
        # Asked by every idle owner about once a second: look without the write lock first.
        if run_sql(f"SELECT 1 FROM outbound WHERE {where} LIMIT 1", params).fetchone() is None:
            return None
        with write_txn():
            row = run_sql(
                f"SELECT id, recipient, text, attempts, status, plan, plan_modem, sim_attempts "
                f"FROM outbound WHERE {where} ORDER BY (plan_modem = ?) DESC, "
                "(preferred_modem = ?) DESC, id LIMIT 1", [*params, modem, modem]).fetchone()
            if row is None:
                return None
            oid, recipient, text, attempts, status, plan, plan_modem, sim_attempts = row
            check_move(status, State.SENDING.value)
            parts: tuple[PlanPart, ...] = ()
            if plan_modem == modem:
                parts = tuple(PlanPart(*r) for r in run_sql(
                    "SELECT seq, total, concat_ref, pdu, status FROM part WHERE outbound_id = ? "
                    "AND attempt = ? ORDER BY seq", (oid, plan)))
            elif plan_modem is not None:
                self.release_plan(oid, f"its SIM {plan_modem} is unavailable; {modem} takes it")
                sim_attempts = 0
            run_sql("UPDATE outbound SET status = ?, modem = ?, updated_at = ?, "
                    "attempts = attempts + 1 WHERE id = ?", (State.SENDING.value, modem, now, oid))
        return Job(int(oid), recipient, text, int(attempts) + 1, modem, int(plan), parts,
                   int(sim_attempts))

    def record_plan(self, job: Job, parts: Sequence[PlanPart]) -> Job:
        """Persist a reply's encoding for ``job.modem`` before its first part goes out: its
        parts, reference and PDUs are fixed from here on. Returns the job carrying it."""
        with write_txn():
            (last,) = run_sql("SELECT COALESCE(MAX(attempt), 0) FROM part WHERE outbound_id = ?",
                              (job.outbound_id,)).fetchone()
            (current,) = run_sql("SELECT plan FROM outbound WHERE id = ?",
                                 (job.outbound_id,)).fetchone()
            plan = max(int(last), int(current or 0)) + 1
            now = time.time()
            for p in parts:
                run_sql("INSERT INTO part (outbound_id, attempt, seq, total, modem, concat_ref, "
                        "status, pdu, submitted_at) VALUES (?, ?, ?, ?, ?, ?, 'pending', ?, ?)",
                        (job.outbound_id, plan, p.seq, p.total, job.modem, p.concat_ref, p.pdu,
                         now))
            run_sql("UPDATE outbound SET plan = ?, plan_modem = ?, sim_attempts = 0, parts = ? "
                    "WHERE id = ?", (plan, job.modem, len(parts), job.outbound_id))
        return replace(job, plan=plan, parts=tuple(parts), sim_attempts=0)

    def release_plan(self, outbound_id: int, why: str) -> int:
        """Give up a reply's encoding on its SIM: its unsent parts are abandoned, and the
        next claim encodes it afresh (a new reference) for another SIM. If a part had
        already left, the citizen now holds an orphan part: counted in ``splits``. Returns
        the number of parts that had left."""
        with write_txn():
            (plan, plan_modem) = run_sql("SELECT plan, plan_modem FROM outbound WHERE id = ?",
                                         (outbound_id,)).fetchone()
            (left,) = run_sql(
                f"SELECT COUNT(*) FROM part WHERE outbound_id = ? AND attempt = ? "
                f"AND status IN ({_marks(LEFT_PARTS)})",
                (outbound_id, plan, *LEFT_PARTS)).fetchone()
            run_sql("UPDATE part SET status = 'abandoned', storage_index = NULL "
                    "WHERE outbound_id = ? AND attempt = ? AND status IN ('pending', 'unsent', "
                    "'stored')", (outbound_id, plan))
            run_sql("UPDATE outbound SET plan_modem = NULL, preferred_modem = NULL, "
                    "sim_attempts = 0, splits = splits + ? WHERE id = ?",
                    (1 if left else 0, outbound_id))
        if left:
            log.warning("reply %d split: %d part(s) left on SIM %s, sent again whole with a "
                        "new reference (%s)", outbound_id, left, plan_modem, why)
        else:
            log.info("reply %d moves from SIM %s before any part left (%s)", outbound_id,
                     plan_modem, why)
        return int(left)

    def unstore_refused(self, job: Job) -> None:
        """The modem refused a stored part (``+CMS ERROR`` to ``AT+CMSS``; the sender
        deleted the slot): it never left, and waits like any unsent part."""
        with write_txn():
            run_sql("UPDATE part SET status = 'pending', storage_index = NULL WHERE "
                    "outbound_id = ? AND attempt = ? AND modem = ? AND status = 'stored'",
                    (job.outbound_id, job.plan, job.modem))

    def record_stored(self, job: Job, part: SubmittedPart) -> None:
        """A part is in the modem's memory (``+CMGW: index``), about to be sent by
        ``AT+CMSS``. Committed first, so that after a crash the modem can be asked whether
        it left (its <stat> turns to "stored sent")."""
        with write_txn():
            updated = run_sql(
                "UPDATE part SET status = 'stored', storage_index = ?, submitted_at = ? "
                "WHERE outbound_id = ? AND attempt = ? AND seq = ?",
                (part.storage_index, part.submitted_at, job.outbound_id, job.plan,
                 part.seq)).rowcount
            if not updated:
                _insert_part(job, part, "stored")

    def record_parts(self, job: Job, parts: Sequence[SubmittedPart]) -> None:
        """Record parts as they leave; called after each ``+CMGS``/``+CMSS: mr`` so that a
        crash between parts knows which were on the air."""
        if not parts:
            return
        with write_txn():
            for p in parts:
                updated = run_sql(
                    "UPDATE part SET mr = ?, status = 'sent', storage_index = NULL, "
                    "submitted_at = ? WHERE outbound_id = ? AND attempt = ? AND seq = ?",
                    (p.mr, p.submitted_at, job.outbound_id, job.plan, p.seq)).rowcount
                if not updated:
                    _insert_part(job, p, "sent")
            run_sql("UPDATE outbound SET parts = ?, first_submit_at = "
                    "COALESCE(first_submit_at, ?) WHERE id = ?",
                    (parts[0].total, min(p.submitted_at for p in parts), job.outbound_id))

    def move(self, outbound_id: int, new: State, *, give_back_attempt: bool = False,
             link_failure: bool = False, **fields: Any) -> None:
        """Move a reply to ``new`` through the state table (illegal moves raise), setting
        ``fields``; ``give_back_attempt``: the try did not count against the reply's
        attempts; ``link_failure``: count a timeout or an unplug against it."""
        with write_txn():
            (status,) = run_sql("SELECT status FROM outbound WHERE id = ?",
                                (outbound_id,)).fetchone()
            check_move(status, new.value)
            fields.update(status=new.value, updated_at=time.time())
            sets = [f"{name} = ?" for name in fields]
            if give_back_attempt:
                sets.append("attempts = attempts - 1")
            if link_failure:
                sets.append("link_failures = link_failures + 1")
            run_sql(f"UPDATE outbound SET {', '.join(sets)} WHERE id = ?",
                    [*fields.values(), outbound_id])

    def link_failures(self, outbound_id: int) -> int:
        row = run_sql("SELECT link_failures FROM outbound WHERE id = ?", (outbound_id,)).fetchone()
        return int(row[0]) if row is not None else 0

    def recover_after_crash(self, modem: str | None = None) -> tuple[int, int]:
        """Replies left in ``sending`` by a crash (of ``modem``, or of every modem).

        Every part of its encoding acknowledged → ``sent``. A part still ``stored`` in a
        modem's memory → left ``sending`` until that modem's owner has asked the modem
        whether it left (:meth:`resolve_part`) — unless ``modem`` is given, which means the
        owner has done so. Otherwise → ``queued``, to resume at its first unsent part with
        the same encoding (counted in ``resends``). Returns (sent, resumed)."""
        sent = resumed = 0
        now = time.time()
        with write_txn():
            sql = "SELECT id, plan, parts FROM outbound WHERE status = ?"
            params: list[Any] = [State.SENDING.value]
            if modem is not None:
                sql += " AND modem = ?"
                params.append(modem)
            for oid, plan, total in run_sql(sql, params).fetchall():
                statuses = [st for (st,) in run_sql(
                    "SELECT status FROM part WHERE outbound_id = ? AND attempt = ?",
                    (oid, plan))]
                if modem is None and "stored" in statuses:
                    continue
                acked = sum(st in ("sent", "delivered", "failed") for st in statuses)
                if statuses and acked >= max(total, len(statuses)):
                    run_sql("UPDATE outbound SET status = ?, sent_at = ?, updated_at = ? "
                            "WHERE id = ?", (State.SENT.value, now, now, oid))
                    sent += 1
                else:
                    run_sql("UPDATE outbound SET status = ?, resends = resends + 1, "
                            "updated_at = ? WHERE id = ?", (State.QUEUED.value, now, oid))
                    resumed += 1
        return sent, resumed

    def stored_parts(self, modem: str) -> list[StoredPart]:
        rows: Any = Part.select(Part.id, Part.outbound, Part.storage_index, Part.pdu).where(
            (Part.modem == modem) & (Part.status == "stored")
            & Part.storage_index.is_null(False)).tuples()
        return [StoredPart(pid, oid, index, pdu or "") for pid, oid, index, pdu in rows]

    def resolve_part(self, part_id: int, *, sent: bool, mr: int | None = None) -> None:
        """What the modem said about a stored part after a crash: sent, or to be sent (the
        same PDU, when its reply resumes)."""
        with write_txn():
            run_sql("UPDATE part SET status = ?, mr = ?, storage_index = NULL WHERE id = ?",
                    ("sent" if sent else "pending", mr, part_id))

    def requeue_stuck(self, older_than: float) -> int:
        """Replies ``sending`` for longer than any send can take (their modem never came
        back to resolve them): resumed from their first part not known to have left (a part
        stored on that modem counts as not left: at least once)."""
        with write_txn():
            ids = [r.id for r in Outbound.select(Outbound.id).where(
                (Outbound.status == State.SENDING.value) & (Outbound.updated_at < older_than))]
            if ids:
                Part.update(status="pending", storage_index=None).where(
                    Part.outbound.in_(ids) & (Part.status == "stored")).execute()
                Outbound.update(status=State.QUEUED.value, resends=Outbound.resends + 1,
                                updated_at=time.time()).where(Outbound.id.in_(ids)).execute()
        return len(ids)

    def match_report(self, modem: str, mr: int, status: int, delivered: bool,
                     final: bool) -> int | None:
        """Apply a delivery report to the newest part (modem, TP-MR). Returns the reply id
        when the reply changed state (all parts delivered, or one failed permanently)."""
        now = time.time()
        with write_txn():
            found = run_sql(
                "SELECT id, outbound_id, attempt FROM part WHERE modem = ? AND mr = ? "
                "AND submitted_at > ? ORDER BY submitted_at DESC LIMIT 1",
                (modem, mr, now - 7 * 86400)).fetchone()
            if found is None:
                return None
            part_id, oid, attempt = found
            if not final:
                run_sql("UPDATE part SET report_status = ?, report_at = ? WHERE id = ?",
                        (status, now, part_id))
                return None
            run_sql("UPDATE part SET status = ?, report_status = ?, report_at = ? WHERE id = ?",
                    ("delivered" if delivered else "failed", status, now, part_id))
            out_status, out_parts = run_sql("SELECT status, parts FROM outbound WHERE id = ?",
                                            (oid,)).fetchone()
            if out_status != State.SENT.value:
                return None
            if not delivered:
                run_sql("UPDATE outbound SET status = ?, updated_at = ?, last_error = ? "
                        "WHERE id = ?",
                        (State.FAILED.value, now, f"delivery report TP-ST {status:#04x}", oid))
                return int(oid)
            (done,) = run_sql("SELECT COUNT(*) FROM part WHERE outbound_id = ? AND attempt = ? "
                              "AND status = 'delivered'", (oid, attempt)).fetchone()
            if done >= out_parts:
                run_sql("UPDATE outbound SET status = ?, delivered_at = ?, updated_at = ? "
                        "WHERE id = ?", (State.DELIVERED.value, now, now, oid))
                return int(oid)
        return None

    # -- counters ------------------------------------------------------------------------

    def part_times(self, modem: str, since: float) -> list[float]:
        return [r.submitted_at for r in Part.select(Part.submitted_at)
                .where((Part.modem == modem) & (Part.submitted_at >= since)
                       & Part.status.in_(LEFT_PARTS))
                .order_by(Part.submitted_at)]

    def last_concat_ref(self, modem: str) -> int:
        """Where this modem's concatenation references left off (no reuse after restart)."""
        row = (Part.select(Part.concat_ref).where((Part.modem == modem)
                                                   & Part.concat_ref.is_null(False))
               .order_by(Part.id.desc()).first())
        return int(row.concat_ref) if row is not None else 0

    def queue_depth(self) -> dict[str | None, int]:
        q = (Outbound.select(Outbound.preferred_modem, pw.fn.COUNT(Outbound.id))
             .where(Outbound.status.in_(PENDING)).group_by(Outbound.preferred_modem))
        return dict(q.tuples())  # type: ignore[arg-type]

    def split_count(self) -> int:
        """Replies that moved to another SIM after a part had left (an orphan part)."""
        (n,) = run_sql("SELECT COALESCE(SUM(splits), 0) FROM outbound").fetchone()
        return int(n)

    def pending_count(self) -> int:
        return int(Outbound.select().where(Outbound.status.in_(PENDING)).count())

    def reply_summary(self, outbound_id: int) -> tuple[str | None, int | None, str] | None:
        """(kind, parts, status) of a reply, for its journal line."""
        row = run_sql("SELECT kind, parts, status FROM outbound WHERE id = ?",
                      (outbound_id,)).fetchone()
        return None if row is None else (row[0], row[1], row[2])


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _insert_part(job: Job, part: SubmittedPart, status: str) -> None:
    run_sql("INSERT INTO part (outbound_id, attempt, seq, total, modem, concat_ref, mr, status, "
            "storage_index, pdu, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.outbound_id, job.plan, part.seq, part.total, job.modem, part.concat_ref,
             part.mr, status, part.storage_index if status == "stored" else None,
             part.pdu if status == "stored" else None, part.submitted_at))
