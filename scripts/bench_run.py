"""One benchmark scenario: a system (the appliance or a peer) on N simulated modems at one
simulated ``AT+CMGS`` latency, driven through three phases by the same code for everyone:

1. **Warm-up / time to first reply.** One SMS per modem is sent the instant the process is
   spawned; the time until every modem has answered is the start-up a citizen sees.
2. **Burst.** M SMS at once (query i to modem i mod N): throughput, efficiency against the
   radio limit, CPU per SMS, latency under a full queue.
3. **Paced** (optional). SMS at a fixed rate well under capacity: latency with no queue,
   which is what "stored → first part submitted" targets mean.

The simulator runs in this process; each system in its own processes, so their CPU and
memory come from ``/proc`` alone. Replies are checked against the appliance's responder:
a wrong or missing reply is counted, never silently ignored.
"""

from __future__ import annotations

import logging
import os
import random
import resource
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from bench_support import (
    Citizens,
    Cpu,
    Query,
    make_queries,
    peak_rss_mb,
    percentile,
    tree_cpu,
)

from appliance.simulator.bank import Received, Simulator

log = logging.getLogger(__name__)

POLL_S = 0.05  # how often this process checks the handsets' inboxes (it never sleeps on
#                events of the system under test, so this only bounds the bench's own work)


class Runner(Protocol):
    name: str
    problems: list[str]

    def start(self, sim: Any) -> None: ...
    def pids(self) -> list[int]: ...
    def alive(self) -> bool: ...
    def ready_at(self) -> float | None: ...
    def stop(self) -> None: ...


@dataclass(frozen=True)
class Scenario:
    system: str
    modems: int
    latency: float            # simulated seconds per AT+CMGS (× time_scale in real time)
    burst: int
    paced: int = 0
    paced_rate: float = 5.0   # SMS per second, all modems together
    time_scale: float = 1.0
    hit_ratio: float = 0.5

    @property
    def latency_real(self) -> float:
        return self.latency * self.time_scale


@dataclass
class Row:
    """One line of the report: one phase of one scenario."""

    system: str
    modems: int
    latency: float
    phase: str
    messages: int
    answered: int = 0
    wrong: int = 0
    parts: int = 0
    elapsed_s: float | None = None
    replies_per_s: float | None = None
    efficiency: float | None = None
    radio_replies_per_s: float | None = None
    cpu_ms: float | None = None          # per SMS, whole process tree
    reaped_cpu_ms: float | None = None   # per SMS, of which hooks and their children
    sim_cpu_ms: float | None = None      # per SMS, this process (simulator + bench)
    rss_mb: float | None = None
    ready_s: float | None = None
    first_reply_s: float | None = None
    e2e_p50: float | None = None
    e2e_p99: float | None = None
    stored_p50: float | None = None
    stored_p99: float | None = None
    load: float = 0.0
    problems: list[str] = field(default_factory=list)


def _self_cpu() -> float:
    ru = resource.getrusage(resource.RUSAGE_SELF)
    return ru.ru_utime + ru.ru_stime


def _send(sim: Simulator, queries: Sequence[Query], sent: dict[str, float],
          rate: float | None = None) -> None:
    start = time.time()
    for i, q in enumerate(queries):
        if rate:
            delay = start + i / rate - time.time()
            if delay > 0:
                time.sleep(delay)  # pacing the citizens, not waiting on the system
        sent[q.sender] = time.time()
        sim.citizen_send(q.sender, q.modem, q.text)


def _collect(sim: Simulator, queries: Sequence[Query], runner: Runner, timeout: float,
             settle: float = 0.0, at_done: Callable[[], None] | None = None
             ) -> dict[str, list[Received]]:
    """Poll the handsets until every query is answered (then ``settle`` s more, to catch
    duplicates), the timeout passes, or the system under test dies. ``at_done`` runs the
    moment the last answer is seen (or the wait ends), before settling."""
    pending = {q.sender for q in queries}
    got: dict[str, list[Received]] = {}
    deadline = time.monotonic() + timeout
    done_at: float | None = None
    while time.monotonic() < deadline:
        for sender in list(pending):
            msgs = sim.inbox_messages(sender)
            if msgs:
                got[sender] = msgs
                pending.discard(sender)
        if not pending:
            if done_at is None:
                done_at = time.monotonic()
                if at_done is not None:
                    at_done()
            if time.monotonic() - done_at >= settle:
                break
        if not runner.alive():
            runner.problems.append(f"{runner.name} died during the run")
            break
        time.sleep(POLL_S)
    if done_at is None and at_done is not None:
        at_done()
    for sender in got:  # final read: duplicates that arrived while settling
        got[sender] = sim.inbox_messages(sender)
    return got


def _digits(number: str) -> str:
    return number.lstrip("+")


def _score(row: Row, sim: Simulator, queries: Sequence[Query],
           got: dict[str, list[Received]], sent: dict[str, float]) -> list[float]:
    expected = {q.sender: q.reply for q in queries}
    row.answered = len(got)
    row.wrong = sum(1 for s, msgs in got.items() if [m.text for m in msgs] != [expected[s]])
    wanted = {_digits(q.sender) for q in queries}
    row.parts = sum(1 for p in sim.submitted if _digits(p.recipient) in wanted)
    if row.answered < len(queries):
        row.problems.append(f"{len(queries) - row.answered} of {len(queries)} SMS unanswered")
    if row.wrong:
        row.problems.append(f"{row.wrong} wrong or duplicated replies")
    return [msgs[0].time - sent[s] for s, msgs in got.items()]


def _write_at_trace(sim: Simulator, path: Path) -> None:
    """Every modem's AT command lines with their arrival times (the last 2,000 per modem),
    for ``scripts/at_gaps.py``: where a modem's time between two sends goes."""
    lines = sorted((t, m.name, cmd) for m in sim.modems for t, cmd in m.command_times())
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(f"{t:.4f} {name} AT{cmd}\n" for t, name, cmd in lines))


def run_scenario(sc: Scenario, runner_for: Callable[[Path], Runner], *, work: Path,
                 answer: Callable[[str, str], tuple[str, str]], registry: Path, records: int,
                 citizens: Citizens, seed: int = 7, profile: Path | None = None) -> list[Row]:
    rng = random.Random(f"{seed}:{sc.modems}:{sc.latency}")

    def queries(count: int, hit_ratio: float) -> list[Query]:
        return make_queries(answer, registry=registry, records=records, count=count,
                            modems=sc.modems, hit_ratio=hit_ratio, citizens=citizens, rng=rng)

    warm = queries(sc.modems, 0.0)  # misses: one part each
    burst = queries(sc.burst, sc.hit_ratio)
    paced = queries(sc.paced, sc.hit_ratio)
    parts = sum(q.parts for q in burst)
    slow = max(sc.latency_real, 1.0)  # gammu needs ~0.7 s per reply even at zero latency
    rows: list[Row] = []
    sim = Simulator(work / "ports", sc.modems, time_scale=sc.time_scale, seed=seed)
    sim.start()
    runner = runner_for(work / "run")
    sent: dict[str, float] = {}
    try:
        for m in sim.modems:
            m.faults.cmgs_latency = sc.latency
        launched = time.time()
        runner.start(sim)
        _send(sim, warm, sent)
        got = _collect(sim, warm, runner, timeout=90)
        head = Row(sc.system, sc.modems, sc.latency, "burst", len(burst),
                   load=os.getloadavg()[0])
        if got:
            head.first_reply_s = max(msgs[0].time for msgs in got.values()) - launched
        ready = runner.ready_at()
        head.ready_s = ready - launched if ready else None
        if len(got) < len(warm):
            head.problems.append(f"only {len(got)} of {sc.modems} modems answered the "
                                 "warm-up SMS within 90 s")
            rows.append(head)
            return rows

        if profile is not None and hasattr(runner, "profile_start"):
            runner.profile_start(profile)
        cpu0, self0, t0 = tree_cpu(runner.pids()), _self_cpu(), time.time()
        end: list[Any] = []
        _send(sim, burst, sent)
        got = _collect(sim, burst, runner, timeout=60 + 4 * parts / sc.modems * slow,
                       settle=1.0, at_done=lambda: end.extend(
                           (tree_cpu(runner.pids()), _self_cpu(),
                            peak_rss_mb(runner.pids()))))
        cpu1, self1, head.rss_mb = end
        if profile is not None and hasattr(runner, "profile_stop"):
            runner.profile_stop()
        e2e = _score(head, sim, burst, got, sent)
        if got:
            head.elapsed_s = max(m[0].time for m in got.values()) - t0
            head.replies_per_s = head.answered / head.elapsed_s
            if sc.latency_real > 0:
                radio_parts_per_s = sc.modems / sc.latency_real
                head.efficiency = head.parts / head.elapsed_s / radio_parts_per_s
                head.radio_replies_per_s = radio_parts_per_s * len(burst) / parts
        n = max(1, head.answered)
        used: Cpu = cpu1 - cpu0
        head.cpu_ms = used.total / n * 1000
        head.reaped_cpu_ms = used.reaped / n * 1000
        head.sim_cpu_ms = (self1 - self0) / n * 1000
        head.e2e_p50, head.e2e_p99 = percentile(e2e, 0.5), percentile(e2e, 0.99)
        rows.append(head)

        if paced:
            row = Row(sc.system, sc.modems, sc.latency, f"paced {sc.paced_rate:g}/s",
                      len(paced), load=os.getloadavg()[0])
            _send(sim, paced, sent, rate=sc.paced_rate)
            got = _collect(sim, paced, runner, timeout=60 + 4 * len(paced) * slow, settle=1.0)
            e2e = _score(row, sim, paced, got, sent)
            row.e2e_p50, row.e2e_p99 = percentile(e2e, 0.5), percentile(e2e, 0.99)
            rows.append(row)
    finally:
        runner.stop()
        sim.stop()
        _write_at_trace(sim, work / "at-trace.txt")
    rows[0].problems += runner.problems
    stored = getattr(runner, "stored_to_submitted", None)
    if stored is not None:
        for row, phase in zip(rows, (burst, paced)):
            delays = stored({q.sender for q in phase})
            row.stored_p50, row.stored_p99 = percentile(delays, 0.5), percentile(delays, 0.99)
    return rows
