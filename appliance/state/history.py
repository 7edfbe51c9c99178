"""The last 24 hours, minute by minute: what the status page's charts draw.

Bounded by construction: one row per (minute, series) in a small ``history`` table of
``state.db``, and every write also deletes the rows older than :data:`WINDOW_S` (and any
"newer" than now, left by a clock that was wrong). With
``M`` modems a minute has at most ``1 + 2M`` gauge rows plus one row per reply verdict seen
in that minute, so four modems keep at most ~(9 + 8) × 1,440 ≈ 25,000 rows (about 1 MB).

Why a table and not a ring in RAM: the charts survive a restart (a technician who power-
cycles the unit still sees the morning's traffic), the page reads them with one indexed
range query, and it costs one small transaction a minute (a few pages of WAL, one fsync)
beside the per-SMS transactions the unit makes anyway. A RAM ring would save that fsync but
show an empty chart after every restart, which is exactly when a technician looks.

Gauges (queue length, signal, balance) are the value at the sample; reply counts are the
replies made since the previous sample, added into that minute. A minute with no ``queue``
row is a minute the service was not running: the charts show a gap there, not a zero.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterable, Mapping
from typing import Any

import peewee as pw

from .store import db, run_sql, write_txn

STEP_S = 60
WINDOW_S = 24 * 3600

#: What a reply can be (``appliance.rules.responder.Reply.kind``), in the order the charts stack
#: them. "mixed" is a reply to several CNICs with at least one hit.
VERDICTS = ("hit", "mixed", "no_record", "invalid", "unavailable", "limit", "help", "empty")

# Series names: "queue", "replies.<verdict>", "rssi.<modem>", "balance.<modem>".
_COUNTED = "replies."


class HistoryRow(pw.Model):
    minute = pw.IntegerField()        # Unix time // 60
    series = pw.CharField()
    value = pw.FloatField()

    class Meta:
        database = db
        table_name = "history"
        primary_key = pw.CompositeKey("minute", "series")
        without_rowid = True


def sample(snap: Mapping[str, Any], replies: Mapping[str, int]) -> dict[str, float]:
    """One minute's values from a status snapshot and the replies made since the last one.

    Pure. An unknown signal (rssi 99, TS 27.007 §8.5) or balance is left out, not zero.
    """
    values: dict[str, float] = {"queue": float((snap.get("queue") or {}).get("pending", 0))}
    for kind, n in replies.items():
        if n > 0:
            values[_COUNTED + kind] = float(n)
    for m in snap.get("modems") or []:
        name = str(m.get("name"))
        rssi = m.get("rssi")
        if isinstance(rssi, (int, float)) and rssi != 99 and m.get("state") != "gone":
            values["rssi." + name] = float(rssi)
        balance = m.get("balance")
        if isinstance(balance, (int, float)) and math.isfinite(balance):
            values["balance." + name] = float(balance)
    return values


def counts_since(now: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    """Per-kind increase of a running counter (a kind new since ``before`` counts from 0)."""
    return {k: n - before.get(k, 0) for k, n in now.items() if n > before.get(k, 0)}


class History:
    """The ``history`` table. Needs the :class:`~appliance.state.store.Store` opened first."""

    def __init__(self) -> None:
        db.create_tables([HistoryRow], safe=True)
        # window() costs ~80 ms on a PC for 25,000 rows (several times that on a Pi), and the
        # page asks for it at every refresh; the answer only changes when a minute passes or
        # a sample is written, so it is kept until then.
        self._lock = threading.Lock()
        self._writes = 0
        self._cached: tuple[tuple[int, int], dict[str, Any]] | None = None

    def record(self, values: Mapping[str, float], now: float | None = None) -> None:
        """Write one sample into its minute and drop what has left the window."""
        now = time.time() if now is None else now
        minute = int(now // STEP_S)
        with write_txn():
            for series, value in values.items():
                if series.startswith(_COUNTED):   # two samples in one minute add up
                    run_sql("INSERT INTO history (minute, series, value) VALUES (?, ?, ?) "
                            "ON CONFLICT (minute, series) DO UPDATE "
                            "SET value = value + excluded.value", (minute, series, value))
                else:                             # a gauge: the latest sample wins
                    run_sql("INSERT OR REPLACE INTO history (minute, series, value) "
                            "VALUES (?, ?, ?)", (minute, series, value))
            # Rows "from the future" were written under a clock that was wrong (a Pi has no
            # RTC: until time sync it may run on the last shutdown's time, or a bad one);
            # dropping them too keeps the bound whatever the clock did.
            run_sql("DELETE FROM history WHERE minute <= ? OR minute > ?",
                    (minute - WINDOW_S // STEP_S, minute))
        with self._lock:
            self._writes += 1

    def window(self, now: float | None = None) -> dict[str, Any]:
        """The last 24 h as columns for the charts: one slot a minute, ``None`` where the
        service was not running (or a modem had no value)."""
        now = time.time() if now is None else now
        last = int(now // STEP_S)
        first = last - WINDOW_S // STEP_S + 1
        with self._lock:
            key = (last, self._writes)
            if self._cached is not None and self._cached[0] == key:
                return self._cached[1]
        rows: Iterable[tuple[int, str, float]] = run_sql(
            "SELECT minute, series, value FROM history WHERE minute >= ? AND minute <= ?",
            (first, last)).fetchall()
        result = columns(rows, first, last)
        with self._lock:
            self._cached = (key, result)
        return result


def columns(rows: Iterable[tuple[int, str, float]], first: int, last: int) -> dict[str, Any]:
    """Rows → ``{"times", "queue", "replies": {verdict: []}, "rssi": {modem: []},
    "balance": {modem: []}}``; pure, so the layout is tested without a database."""
    n = last - first + 1
    up = [False] * n
    groups: dict[str, dict[str, list[float | None]]] = {"replies": {}, "rssi": {}, "balance": {}}
    queue: list[float | None] = [None] * n
    for minute, series, value in rows:
        i = minute - first
        if not 0 <= i < n:
            continue
        if series == "queue":
            queue[i] = value
            up[i] = True
            continue
        group, _, key = series.partition(".")
        if group in groups:
            groups[group].setdefault(key, [None] * n)[i] = value
    # A running minute without a reply row had no replies: 0, so that the stacked chart
    # shows quiet minutes as quiet and a stopped unit as a gap.
    for verdict in VERDICTS:
        col = groups["replies"].setdefault(verdict, [None] * n)
        for i in range(n):
            if up[i] and col[i] is None:
                col[i] = 0.0
    # In VERDICTS order (the order the chart stacks them), then any kind a newer version made.
    replies = {v: groups["replies"][v] for v in VERDICTS}
    replies.update(sorted(groups["replies"].items()))
    totals = {v: int(sum(x or 0 for x in col)) for v, col in replies.items()}
    return {"step_s": STEP_S, "times": [(first + i) * STEP_S for i in range(n)],
            "queue": queue, "replies": replies, "replies_24h": totals,
            "rssi": dict(sorted(groups["rssi"].items())),
            "balance": dict(sorted(groups["balance"].items()))}
