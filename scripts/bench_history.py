#!/usr/bin/env python3
"""What the status page's 24-hour history costs (appliance/state/history.py), at its worst case:
four modems with a signal and a balance, and every reply verdict, every minute of the day.

    python scripts/bench_history.py [--modems 4] [--dir /var/tmp]

Prints the rows kept, the time to read the window into chart columns (uncached and cached),
the size of /history.json, the time of one minute's write (with its fsync: state.db runs
synchronous=FULL) and the file's size. Use a --dir on the disk the unit uses (an SD card
is much slower to fsync than a PC's SSD).
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from appliance.state.history import STEP_S, VERDICTS, WINDOW_S, History  # noqa: E402
from appliance.state.store import Store, run_sql, write_txn  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--modems", type=int, default=4)
    ap.add_argument("--dir", default=None, help="where to make the state.db (default: tmp)")
    args = ap.parse_args()
    folder = tempfile.mkdtemp(dir=args.dir)
    store = Store(Path(folder) / "state.db")
    history = History()
    now = time.time()

    def minute(i: int) -> dict[str, float]:
        values = {"queue": float(i % 5)}
        for m in range(args.modems):
            values[f"rssi.sim{m}"] = 15.0
            values[f"balance.sim{m}"] = 100.0 - i / 100
        values.update({"replies." + v: 1.0 for v in VERDICTS})
        return values

    with write_txn():
        for i in range(WINDOW_S // STEP_S, 0, -1):
            history.record(minute(i), now=now - i * STEP_S)
    rows = run_sql("SELECT count(*) FROM history").fetchone()[0]

    runs = 10
    t0 = time.perf_counter()
    for k in range(runs):
        history.record({"queue": 0.0}, now=now)  # a write invalidates the cached window
        window = history.window(now)
    uncached = (time.perf_counter() - t0) / runs
    t0 = time.perf_counter()
    for _ in range(runs):
        history.window(now)
    cached = (time.perf_counter() - t0) / runs
    body = json.dumps(window, separators=(",", ":"))

    t0 = time.perf_counter()
    for k in range(runs):
        history.record(minute(k), now=now)
    write = (time.perf_counter() - t0) / runs
    run_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    size = os.path.getsize(Path(folder) / "state.db")
    store.close()
    shutil.rmtree(folder)
    print(f"history: {args.modems} modems, all {len(VERDICTS)} verdicts every minute: "
          f"{rows} rows; window {uncached * 1000:.0f} ms (cached {cached * 1e6:.0f} us); "
          f"/history.json {len(body) / 1000:.0f} kB; one minute's write "
          f"{write * 1000:.1f} ms with fsync; state.db {size / 1e6:.2f} MB")


if __name__ == "__main__":
    main()
