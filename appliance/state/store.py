"""The message store: ``state.db``, Peewee over SQLite in WAL mode.

Two promises rest on this file:

* **Store before delete.** An inbound SMS is committed here (durably, see ``PRAGMAS``)
  before the engine sends ``AT+CMGD`` for it. Keyed by (modem, PDU hash), so the +CMTI path
  and the CMGL sweep that both see one stored message record it once.
* **Queue in SQLite, not in RAM.** Replies wait here as rows (queried by the outbox,
  :mod:`appliance.outbox.table`); each modem's owner thread claims its next one in an
  IMMEDIATE transaction. A burst of 5,000 SMS costs disk, not
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
from pathlib import Path
from typing import Any

import peewee as pw

from ..errors import SchemaError, StoreError
from .migrate import Schema, Step, add_column, baseline, open_and_upgrade

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
    """One reply (all its parts). ``status`` follows :mod:`appliance.outbox.states`; every
    query of it is in :mod:`appliance.outbox.table`."""

    id = pw.AutoField()

    inbound = pw.IntegerField(null=True)
    recipient = pw.CharField()
    text = pw.TextField()
    kind = pw.CharField(default="reply")
    preferred_modem = pw.CharField(null=True)
    modem = pw.CharField(null=True)
    status = pw.CharField(default="queued")
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

#: state.db's schema versions (appliance.state.migrate; docs/packaging.md, "Schema versions").
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
        set_inbound_status(ids, status, reason=reason, reply=reply)

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

    # -- status ----------------------------------------------------------------------------

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


def set_inbound_status(ids: Iterable[int], status: str, reason: str | None = None,
                       reply: int | None = None) -> None:
    """Mark inbound rows (answered, ignored…), joined to the caller's write transaction."""
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
