#!/usr/bin/env python3
"""Benchmark the appliance against gammu-smsd and smstools3 on the same simulated modems,
and against the radio's own limit (issue 8). One command, one report:

    python scripts/bench.py                 # full run by hand (about 40 minutes)
    python scripts/bench.py --smoke         # CI: 2 modems, 20 SMS, small registry (< 1 min)
    python scripts/bench.py --systems appliance --modems 8 --latencies 0

For each system, N modems and AT+CMGS latency: replies per second, efficiency against the
radio limit (N / latency parts per second), latency p50/p99 (citizen sent → reply complete;
for the appliance also SMS stored → first part submitted, from state.db), CPU per SMS,
peak RSS, time to ready / to first reply. Then the registry benchmark
(scripts/bench_registry.py) in the same report. See BENCHMARKS.md for the method.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_appliance import ApplianceRunner, profile_summary  # noqa: E402
from bench_peers import GammuRunner, SmstoolsRunner  # noqa: E402
from bench_run import Row, Runner, Scenario, run_scenario  # noqa: E402
from bench_support import MAX_AGE_HOURS, ROOT, Citizens, cached_registry  # noqa: E402
from peer_reply import LocalAnswer  # noqa: E402

log = logging.getLogger("bench")

SYSTEMS = {"appliance": "appliance", "gammu": "gammu-smsd", "smstools": "smstools3"}
BINARIES = {"gammu": "gammu-smsd", "smstools": "smsd"}


def _ints(text: str) -> list[int]:
    return [int(x) for x in text.split(",") if x]


def _floats(text: str) -> list[float]:
    return [float(x) for x in text.split(",") if x]


def machine() -> dict[str, str]:
    cpu = next((line.split(":", 1)[1].strip() for line in
                Path("/proc/cpuinfo").read_text().splitlines()
                if line.startswith("model name")), platform.processor())
    mem = next(int(line.split()[1]) for line in Path("/proc/meminfo").read_text().splitlines()
               if line.startswith("MemTotal"))

    def version(cmd: list[str]) -> str:
        try:
            out = subprocess.run(cmd, capture_output=True, text=True, timeout=10, check=False)
            return (out.stdout or out.stderr).strip().splitlines()[0]
        except (OSError, IndexError, subprocess.TimeoutExpired):
            return "not installed"

    return {"date": time.strftime("%Y-%m-%d %H:%M %Z"), "nproc": str(os.cpu_count()),
            "cpu": cpu, "memory": f"{mem / 1024 / 1024:.1f} GiB",
            "python": platform.python_version(), "kernel": platform.release(),
            "load average (1/5/15 min)": " ".join(f"{x:.2f}" for x in os.getloadavg()),
            "gammu-smsd": version(["gammu-smsd", "--version"]),
            "smsd": version(["smsd", "-V"])}


def runner_factory(system: str, registry: Path, latency_real: float, *, status_reports: bool,
                   send_mode: str | None) -> Callable[[Path], Runner]:
    if system == "appliance":
        timeout = max(60.0, 3 * latency_real + 10)
        return lambda work: ApplianceRunner(work, registry, send_timeout_s=min(300, timeout),
                                            status_reports=status_reports, send_mode=send_mode)
    if system == "gammu":
        return lambda work: GammuRunner(work, registry)
    return lambda work: SmstoolsRunner(work, registry)


# -- report ---------------------------------------------------------------------------------

def _f(value: float | None, fmt: str, none: str = "–") -> str:
    return none if value is None else format(value, fmt)


HEADER = ("| system | N | phase | SMS | ok | replies/s | appliance ÷ this | radio eff. | "
          "e2e p50/p99 s | stored→submit p50/p99 ms | CPU ms/SMS (hooks) | sim ms/SMS | "
          "RSS MB | ready s | 1st reply s |")


def table(rows: list[Row], latency: float) -> list[str]:
    out = [f"### AT+CMGS latency {latency:g} s", "", HEADER, "|" + "---|" * 15]
    base = {r.modems: r.replies_per_s for r in rows
            if r.system == "appliance" and r.phase == "burst" and r.latency == latency}
    for r in rows:
        if r.latency != latency:
            continue
        ratio = None
        mine = base.get(r.modems)
        if r.system != "appliance" and r.replies_per_s and mine:
            ratio = mine / r.replies_per_s
        stored = (f"{_f(r.stored_p50 and r.stored_p50 * 1000, '.1f')}/"
                  f"{_f(r.stored_p99 and r.stored_p99 * 1000, '.1f')}"
                  if r.stored_p50 is not None else "–")
        cpu = (f"{_f(r.cpu_ms, '.1f')} ({_f(r.reaped_cpu_ms, '.1f')})"
               if r.cpu_ms is not None else "–")
        out.append(
            f"| {SYSTEMS.get(r.system, r.system)} | {r.modems} | {r.phase} | {r.messages} | "
            f"{r.answered}{'!' if r.wrong or r.answered < r.messages else ''} | "
            f"{_f(r.replies_per_s, '.2f')} | {_f(ratio, '.1f', '')}{'×' if ratio else ''} | "
            f"{_f(r.efficiency, '.3f')} | {_f(r.e2e_p50, '.2f')}/{_f(r.e2e_p99, '.2f')} | "
            f"{stored} | {cpu} | {_f(r.sim_cpu_ms, '.1f')} | {_f(r.rss_mb, '.1f')} | "
            f"{_f(r.ready_s, '.2f')} | {_f(r.first_reply_s, '.2f')} |")
    return out


def targets(rows: list[Row]) -> list[str]:
    """Issue 8's targets, each judged on the rows it names."""
    def pick(system: str, modems: int, latency: float, phase: str = "burst") -> Row | None:
        return next((r for r in rows if r.system == system and r.modems == modems
                     and r.latency == latency and r.phase.startswith(phase)), None)

    lines = []

    def verdict(name: str, ok: bool | None, detail: str) -> None:
        lines.append(f"- {name}: {'n/a' if ok is None else 'MET' if ok else 'MISSED'} — {detail}")

    slow = max((r.latency for r in rows), default=0.0)
    big = max((r.modems for r in rows), default=0)
    r = pick("appliance", big, slow)
    verdict(f"≥ 0.98 of the radio limit at {slow:g} s latency, {big} modems",
            None if r is None or r.efficiency is None else r.efficiency >= 0.98,
            f"efficiency {_f(r.efficiency if r else None, '.3f')}")
    mid = 8 if any(x.modems == 8 for x in rows) else big
    a = pick("appliance", mid, 0.0)
    peers = [p for s in ("gammu", "smstools") if (p := pick(s, mid, 0.0)) and p.replies_per_s]
    best = max(peers, key=lambda p: p.replies_per_s or 0, default=None)
    if a and a.replies_per_s and best and best.replies_per_s and a.cpu_ms and best.cpu_ms:
        verdict(f"≥ 2× the faster peer's replies/s at 0 s, {mid} modems",
                a.replies_per_s >= 2 * best.replies_per_s,
                f"{a.replies_per_s:.2f} vs {SYSTEMS[best.system]} {best.replies_per_s:.2f} "
                f"({a.replies_per_s / best.replies_per_s:.2f}×)")
        verdict("≤ 1/3 of its CPU per reply", a.cpu_ms <= best.cpu_ms / 3,
                f"{a.cpu_ms:.1f} ms vs {best.cpu_ms:.1f} ms "
                f"({a.cpu_ms / best.cpu_ms:.2f}×; daemon alone "
                f"{best.cpu_ms - (best.reaped_cpu_ms or 0):.1f} ms)")
    else:
        verdict(f"≥ 2× the faster peer at 0 s, {mid} modems", None, "no peer measured")
    paced = [x for x in rows if x.system == "appliance" and x.phase.startswith("paced")
             and x.stored_p99 is not None]
    worst = max(paced, key=lambda x: x.stored_p99 or 0, default=None)
    verdict("stored → first part submitted p99 < 50 ms (paced load)",
            None if worst is None else (worst.stored_p99 or 0) < 0.050,
            f"worst p99 {_f(worst.stored_p99 * 1000 if worst and worst.stored_p99 else None, '.1f')}"
            f" ms ({worst.modems if worst else '–'} modems)")
    rss = max((x.rss_mb or 0 for x in rows if x.system == "appliance"), default=None)
    verdict(f"RSS < 80 MB ({big} modems)", None if not rss else rss < 80, f"{_f(rss, '.1f')} MB")
    ready = max((x.ready_s or 0 for x in rows if x.system == "appliance"), default=None)
    verdict("ready < 5 s", None if not ready else ready < 5, f"worst {_f(ready, '.2f')} s")
    return lines


def registry_bench(records: int) -> list[str]:
    if records <= 0:
        return []
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_registry.py"),
                          "--records", str(records), "--lookups", str(min(100_000, records))],
                         capture_output=True, text=True, cwd=ROOT, check=False)
    body = res.stdout.rstrip().splitlines() or [res.stderr[-2000:]]
    if res.returncode:
        body.append(f"(bench_registry.py exited with {res.returncode})")
    return ["```", *body, "```"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--smoke", action="store_true", help="tiny run for CI")
    ap.add_argument("--systems", default="appliance,gammu,smstools")
    ap.add_argument("--modems", type=_ints, default=[1, 4, 8, 16])
    ap.add_argument("--latencies", type=_floats, default=[0.0, 3.0],
                    help="simulated AT+CMGS seconds")
    # A burst fits the SIMs (30 slots on the simulated SIM800): a bigger one tests SIM
    # overflow, which --messages can still ask for.
    ap.add_argument("--per-modem", type=int, default=24,
                    help="burst SMS per modem at latency 0 (24)")
    ap.add_argument("--per-modem-slow", type=int, default=16,
                    help="burst SMS per modem at latencies > 0 (16)")
    ap.add_argument("--messages", type=int, default=None,
                    help="burst size at latency 0, all modems together (overrides --per-modem)")
    ap.add_argument("--paced", type=int, default=100, help="SMS in the paced phase")
    ap.add_argument("--paced-rate", type=float, default=5.0, help="SMS per second")
    ap.add_argument("--paced-modems", type=_ints, default=[8])
    ap.add_argument("--hit-ratio", type=float, default=0.5)
    ap.add_argument("--time-scale", type=float, default=1.0,
                    help="simulator time scale (real latency = latency × scale)")
    ap.add_argument("--records", type=int, default=1_000_000)
    ap.add_argument("--registry-records", type=int, default=None,
                    help="for bench_registry.py (default: --records; 0 = skip)")
    ap.add_argument("--no-status-reports", action="store_true",
                    help="appliance: do not ask for delivery reports (peers do not)")
    ap.add_argument("--send-mode", choices=("stored", "direct"),
                    help="appliance: modems.send_mode (default: the firmware default)")
    ap.add_argument("--profile", type=Path, metavar="DIR",
                    help="py-spy the appliance during each burst (slows it: a separate run)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON")
    ap.add_argument("--report", type=Path, metavar="JSON",
                    help="only print the tables and targets of an earlier --json run")
    ap.add_argument("--work", type=Path, help="work directory (default: a temporary one)")
    args = ap.parse_args(argv)
    # Stop cleanly (daemons terminated, work directory removed) on SIGTERM, and on Ctrl-C
    # even when started in the background, where the shell leaves SIGINT ignored.
    signal.signal(signal.SIGTERM, lambda signum, frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)
    if args.report:
        saved = json.loads(args.report.read_text())
        saved_rows = [Row(**r) for r in saved["rows"]]
        print("\n".join(f"- {k}: {v}" for k, v in saved["machine"].items()) + "\n")
        for latency in sorted({r.latency for r in saved_rows}):
            print("\n".join(table(saved_rows, latency)) + "\n")
        print("\n".join(targets(saved_rows)))
        return 0
    if args.smoke:
        args.modems, args.latencies, args.messages = [2], [0.0], 20
        args.paced, args.paced_modems, args.paced_rate = 10, [2], 10.0
        args.records = 2000
        args.registry_records = 20_000 if args.registry_records is None else args.registry_records
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")

    systems = []
    for s in args.systems.split(","):
        if s not in SYSTEMS:
            ap.error(f"unknown system {s!r}; choose from {', '.join(SYSTEMS)}")
        if s in BINARIES and shutil.which(BINARIES[s]) is None:
            print(f"skipping {SYSTEMS[s]}: {BINARIES[s]} is not installed "
                  f"(apt-get install {'gammu-smsd' if s == 'gammu' else 'smstools'})")
            continue
        systems.append(s)
    info = machine()
    print("# Benchmark run\n")
    print("\n".join(f"- {k}: {v}" for k, v in info.items()))
    print(f"- command: python scripts/bench.py {' '.join(argv or sys.argv[1:])}\n", flush=True)

    registry = cached_registry(args.records)
    answer = LocalAnswer(registry, max_age_hours=MAX_AGE_HOURS)
    citizens = Citizens()
    work = args.work or Path(tempfile.mkdtemp(prefix="nsor-bench-", dir="/var/tmp"))
    rows: list[Row] = []
    profiles: list[Path] = []
    try:
        for latency in args.latencies:
            for n in args.modems:
                for system in systems:
                    zero = args.messages or args.per_modem * n
                    sc = Scenario(system, n, latency,
                                  burst=zero if latency == 0 else args.per_modem_slow * n,
                                  paced=args.paced if latency == 0 and n in args.paced_modems
                                  else 0, paced_rate=args.paced_rate,
                                  time_scale=args.time_scale, hit_ratio=args.hit_ratio)
                    d = work / f"{system}-{n}-{latency:g}"
                    factory = runner_factory(system, registry, sc.latency_real,
                                             status_reports=not args.no_status_reports,
                                             send_mode=args.send_mode)
                    prof = None
                    if args.profile and system == "appliance":
                        args.profile.mkdir(parents=True, exist_ok=True)
                        prof = args.profile / f"appliance-{n}-{latency:g}.txt"
                        profiles.append(prof)
                    try:
                        got = run_scenario(sc, factory, work=d, answer=answer,
                                           registry=registry, records=args.records,
                                           citizens=citizens, profile=prof)
                    except Exception as exc:  # one broken scenario must not lose the rest
                        log.exception("%s on %d modems failed", system, n)
                        got = [Row(system, n, latency, "burst", sc.burst,
                                   problems=[f"benchmark error: {exc!r}"])]
                    for r in got:
                        print(f"  {SYSTEMS[system]:10} N={n:2} L={latency:g}s {r.phase:11} "
                              f"{r.answered}/{r.messages} ok, {_f(r.replies_per_s, '.2f')}/s, "
                              f"CPU {_f(r.cpu_ms, '.1f')} ms/SMS"
                              + (f"  PROBLEMS: {'; '.join(r.problems)}" if r.problems else ""),
                              flush=True)
                    rows += got
                    if not args.work:
                        shutil.rmtree(d, ignore_errors=True)
    finally:
        if not args.work:
            shutil.rmtree(work, ignore_errors=True)

    print(f"\n## Message path ({args.records:,} records; time scale {args.time_scale:g})\n")
    for latency in args.latencies:
        print("\n".join(table(rows, latency)) + "\n")
    print("load average at the end (1/5/15 min): "
          + " ".join(f"{x:.2f}" for x in os.getloadavg()) + "\n")
    print("## Targets (issue 8)\n")
    print("\n".join(targets(rows)))
    for prof in profiles:
        if prof.exists():
            print(f"\n## Profile {prof.name} (py-spy, GIL-holding samples, inclusive)\n")
            print("```\n" + "\n".join(profile_summary(prof, 25)) + "\n```")
    reg = args.records if args.registry_records is None else args.registry_records
    if reg:
        print(f"\n## Registry ({reg:,} records, scripts/bench_registry.py)\n")
        print("\n".join(registry_bench(reg)), flush=True)
    if args.json:
        args.json.write_text(json.dumps({"machine": info, "rows": [asdict(r) for r in rows]},
                                        indent=1))
    failed = [r for r in rows if r.answered < r.messages or r.wrong]
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
