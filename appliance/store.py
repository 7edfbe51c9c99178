"""The message store: ``state.db``, Peewee over SQLite in WAL mode.

Two promises rest on this file:

* **Store before delete.** An inbound SMS is committed here (durably, see ``PRAGMAS``)
  before the engine sends ``AT+CMGD`` for it. Keyed by (modem, PDU hash), so the +CMTI path
  and the CMGL sweep that both see one stored message record it once.
* **Queue in SQLite, not in RAM.** Replies wait here as rows; each modem's owner thread
  claims its next one in an IMMEDIATE transaction. A burst of 5,000 SMS costs disk, not
  memory, and a crash loses nothing that was committed.

Timestamps are Unix seconds (float, UTC) so that comparisons are plain number compares.
"""

from __future__ import annotations

import logging
import os
import stat
import threading
import time
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import peewee as pw

from .errors import SchemaError, StoreError
from .migrate import Schema, Step, add_column, baseline, open_and_upgrade
from .outbound import PENDING, State, check_move

log = logging.getLogger(__name__)

db = pw.SqliteDatabase(None)

# Writers queue on a Python lock, not on SQLite's: SQLite's busy handler sleeps 1, 2, 5 …
# 100 ms between retries, and with N modem threads writing each SMS's rows the benchmark
# saw thousands of such sleeps per minute (strace). An RLock wakes the next writer at once;
# re-entrant, so a write transaction may call another store method that writes.
_WRITE_LOCK = threading.RLock()


@contextmanager
def write_txn() -> Iterator[None]:
    """One write transaction (BEGIN IMMEDIATE), serialised within this process.

    Nested calls join the caller's transaction (no savepoint): the service answers an SMS
    (inbound row, guard counters, reply, audit rows) in one transaction and one fsync. A
    caller that must survive a failure inside it opens a savepoint itself (``db.atomic()``).
    """
    with _WRITE_LOCK:
        if db.in_transaction():
            yield
            return
        with db.transaction("IMMEDIATE"):
            yield


def run_sql(sql: str, params: Sequence[Any] = ()) -> Any:
    """Run one statement on this thread's connection (plain SQL on the per-SMS path:
    building peewee queries cost ~40 % of the service's CPU per SMS in the benchmark)."""
    return db.connection().execute(sql, params)

# Power loss is the normal way a unit in a provincial office stops. WAL keeps readers
# (status page, lookups) off the writers' backs. synchronous=FULL makes every commit fsync the
# WAL, so a committed inbound row survives a power cut that follows the AT+CMGD which deleted
# the SMS from the SIM. NORMAL would only lose the last commits (never corrupt the file), but
# "the last commit" is exactly the one that justified deleting an SMS. An fsync per SMS is
# cheap at radio rates (a modem sends ~10 SMS a minute).
PRAGMAS = {
    "journal_mode": "wal",
    "synchronous": "full",
    "foreign_keys": 1,
    "busy_timeout": 10_000,   # ms: writers from N modem threads queue instead of failing
    "cache_size": -2_000,     # KiB: the hot set is small; keep RSS low on a Pi
    "wal_autocheckpoint": 1000,
}


class _Base(pw.Model):
    class Meta:
        database = db


class Inbound(_Base):
    """One PDU read from a SIM (a whole SMS, or one part of a concatenated one).

    status: ``new`` (to be answered), ``part`` (waiting for the other parts), ``merged``
    (its text now lives in the merged message), ``answered``, ``ignored`` (deliberately not
    answered; ``reason`` says why), ``quarantined`` (undecodable; ``pdu`` kept).
    """

    id = pw.AutoField()

    modem = pw.CharField()
    pdu_hash = pw.CharField()
    pdu = pw.TextField()
    sender = pw.CharField(null=True)
    sender_type = pw.CharField(null=True)
    text = pw.TextField(null=True)
    sent_at = pw.FloatField(null=True)          # the SMSC timestamp (TP-SCTS)
    received_at = pw.FloatField()
    concat_ref = pw.IntegerField(null=True)
    concat_total = pw.IntegerField(null=True)
    concat_seq = pw.IntegerField(null=True)
    status = pw.CharField(default="new", index=True)
    reason = pw.TextField(null=True)
    reply = pw.IntegerField(null=True)          # Outbound.id
    processed_at = pw.FloatField(null=True)

    class Meta:
        indexes = ((("modem", "pdu_hash"), True),)


class Outbound(_Base):
    """One reply (all its parts). ``status`` follows :mod:`appliance.outbound`."""

    id = pw.AutoField()

    inbound = pw.IntegerField(null=True)
    recipient = pw.CharField()
    text = pw.TextField()
    kind = pw.CharField(default="reply")
    preferred_modem = pw.CharField(null=True)
    modem = pw.CharField(null=True)
    status = pw.CharField(default=State.QUEUED.value)
    attempts = pw.IntegerField(default=0)
    resends = pw.IntegerField(default=0)        # resumed after a crash mid-send
    link_failures = pw.IntegerField(default=0)  # timeouts / unplugs (attempts given back)
    parts = pw.IntegerField(default=1)
    next_attempt_at = pw.FloatField(default=0.0)
    created_at = pw.FloatField()
    updated_at = pw.FloatField()
    first_submit_at = pw.FloatField(null=True)
    sent_at = pw.FloatField(null=True)
    delivered_at = pw.FloatField(null=True)
    last_error = pw.TextField(null=True)
    # The reply's encoding ("plan"): its parts, reference and PDUs are Part rows with
    # attempt = plan, fixed when first encoded for plan_modem and resumed there after any
    # fault; re-encoded (a new plan, a new reference) only when it moves to another SIM.
    plan = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
    plan_modem = pw.CharField(null=True)
    # failed tries on plan_modem since a part last left
    sim_attempts = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])
    # moves after a part had left: an orphan part on a citizen's phone
    splits = pw.IntegerField(default=0, constraints=[pw.SQL("DEFAULT 0")])

    class Meta:
        indexes = ((("status", "preferred_modem", "id"), False),)


class Part(_Base):
    """One PDU of one encoding (``attempt`` = ``Outbound.plan``) of a reply; ``mr`` is the
    TP-MR from ``+CMGS: mr`` / ``+CMSS: mr``."""

    id = pw.AutoField()

    outbound = pw.ForeignKeyField(Outbound, backref="part_rows", on_delete="CASCADE")
    attempt = pw.IntegerField()
    seq = pw.IntegerField()
    total = pw.IntegerField()
    modem = pw.CharField()
    concat_ref = pw.IntegerField(null=True)
    mr = pw.IntegerField(null=True)
    # pending (encoded, not yet handed to the modem) | stored (written to the modem's
    # memory, AT+CMSS not yet answered) | sent | delivered | failed | abandoned (its reply
    # moved to another SIM before this part left) | unsent (older releases: as pending)
    status = pw.CharField(default="sent")
    storage_index = pw.IntegerField(null=True)  # AT+CMGW index while stored
    pdu = pw.TextField(null=True)               # the PDU, fixed at encoding; sent as is
    submitted_at = pw.FloatField()              # encoding time until it is handed over
    report_status = pw.IntegerField(null=True)
    report_at = pw.FloatField(null=True)

    class Meta:
        indexes = ((("modem", "mr"), False), (("modem", "submitted_at"), False))


class KV(_Base):
    """Small persistent settings: concatenation reference counters, unit facts."""

    key = pw.CharField(primary_key=True)
    value = pw.TextField()


MODELS: list[type[pw.Model]] = [Inbound, Outbound, Part, KV]

#: state.db's schema versions (appliance.migrate; docs/packaging.md, "Schema versions").
#: A change to the tables above is one more step at the end of this list:
#: a table -> Step(n, "table x", create_table(X)); a column (at the end of its model,
#: null=True or a default) -> Step(n, "x.y", add_column(X.y)).
def _reply_plan_columns(db: pw.SqliteDatabase) -> None:
    for f in (Outbound.plan, Outbound.plan_modem, Outbound.sim_attempts, Outbound.splits):
        add_column(f)(db)


STATE_SCHEMA = Schema("state.db", (
    baseline("inbound, outbound, part, kv (the schema before versions)"),
    # A reply is one message (docs/architecture.md): its parts are fixed when first encoded
    # and resumed on the same SIM. Not compatible: part.attempt now holds the plan number
    # and part.status gains 'pending'/'abandoned', which an older release would misread
    # (it would send a reply's parts again with a new reference), so a downgrade is refused.
    Step(2, "outbound.plan, plan_modem, sim_attempts, splits (reply plans)",
         _reply_plan_columns, compatible=False),
))


#: Part states that still wait for the radio (sent again as they are, same PDU).
UNSENT_PARTS = ("pending", "unsent")
#: Part states of a part that reached (or may have reached) the network.
LEFT_PARTS = ("stored", "sent", "delivered", "failed")


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


class Store:
    """Opens ``state.db`` and holds every query the service makes of it."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            _make_private(self.path)
            # Migrated (or refused, when a newer release changed it incompatibly) before
            # anything else writes to it: create_tables() below only adds missing tables.
            open_and_upgrade(self.path, STATE_SCHEMA, PRAGMAS)
            db.init(str(self.path), pragmas=PRAGMAS)
            db.connect(reuse_if_open=True)
            db.create_tables(MODELS, safe=True)
        except SchemaError:
            raise
        except pw.PeeweeException as exc:
            raise StoreError(f"cannot open message store {self.path}: {exc}") from exc
        except Exception as exc:  # sqlite3.DatabaseError: file is not a database, disk I/O
            raise StoreError(f"cannot open message store {self.path}: {exc}; "
                             "check the disk and the data directory") from exc

    def close(self) -> None:
        if not db.is_closed():
            db.close()

    # -- inbound ---------------------------------------------------------------------------

    def record_inbound(self, **fields: Any) -> tuple[int, bool]:
        """Insert an inbound PDU once. Returns (id, created). Durable when it returns."""
        now = time.time()
        fields.setdefault("received_at", now)
        with write_txn():
            row = run_sql("SELECT id FROM inbound WHERE modem = ? AND pdu_hash = ?",
                          (fields["modem"], fields["pdu_hash"])).fetchone()
            if row is not None:
                return int(row[0]), False
            cols = ", ".join(fields)
            marks = ", ".join("?" * len(fields))
            cur = run_sql(f"INSERT INTO inbound ({cols}) VALUES ({marks})", tuple(fields.values()))
            return int(cur.lastrowid), True

    def inbound_with_status(self, status: str, *, older_than: float | None = None,
                            limit: int = 1000) -> list[Inbound]:
        q = Inbound.select().where(Inbound.status == status)
        if older_than is not None:
            q = q.where(Inbound.received_at < older_than)
        return list(q.order_by(Inbound.id).limit(limit))

    def parts_of(self, modem: str, sender: str, ref: int, total: int) -> list[Inbound]:
        return list(Inbound.select().where(
            (Inbound.modem == modem) & (Inbound.sender == sender)
            & (Inbound.concat_ref == ref) & (Inbound.concat_total == total)
            & (Inbound.status == "part")).order_by(Inbound.concat_seq, Inbound.id))

    def set_inbound_status(self, ids: Iterable[int], status: str, reason: str | None = None,
                           reply: int | None = None) -> None:
        ids = list(ids)
        sets = "status = ?, processed_at = ?"
        params: list[Any] = [status, time.time()]
        if reason is not None:
            sets += ", reason = ?"
            params.append(reason)
        if reply is not None:
            sets += ", reply = ?"
            params.append(reply)
        with write_txn():
            run_sql(f"UPDATE inbound SET {sets} WHERE id IN ({_marks(ids)})", [*params, *ids])

    def claim_parts(self, ids: Sequence[int]) -> bool:
        """Move parts from ``part`` to ``merged`` atomically; False if someone else did."""
        ids = list(ids)
        with write_txn():
            (waiting,) = run_sql(f"SELECT COUNT(*) FROM inbound WHERE id IN ({_marks(ids)}) "
                                 "AND status = 'part'", ids).fetchone()
            if waiting != len(ids):
                return False
            run_sql(f"UPDATE inbound SET status = 'merged', processed_at = ? "
                    f"WHERE id IN ({_marks(ids)})", [time.time(), *ids])
        return True

    # -- outbound --------------------------------------------------------------------------

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
                self.set_inbound_status(inbound_ids, inbound_status, reason=reason or None,
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

    def move(self, outbound_id: int, new: State, **fields: Any) -> None:
        """Move a reply to ``new`` through the state table (illegal moves raise)."""
        with write_txn():
            (status,) = run_sql("SELECT status FROM outbound WHERE id = ?",
                                (outbound_id,)).fetchone()
            check_move(status, new.value)
            fields.update(status=new.value, updated_at=time.time())
            if any(isinstance(v, pw.Node) for v in fields.values()):  # attempts - 1 and such
                Outbound.update(**fields).where(Outbound.id == outbound_id).execute()
            else:
                run_sql(f"UPDATE outbound SET {' = ?, '.join(fields)} = ? WHERE id = ?",
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

    # -- counters and status ---------------------------------------------------------------

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

    def counts(self) -> dict[str, dict[str, int]]:
        inbound: dict[str, int] = dict(
            Inbound.select(Inbound.status, pw.fn.COUNT(Inbound.id))
            .group_by(Inbound.status).tuples())  # type: ignore[arg-type]
        outbound: dict[str, int] = dict(
            Outbound.select(Outbound.status, pw.fn.COUNT(Outbound.id))
            .group_by(Outbound.status).tuples())  # type: ignore[arg-type]
        return {"inbound": inbound, "outbound": outbound}

    def first_received(self, modem: str) -> float | None:
        row = run_sql("SELECT MIN(received_at) FROM inbound WHERE modem = ?", (modem,)).fetchone()
        return float(row[0]) if row and row[0] is not None else None

    def kv_get(self, key: str, default: str | None = None) -> str | None:
        row = KV.get_or_none(KV.key == key)
        return row.value if row is not None else default

    def kv_keys(self, prefix: str) -> list[str]:
        return [k for (k,) in run_sql("SELECT key FROM kv WHERE key >= ? AND key < ?",
                                      (prefix, prefix + "\uffff"))]

    def kv_set(self, key: str, value: str) -> None:
        KV.insert(key=key, value=value).on_conflict_replace().execute()


def _make_private(path: Path) -> None:
    """Create ``path`` mode 0600 (or tighten it), whatever the umask, before SQLite opens it.

    state.db holds citizens' numbers and queries until the retention job redacts them. SQLite
    creates its ``-wal`` and ``-shm`` files with the database file's own mode, so making
    this one private makes them private too; side files left looser by an earlier version
    are tightened here as well.
    """
    fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        if stat.S_IMODE(os.fstat(fd).st_mode) & 0o077:
            os.fchmod(fd, 0o600)
    finally:
        os.close(fd)
    for side in (path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        try:
            if stat.S_IMODE(side.stat().st_mode) & 0o077:
                side.chmod(0o600)
        except FileNotFoundError:
            pass


def _marks(values: Sequence[Any]) -> str:
    return ", ".join("?" * len(values))


def _insert_part(job: Job, part: SubmittedPart, status: str) -> None:
    run_sql("INSERT INTO part (outbound_id, attempt, seq, total, modem, concat_ref, mr, status, "
            "storage_index, pdu, submitted_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (job.outbound_id, job.plan, part.seq, part.total, job.modem, part.concat_ref,
             part.mr, status, part.storage_index if status == "stored" else None,
             part.pdu if status == "stored" else None, part.submitted_at))
