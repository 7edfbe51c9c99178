#!/usr/bin/env python3
"""Registry benchmark at national scale: snapshot apply, lookups, delta apply, peak RSS.

Publisher work (generating fictional exports, building and signing versions) runs in child
processes, so the peak RSS printed is the unit side's alone: this process syncs from a
local HTTP server exactly as a unit would (TUF verification included).

    python scripts/bench_registry.py                    # 1,000,000 records (a few minutes)
    python scripts/bench_registry.py --records 20000    # smoke mode for CI (seconds)

Targets (issue 4, on the 2-core dev box): snapshot < 60 s, lookup p99 < 0.2 ms,
10,000-record delta < 2 s, peak RSS < 80 MB.

Issue 12 adds what chose two intervals (docs/registry.md): the CPU time of one whole-content
verification (``registry-verify``), and the bytes and CPU time of one urgent-update check
that finds nothing new (``registry-check``), with the load a fleet of 1,000 units puts on
one static server at the chosen interval.
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
from appliance.registry.seal import Verification, verify_file  # noqa: E402
from appliance.registry.sync import RegistrySync  # noqa: E402

#: The default urgent-check interval and the fleet it is judged for (docs/registry.md).
CHECK_MINUTES = 5
FLEET = 1000


def _cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    return usage.ru_utime + usage.ru_stime


def _verify_cost(db: Path, runs: int = 3) -> tuple[float, float]:
    """(wall, CPU) seconds of the best of ``runs`` whole-content verifications."""
    best = (float("inf"), float("inf"))
    for _ in range(runs):
        t0, c0 = time.perf_counter(), _cpu()
        result = verify_file(db)
        wall, cpu = time.perf_counter() - t0, _cpu() - c0
        assert result.ok, result.problem
        best = min(best, (wall, cpu))
    return best


def _check_cost(sync: RegistrySync, db: Path, server_log: list[str],
                public: Path, runs: int = 20) -> tuple[float, float, float]:
    """(bytes, requests, CPU seconds) of one check that finds nothing new, averaged; the
    installed content counts as verified (the service reuses its scheduled verification)."""
    sync.verifier = lambda expected: Verification(True, None, 0, 0.0)
    before = len(server_log)
    c0 = _cpu()
    for _ in range(runs):
        assert sync.sync().action == "current"
    cpu = (_cpu() - c0) / runs
    time.sleep(0.5)  # let the server's log lines for the last requests arrive
    lines = [line for line in server_log[before:] if '"GET ' in line]
    body = 0
    for line in lines:
        path = line.split('"GET ')[1].split(" ")[0]
        status = line.split('" ')[1].split(" ")[0]
        local = public / path.lstrip("/")
        if status == "200" and local.is_file():
            body += local.stat().st_size
    # Response headers of http.server are ~180 bytes, a request ~150.
    wire = body + len(lines) * (180 + 150)
    return wire / runs, len(lines) / runs, cpu


def _run(*cmd: str) -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, *cmd], check=True, cwd=ROOT,
                   stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    return time.perf_counter() - started


def _publish(work: Path, export: Path, *extra: str) -> float:
    return _run("scripts/publish_registry.py", "publish", str(export), "--repo",
                str(work / "repo"), "--keys", str(work / "keys"), *extra)


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
        # As in the service: verified first, so a lookup that finds nothing also asks the
        # verified CNIC list (lookup.py).
        assert registry.verify().ok
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
            [sys.executable, "-u", "-m", "http.server", "0", "-b", "127.0.0.1", "-d",
             str(work / "repo" / "public")], stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, text=True)
        assert server.stdout is not None and server.stderr is not None
        port = int(server.stdout.readline().split(" port ")[1].split(" ")[0])
        server_log: list[str] = []
        import threading
        threading.Thread(target=lambda: server_log.extend(iter(server.stderr.readline, "")),
                         daemon=True).start()
        url = f"http://127.0.0.1:{port}"
        db = work / "unit" / "registry.db"
        sync = RegistrySync(db, url, work / "root.json")

        r1 = sync.sync()
        size_db = db.stat().st_size
        snap = next((work / "repo" / "public" / "targets" / "registry").glob("*.snapshot-*"))
        p50, p99, p999, found = _lookups(db, args.lookups)
        pw_p50 = _peewee_lookup_p50(db)
        # In smoke mode the delta removes far more than 5 % of the records: say so.
        t_pub2 = _publish(work, v2, "--allow-mass-removal", "benchmark: synthetic churn")
        r2 = sync.sync()
        verify_wall, verify_cpu = _verify_cost(db)
        check_bytes, check_requests, check_cpu = _check_cost(
            sync, db, server_log, work / "repo" / "public")
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
        print(f"  whole-content verification {verify_wall:6.2f} s wall, {verify_cpu:6.2f} s CPU"
              f"   ({args.records:,} records; registry-verify every 15 min)")
        per_day = 24 * 60 / CHECK_MINUTES
        print(f"  urgent check, nothing new: {check_bytes:,.0f} bytes, "
              f"{check_requests:.1f} requests, {check_cpu * 1000:.1f} ms CPU   -> at "
              f"{CHECK_MINUTES} min: {check_bytes * per_day * 30 / 1e6:.1f} MB/month/unit; "
              f"{FLEET:,} units: {FLEET * check_requests / (CHECK_MINUTES * 60):.1f} "
              f"requests/s, {FLEET * check_bytes / (CHECK_MINUTES * 60) / 1e3:.1f} kB/s "
              "on the server")
        print(f"FIGURES registry verify_s={verify_wall:.2f} verify_cpu_s={verify_cpu:.2f} "
              f"check_bytes={check_bytes:.0f} check_requests={check_requests:.1f} "
              f"check_cpu_ms={check_cpu * 1000:.1f}")
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
