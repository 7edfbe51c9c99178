#!/usr/bin/env python3
"""Where a modem's time goes between two sends, from a benchmark's AT trace.

    python scripts/bench.py --systems appliance --modems 16 --latencies 3 --paced 0 \\
        --registry-records 0 --work /tmp/w
    python scripts/at_gaps.py /tmp/w/appliance-16-3/at-trace.txt --latency 3

For each modem, the time from one send command (``AT+CMSS``, or ``AT+CMGS`` for a direct
send or a peer) to the next, less the network's ``--latency``, is the time the radio stood
idle: the reads, deletes and writes done between two parts. Prints its median, mean, p90
and p99, the share of the radio it cost, and the longest gaps with the commands in them.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from collections import defaultdict
from pathlib import Path

SENDS = ("AT+CMSS=", "AT+CMGS=")


def gaps(trace: Path, latency: float) -> list[tuple[float, str, list[tuple[float, str]]]]:
    """(idle seconds, modem, [(ms after the previous send's latency, command)]) per pair of
    consecutive sends on one modem."""
    by_modem: dict[str, list[tuple[float, str]]] = defaultdict(list)
    for line in trace.read_text().splitlines():
        stamp, modem, command = line.split(" ", 2)
        by_modem[modem].append((float(stamp), command))
    out = []
    for modem, lines in by_modem.items():
        sends = [i for i, (_, cmd) in enumerate(lines)
                 if cmd.upper().startswith(SENDS) and "?" not in cmd]
        for a, b in zip(sends, sends[1:]):
            start = lines[a][0] + latency
            between = [(round((t - start) * 1000, 1), cmd) for t, cmd in lines[a + 1:b + 1]]
            out.append((lines[b][0] - start, modem, between))
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("trace", type=Path, help="at-trace.txt from a benchmark --work directory")
    ap.add_argument("--latency", type=float, required=True,
                    help="the simulated network latency of that run, in seconds")
    ap.add_argument("--longest", type=int, default=5)
    args = ap.parse_args()
    found = gaps(args.trace, args.latency)
    if not found:
        print(f"{args.trace}: no two sends on one modem", file=sys.stderr)
        return 1
    idle = sorted(g for g, _, _ in found)
    n = len(idle)
    mean = statistics.fmean(idle)
    print(f"{n} gaps between two sends on one modem ({args.trace})")
    print(f"idle ms: median {idle[n // 2] * 1000:.1f}, mean {mean * 1000:.1f}, "
          f"p90 {idle[int(n * 0.9)] * 1000:.1f}, p99 {idle[min(n - 1, int(n * 0.99))] * 1000:.1f}")
    if args.latency > 0:
        print(f"radio time lost to them: {mean / (args.latency + mean) * 100:.2f} %")
    print(f"\nlongest {args.longest} (ms after the previous send's latency, command):")
    for gap, modem, between in sorted(found, key=lambda g: -g[0])[:args.longest]:
        steps = "  ".join(f"{cmd} ({ms:g})" for ms, cmd in between)
        print(f"  {gap * 1000:6.1f} ms  {modem}: {steps}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
