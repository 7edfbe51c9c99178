"""Hit reports waiting in ``state.db`` for the broker's acknowledgement.

A report is committed in the same transaction as the answer that found the hit (so a
kill -9 either keeps both or neither), published with QoS 1, and deleted only when the
broker's PUBACK for it arrives. A report published but not acknowledged before a crash,
an outage or a reconnect is published again: at-least-once, and each report carries its
``id`` (a random UUID fixed when it was written) so that the centre drops the duplicates.

The payload is stored as it will be sent, built at the time of the hit, so that a unit
restarted with another policy does not rewrite reports it already owes. A clear CNIC (and,
only with ``hit_clear_number``, a clear number) stays here only until the broker has it.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from dataclasses import dataclass

import peewee as pw

from appliance.state.store import db, run_sql, write_txn


class FleetHit(pw.Model):
    """One hit report not yet acknowledged by the broker."""

    id = pw.AutoField()
    report_id = pw.CharField(unique=True)
    created_at = pw.FloatField()
    payload = pw.BlobField()

    class Meta:
        database = db
        table_name = "fleet_hit"


@dataclass(frozen=True)
class Pending:
    row: int
    report_id: str
    payload: bytes


class HitOutbox:
    """The ``fleet_hit`` table. Needs the :class:`~appliance.state.store.Store` opened first."""

    def __init__(self) -> None:
        db.create_tables([FleetHit], safe=True)

    def add(self, report_id: str, payload: bytes, *, now: float | None = None) -> None:
        """Queue one report, joining the caller's write transaction (the answer's)."""
        with write_txn():
            run_sql("INSERT INTO fleet_hit (report_id, created_at, payload) VALUES (?, ?, ?)",
                    (report_id, time.time() if now is None else now, payload))

    def pending(self, limit: int, *, after: int = 0, exclude: Sequence[int] = ()) -> list[Pending]:
        """The oldest reports (by row) past ``after``, without the rows in ``exclude``."""
        skip = set(exclude)
        rows = run_sql("SELECT id, report_id, payload FROM fleet_hit WHERE id > ? "
                       "ORDER BY id LIMIT ?", (after, limit + len(skip))).fetchall()
        return [Pending(int(r), str(rid), bytes(p)) for r, rid, p in rows
                if r not in skip][:limit]

    def delete(self, rows: Sequence[int]) -> None:
        """The broker acknowledged these: they are the centre's now."""
        if not rows:
            return
        with write_txn():
            run_sql(f"DELETE FROM fleet_hit WHERE id IN ({', '.join('?' * len(rows))})",
                    list(rows))

    def count(self) -> int:
        (n,) = run_sql("SELECT COUNT(*) FROM fleet_hit").fetchone()
        return int(n)
