#!/usr/bin/env python3
"""Registry benchmark at national scale: snapshot apply, lookups, delta apply, peak RSS.

Publisher work (generating fictional exports, building and signing versions) runs in child
processes, so the peak RSS printed is the unit side's alone: this process syncs from a
local HTTP server exactly as a unit would (TUF verification included).

    python scripts/bench_registry.py                    # 1,000,000 records (a few minutes)
    python scripts/bench_registry.py --records 20000    # smoke mode for CI (seconds)

Targets (issue 4, on the 2-core dev box): snapshot < 60 s, lookup p99 < 0.2 ms,
10,000-record delta < 2 s, peak RSS < 80 MB.
"""

from __future__ import annotations

import argparse
import logging
import random
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from appliance.registry.lookup import Registry  # noqa: E402
from appliance.registry.sync import RegistrySync  # noqa: E402


def _run(*cmd: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *cmd], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def _publish(work: Path, export: Path) -> float:
    return _run("scripts/publish_registry.py", "publish", str(export), "--repo",
                str(work / "repo"), "--keys", str(work / "keys"))


def _percentile(sorted_ns: list[int], q: float) -> float:
    return sorted_ns[min(len(sorted_ns) - 1, int(q * len(sorted_ns)))] / 1e6


def _lookups(db: Path, samples: int) -> tuple[float, float, float, int]:
    conn = sqlite3.connect(db)
    hits = [r[0] for r in conn.execute(
        "SELECT cnic FROM offender ORDER BY random() LIMIT ?", (samples // 2,))]
    conn.close()
    rng = random.Random(7)
    misses = [f"{rng.randrange(1, 8)}{rng.randrange(10**12):012d}" for _ in hits]
    queries = hits + misses
    rng.shuffle(queries)
    found = 0
    times: list[int] = []
    with Registry(db) as registry:
        registry.lookup(queries[0])  # open outside the measurement
        clock = time.perf_counter_ns
        for cnic in queries:
            t0 = clock()
            record = registry.lookup(cnic)
            times.append(clock() - t0)
            found += record is not None
    times.sort()
    return _percentile(times, 0.5), _percentile(times, 0.99), _percentile(times, 0.999), found


def _peewee_lookup_p50(db: Path, samples: int = 5000) -> float:
    """The same lookup through Peewee, to justify the raw sqlite3 hot path."""
    import peewee as pw

    from appliance.registry.models import MODELS, Offender
    conn = sqlite3.connect(db)
    cnics = [r[0] for r in conn.execute("SELECT cnic FROM offender LIMIT ?", (samples,))]
    conn.close()
    pdb = pw.SqliteDatabase(str(db))
    times: list[int] = []
    with pdb.bind_ctx(MODELS):
        for cnic in cnics:
            t0 = time.perf_counter_ns()
            Offender.get_or_none(Offender.cnic == cnic)
            times.append(time.perf_counter_ns() - t0)
    pdb.close()
    times.sort()
    return _percentile(times, 0.5)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--changes", type=int, default=10_000, help="delta size (operations)")
    ap.add_argument("--lookups", type=int, default=100_000)
    ap.add_argument("--dir", type=Path, default=None,
                    help="work directory (default: a temporary one under /var/tmp)")
    ap.add_argument("--keep", action="store_true", help="keep the work directory")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    work = args.dir or Path(tempfile.mkdtemp(prefix="nsor-bench-", dir="/var/tmp"))
    work.mkdir(parents=True, exist_ok=True)
    print(f"registry benchmark: {args.records:,} records, {args.changes:,}-operation delta,"
          f" work dir {work}")
    server = None
    try:
        v1, v2 = work / "export-v1.csv", work / "export-v2.csv"
        t_gen = _run("scripts/gen_registry.py", str(args.records), str(v1))
        _run("scripts/gen_registry.py", str(args.records), str(v2), "--changes",
             str(args.changes))
        _run("scripts/publish_registry.py", "keys", "init", "--repo", str(work / "repo"),
             "--keys", str(work / "keys"), "--export-root", str(work / "root.json"))
        t_pub1 = _publish(work, v1)
        server = subprocess.Popen(
            [sys.executable, "-m", "http.server", "0", "-b", "127.0.0.1", "-d",
             str(work / "repo" / "public")], stdout=subprocess.PIPE,
            stderr=subprocess.DEVNULL, text=True)
        assert server.stdout is not None
        port = int(server.stdout.readline().split(" port ")[1].split(" ")[0])
        url = f"http://127.0.0.1:{port}"
        db = work / "unit" / "registry.db"
        sync = RegistrySync(db, url, work / "root.json")

        r1 = sync.sync()
        size_db = db.stat().st_size
        snap = next((work / "repo" / "public" / "targets" / "registry").glob("*.snapshot-*"))
        p50, p99, p999, found = _lookups(db, args.lookups)
        pw_p50 = _peewee_lookup_p50(db)
        t_pub2 = _publish(work, v2)
        r2 = sync.sync()
        rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

        print(f"  generate export (child)          {t_gen:8.1f} s")
        print(f"  publish v1 (child: import+sign)  {t_pub1:8.1f} s   <- what rebuilding "
              "from NDJSON/CSV would cost a unit")
        print(f"  snapshot: {snap.stat().st_size / 1e6:.1f} MB gzip -> "
              f"{size_db / 1e6:.1f} MB registry.db")
        print(f"  snapshot sync (download, verify, decompress, quick_check, swap) "
              f"{r1.seconds:6.2f} s   [{r1.action} v{r1.to_version}, {r1.record_count:,} "
              f"records]   target < 60 s")
        print(f"  lookup p50 {p50 * 1000:6.1f} us  p99 {p99 * 1000:6.1f} us  "
              f"p99.9 {p999 * 1000:6.1f} us   ({args.lookups:,} lookups, {found:,} hits)"
              "   target p99 < 200 us")
        print(f"  lookup via Peewee p50 {pw_p50 * 1000:6.1f} us   (why the hot path uses "
              "sqlite3 directly)")
        print(f"  publish v2 (child)               {t_pub2:8.1f} s")
        print(f"  delta sync (download, verify, apply in one transaction) {r2.seconds:6.2f} s"
              f"   [{r2.action} v{r2.from_version}->v{r2.to_version}]   target < 2 s")
        print(f"  peak RSS (unit side, this process) {rss_mb:6.1f} MB   target < 80 MB")
        ok = (r1.action == "snapshot" and r2.action == "delta" and found == args.lookups // 2)
        return 0 if ok else 1
    finally:
        if server is not None:
            server.terminate()
            server.wait(timeout=10)
        if not args.keep and args.dir is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
