"""What ``state.db`` may keep about a person, for how long, and the job that forgets it.

A citizen's SMS holds their phone number and the CNIC they asked about; a hit's reply holds
an offender's name and parentage. The service needs them only while it is answering: until
the inbound SMS is answered (or merged, or refused) and until the reply has left. After
that, plus ``privacy.message_retention_days`` for a technician to look into a complaint,
:func:`redact` replaces them:

* text and PDUs (inbound and outbound) are erased (``''``),
* phone numbers become their keyed pseudonym (:meth:`appliance.state.audit.Audit.sender_hash`,
  the same value ``audit export --hash-senders`` writes), so "how many messages from this
  number" can still be counted,
* unkeyed digests of personal data (``inbound.pdu_hash``: a SHA-256 of a PDU whose every
  other field can be guessed) become a keyed hash of themselves,

while counts, times, states and keyed hashes stay. Afterwards no clear CNIC, name or number
can be joined to an audit row (``audit_event.inbound`` → ``inbound``), and the audit row's
own sender is pseudonymised too.

Every text column of every table in ``state.db`` is classified in :data:`RETENTION`, in
this one place; ``tests/test_retention.py`` fails when a table gains a text column that is
not, so a new column of personal data cannot slip past the job. A table's ``done`` and
``since`` are SQL over its own row: when it is no longer needed, and since when.

The job rewrites rows in place with ``PRAGMA secure_delete`` on (SQLite then zeroes the
space an old value leaves behind) and truncates the WAL afterwards, so the old values do
not linger in free pages or old WAL frames either.
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from .store import db, run_sql, write_txn

log = logging.getLogger(__name__)

DAY_S = 86_400.0


class Redact(str, enum.Enum):
    """What happens to a column's value once its row is past the retention window."""

    KEEP = "keep"      # no personal data: states, modem names, kinds, keyed hashes
    ERASE = "erase"    # clear text, PDUs, free-text errors: replaced by ''
    NUMBER = "number"  # a phone number (or sender name) in clear: its keyed pseudonym
    KEYED = "keyed"    # an unkeyed digest of personal data: a keyed hash of it


@dataclass(frozen=True)
class TableRetention:
    """The classification of one table's text columns and when its rows may be redacted."""

    table: str
    columns: Mapping[str, Redact]
    done: str = "1"          # SQL: the row is no longer needed by the service
    since: str = "0"         # SQL (Unix seconds): when it stopped being needed
    redacted: tuple[str, ...] = field(init=False, default=())

    def __post_init__(self) -> None:
        object.__setattr__(self, "columns", MappingProxyType(dict(self.columns)))
        object.__setattr__(self, "redacted", tuple(
            c for c, how in self.columns.items() if how is not Redact.KEEP))


_FINAL_REPLY = "('sent', 'delivered', 'failed')"

#: Every text column of every table in state.db, in one place (see the module docstring).
RETENTION: tuple[TableRetention, ...] = (
    TableRetention(
        "inbound",
        {"modem": Redact.KEEP, "pdu_hash": Redact.KEYED, "pdu": Redact.ERASE,
         "sender": Redact.NUMBER, "sender_type": Redact.KEEP, "text": Redact.ERASE,
         "status": Redact.KEEP, "reason": Redact.ERASE},
        # ``new`` and ``part`` rows are still to be answered (the leftovers and reassembly
        # jobs read their text and PDU); every other status is final.
        done="status NOT IN ('new', 'part')",
        since="COALESCE(processed_at, received_at)"),
    TableRetention(
        "outbound",
        {"recipient": Redact.NUMBER, "text": Redact.ERASE, "kind": Redact.KEEP,
         "preferred_modem": Redact.KEEP, "modem": Redact.KEEP, "status": Redact.KEEP,
         "plan_modem": Redact.KEEP,
         "last_error": Redact.ERASE},
        # A sent reply still takes its delivery report, which is matched by (modem, TP-MR)
        # on its parts, never by recipient or text.
        done=f"status IN {_FINAL_REPLY}", since="updated_at"),
    TableRetention(
        "part",
        {"modem": Redact.KEEP, "status": Redact.KEEP, "pdu": Redact.ERASE},
        done=f"(SELECT status FROM outbound WHERE outbound.id = part.outbound_id) "
             f"IN {_FINAL_REPLY}",
        since="(SELECT updated_at FROM outbound WHERE outbound.id = part.outbound_id)"),
    TableRetention("kv", {"key": Redact.KEEP, "value": Redact.KEEP}),
    # The guard writes keyed pseudonyms already (Guard.counter_key); NUMBER also covers
    # rows written in clear by a version before that.
    TableRetention("guard_event", {"sender": Redact.NUMBER, "kind": Redact.KEEP}, since="at"),
    TableRetention("guard_cnic", {"sender": Redact.NUMBER, "cnic_hmac": Redact.KEEP},
                   since="at"),
    # The sender stays in clear for the window so that abuse can be acted on (audit.py);
    # the append-only triggers allow exactly this one change to a row.
    TableRetention("audit_event", {"modem": Redact.KEEP, "sender": Redact.NUMBER,
                                   "cnic_hmac": Redact.KEEP, "verdict": Redact.KEEP},
                   since="at"),
    TableRetention("audit_purge_gate", {}),
    # The status page's charts (history.py): series names are verdicts and modem names.
    TableRetention("history", {"series": Redact.KEEP}),
    # Hit reports waiting for the broker's PUBACK (fleet/hits.py), deleted on it. The
    # payload is the report the centre is owed (an offender's CNIC; the citizen's number
    # only as a keyed hash unless [fleet] hit_clear_number): erasing it would lose the
    # report, so it stays until acknowledged, however long the link is down.
    TableRetention("fleet_hit", {"report_id": Redact.KEEP, "payload": Redact.KEEP}),
    # The schema's ledger (migrate.py): step descriptions and release numbers, no people.
    TableRetention("schema_migration", {"description": Redact.KEEP, "release": Redact.KEEP}),
)

_BY_TABLE: Mapping[str, TableRetention] = MappingProxyType({t.table: t for t in RETENTION})

#: SQL: the column already holds a keyed hash (64 lower-case hex digits). Nothing clear is
#: that shape: a phone number has at most 16 characters, a PDU digest 32 hex digits.
_HASHED = "(length({c}) = 64 AND {c} NOT GLOB '*[^0-9a-f]*')"


def is_keyed_hash(value: str) -> bool:
    """True for what :func:`redact` writes in place of a number or a digest."""
    return len(value) == 64 and all(ch in "0123456789abcdef" for ch in value)


@dataclass(frozen=True)
class Hashers:
    """The keyed functions redaction needs; the unit secret stays inside them."""

    number: Callable[[str], str]   # a phone number (any written form) → its pseudonym
    digest: Callable[[str], str]   # an unkeyed digest → a keyed hash of it


def _text_columns(table: str) -> list[str]:
    """Columns that can hold text: declared TEXT/CHAR/CLOB, or with no declared type."""
    cols = []
    for _, name, decl, *_ in run_sql(f'PRAGMA table_info("{table}")').fetchall():
        decl = (decl or "").upper()
        if not decl or any(t in decl for t in ("CHAR", "CLOB", "TEXT")):
            cols.append(str(name))
    return cols


def tables() -> list[str]:
    """The tables of the open state.db, SQLite's own excluded."""
    return [str(r[0]) for r in run_sql(
        "SELECT name FROM sqlite_master WHERE type = 'table' AND name NOT LIKE 'sqlite_%' "
        "ORDER BY name").fetchall()]


def unclassified_columns() -> list[str]:
    """``table.column`` for every text column of the open state.db not in :data:`RETENTION`
    (empty when every one is classified)."""
    missing = []
    for table in tables():
        known = _BY_TABLE.get(table)
        for col in _text_columns(table):
            if known is None or col not in known.columns:
                missing.append(f"{table}.{col}")
    return missing


def _needs(rule: TableRetention) -> str:
    terms = []
    for col in rule.redacted:
        c = f'"{col}"'
        if rule.columns[col] is Redact.ERASE:
            terms.append(f"({c} IS NOT NULL AND {c} <> '')")
        else:
            terms.append(f"({c} IS NOT NULL AND {c} <> '' AND NOT {_HASHED.format(c=c)})")
    return " OR ".join(terms)


def _new_value(how: Redact, value: Any, hashers: Hashers) -> Any:
    if value is None or value == "":
        return value
    if how is Redact.ERASE:
        return ""
    text = str(value)
    if is_keyed_hash(text):
        return text
    return hashers.number(text) if how is Redact.NUMBER else hashers.digest(text)


def redact(*, now: float, retention_days: float, hashers: Hashers,
           batch: int = 2000) -> dict[str, int]:
    """Redact every row past its window; returns rows changed per table.

    ``now`` is the caller's clock (the service's, or a test's advanced one). Rows are read
    outside any write transaction and rewritten a batch per short transaction, so SMS keep
    being answered while a large backlog (the first run after an upgrade) is worked through.
    """
    cutoff = now - retention_days * DAY_S
    present = set(tables())
    run_sql("PRAGMA secure_delete = ON")  # this connection: zero what old values leave
    changed: dict[str, int] = {}
    for rule in RETENTION:
        if rule.redacted and rule.table in present:
            count = _redact_table(rule, cutoff, hashers, batch)
            if count:
                changed[rule.table] = count
    if changed:
        # Old page images live on in the WAL until it is checkpointed and cut back.
        busy, _, _ = run_sql("PRAGMA wal_checkpoint(TRUNCATE)").fetchone()
        if busy:
            log.info("retention: WAL checkpoint deferred (a reader is active); SQLite "
                     "completes it at a later checkpoint")
        log.info("retention: redacted %s (older than %g day(s) after last use)",
                 ", ".join(f"{n} {t} row(s)" for t, n in changed.items()), retention_days)
    return changed


def _redact_table(rule: TableRetention, cutoff: float, hashers: Hashers, batch: int) -> int:
    """One table, from its watermark: the rowid below which no row holds anything to
    redact. Rows are appended in rowid order and done within days, so an hourly run reads
    about a window's worth of rows, not the table's whole history."""
    mark_key = f"retention.rowid.{rule.table}"
    row = run_sql("SELECT value FROM kv WHERE key = ?", (mark_key,)).fetchone()
    (highest,) = run_sql(f'SELECT COALESCE(MAX(rowid), 0) FROM "{rule.table}"').fetchone()
    start = int(row[0]) if row is not None else 0
    if start > highest:
        start = 0  # rows were deleted down to below the mark: rowids will be reused
    cols = ", ".join(f'"{c}"' for c in rule.redacted)
    select = (f'SELECT rowid, COALESCE(({rule.done}) AND ({rule.since}) < ?, 0), '
              f'({_needs(rule)}), {cols} FROM "{rule.table}" WHERE rowid > ? '
              f"ORDER BY rowid LIMIT ?")
    sets = ", ".join(f'"{c}" = ?' for c in rule.redacted)
    update = f'UPDATE "{rule.table}" SET {sets} WHERE rowid = ? AND ({rule.done})'
    total, last, mark = 0, start, None
    while True:
        rows = run_sql(select, (cutoff, last, batch)).fetchall()
        if not rows:
            break
        params = []
        for rowid, eligible, needs, *values in rows:
            if not needs:
                continue
            if eligible:
                params.append([_new_value(rule.columns[c], v, hashers)
                               for c, v in zip(rule.redacted, values)] + [rowid])
            elif mark is None:
                mark = rowid - 1  # the first row still waiting: start here next time
        if params:
            with write_txn():
                db.connection().executemany(update, params)
        total += len(params)
        last = rows[-1][0]
    new_mark = last if mark is None else mark
    if new_mark != start:
        with write_txn():
            run_sql("INSERT OR REPLACE INTO kv (key, value) VALUES (?, ?)",
                    (mark_key, str(new_mark)))
    return total
