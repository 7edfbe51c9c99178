"""The reliability fault suite (issue 5, point 7): nothing lost under crashes, modem faults
and bursts, with the figures printed.

Every count comes from the simulator's network (what handsets received), every "lost" is a
citizen whose handset got nothing or an inbound row never answered; the unit's own records
only explain duplicates. Each test bounds its own waits (no pytest-timeout here) and is
marked ``fault``; ``-m "not fault"`` leaves the suite out of a quick run.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from appliance.simulator.bank import Simulator
from tests.conftest import wait_until
from tests.fault_support import Crowd, Unit, read_state, show_figures

pytestmark = pytest.mark.fault

TRACE = 5  # appliance.modem.session.TRACE: raw AT traffic


class Feeder(threading.Thread):
    """Citizens texting at a steady rate, spread over the modems, while the test does harm."""

    def __init__(self, crowd: Crowd, sim: Simulator, rate: float, seed: int = 0) -> None:
        super().__init__(name="feeder", daemon=True)
        self.crowd, self.sim, self.rate = crowd, sim, rate
        self.rng = random.Random(seed)
        self.sent = 0
        self.halt = threading.Event()

    def run(self) -> None:
        start = time.monotonic()
        for i in range(len(self.crowd.numbers)):
            if self.halt.wait(max(0.0, start + i / self.rate - time.monotonic())):
                return
            self.crowd.send(self.sim, i, self.rng.randrange(len(self.sim.modems)))
            self.sent += 1


# -- kill -9 ---------------------------------------------------------------------------------------

KILLS = 50
KILL_SMS = 1000


def sends_again(sim: Simulator, crowd: Crowd, timeout: float) -> bool:
    """True once a new part reaches the network (or nothing is left to send)."""
    before = len(sim.submitted)
    return wait_until(lambda: len(sim.submitted) > before
                      or crowd.answered(sim) == len(crowd.numbers), timeout)


def test_kill_9_at_random_moments_loses_nothing(tmp_path: Path, sample_registry: Path,
                                                request: pytest.FixtureRequest,
                                                record_property: Any) -> None:
    """SIGKILL the unit at 50 random moments of a 1,000-SMS run, restarting it each time.

    A short, jittery AT+CMGS keeps some modem mid-send at most moments, so kills land
    between ``AT+CMGS`` and ``+CMGS: mr``, between the two parts of an Urdu reply, between
    the inbound commit and ``AT+CMGD``. Citizens keep texting while the unit is down: their
    SMS wait on the SIM with a +CMTI nobody read, for the start-up sweep.
    """
    rng = random.Random(5)
    crowd = Crowd.make(KILL_SMS, sample_registry, seed=5)
    with Simulator(tmp_path / "ports", 6, seed=5) as sim:
        for m in sim.modems:
            m.faults.cmgs_latency, m.faults.cmgs_jitter = 0.05, 0.15
        unit = Unit(tmp_path, sim)
        feeder = Feeder(crowd, sim, rate=KILL_SMS / (KILLS * 2.6), seed=5)
        began = time.monotonic()
        kills = 0
        unit.start()
        try:
            feeder.start()
            while kills < KILLS:
                moment = time.monotonic() + rng.uniform(1.5, 3.5)
                # A kill only counts once the restarted unit has sent something: otherwise
                # 50 kills could all land in start-up and prove nothing about sending.
                assert sends_again(sim, crowd, 60), "no progress after restart\n" + unit.log_tail()
                feeder.halt.wait(max(0.0, moment - time.monotonic()))  # the random moment
                unit.kill()
                kills += 1
                unit.start()
            feeder.join(120)
            assert wait_until(lambda: crowd.answered(sim) == KILL_SMS, 150), \
                f"{KILL_SMS - crowd.answered(sim)} citizens unanswered\n" + unit.log_tail()
            assert wait_until(lambda: read_state(unit.state_db).pending_replies == 0, 60)
        finally:
            feeder.halt.set()
            code = unit.stop()
        wall = time.monotonic() - began
        tally = crowd.tally(sim)
    state = read_state(unit.state_db)
    show_figures(request, record_property, "kill_9", {
        "kills": kills, "sms": KILL_SMS, "inbound_rows": sum(state.inbound.values()),
        "answered": tally.answered, "inbound_lost": len(tally.missing),
        "replies_lost": len(tally.missing) + state.pending_replies + state.failed_replies,
        "duplicates": tally.duplicates, "orphan_parts": tally.orphan_parts,
        "duplicate_parts": tally.duplicate_parts, "split_replies": state.splits,
        "crash_resumes": state.resends, "attempts": state.attempts, "wall_s": wall})
    assert code == 0, unit.log_tail()
    assert not tally.missing and not tally.wrong
    assert sum(state.inbound.values()) == KILL_SMS  # each SMS recorded once, none twice
    assert state.unfinished_inbound == 0 and state.pending_replies == 0
    assert state.failed_replies == 0
    assert not tally.explain_duplicates(state.tries), "a duplicate no send attempt explains"
    # The figure. With AT+CMGS each kill may catch every modem mid-send (one
    # duplicate each: 55 in 50 kills on 6 modems, measured); sending from memory
    # (send_mode "stored") lets the modem tell after restart which parts left.
    assert tally.duplicates <= kills
    # Issue 13: a reply cut by a kill resumes at its first unsent part with the same
    # reference, on the same SIM: no phone is left holding part 1 of 2.
    assert tally.orphan_parts == 0, f"{tally.orphan_parts} orphan parts"
    assert "Traceback" not in unit.log_text()


# -- one simulator fault at a time, then all of them at random -------------------------------------

#: name -> fault switches (simulated seconds; the bank runs at time_scale 0.1). Each is
#: switched on for half the modems while citizens text, then cleared.
FAULTS: dict[str, dict[str, Any]] = {
    "latency": {"cmgs_latency": 30.0, "cmgs_jitter": 20.0},          # 3-5 s, under the timeout
    "latency_over_timeout": {"cmgs_latency": 120.0},                   # +CMGS after send_timeout
    "cms_errors": {"cms_error_rate": 0.2, "cms_error_code": 500},
    "cms_38": {"cms_error_rate": 0.2, "cms_error_code": 38},
    "hang": {"hang": True},
    "unplug": {},                                                      # unplug() ... replug()
    "sim_full": {"sim_full": True},
    "dropped_cmti": {"drop_cmti_rate": 1.0},
    "urc_in_response": {"urc_in_response": True},
    "non_utf8": {"non_utf8": True, "urc_in_response": True},          # 0xFF inside responses
    "slow_prompt": {"slow_prompt": 30.0},                              # past command_timeout_s
    "deregistered": {"registered": False},
}
CLEAR = {"cmgs_latency": 0.0, "cmgs_jitter": 0.0, "cms_error_rate": 0.0, "hang": False,
         "sim_full": False, "drop_cmti_rate": 0.0, "urc_in_response": False, "non_utf8": False,
         "slow_prompt": 0.0, "registered": True, "cms_error_code": 500}


def switch(sim: Simulator, modem: int, name: str, *, on: bool) -> None:
    m = sim.modems[modem]
    if name == "unplug":
        (m.unplug if on else m.replug)()
        return
    for key, value in FAULTS[name].items():
        setattr(m.faults, key, value if on else CLEAR[key])


@contextmanager
def running_service(tmp_path: Path, sim: Simulator, *,
                    modem_overrides: dict[str, Any] | None = None,
                    **sections: Any) -> Iterator[Any]:
    """An in-process Service on ``sim``, logging everything down to raw AT traffic into
    ``tmp_path/service.log``: when a test fails, every line each modem saw is there."""
    from appliance.service.unit import Service
    from tests.conftest import unit_config

    handler = logging.FileHandler(tmp_path / "service.log")
    handler.setFormatter(logging.Formatter("%(asctime)s %(threadName)s %(name)s "
                                           "%(levelname)s %(message)s"))
    logger = logging.getLogger("appliance")
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(TRACE)
    config = unit_config(tmp_path, sim, modem_overrides={"hourly_cap": 100_000,
                                                         "daily_cap": 1_000_000,
                                                         **(modem_overrides or {})},
                         **sections)
    svc = Service(config)
    try:
        svc.start()
        yield svc
    finally:
        svc.stop()
        logger.removeHandler(handler)
        logger.setLevel(level)
        handler.close()


def settle(crowd: Crowd, sim: Simulator, svc: Any, timeout: float) -> str:
    """Wait until every citizen has an answer and nothing waits in state.db; '' or why not."""
    def done() -> bool:
        if crowd.answered(sim) < len(crowd.numbers):
            return False
        s = read_state(svc.config.state_path)
        return s.pending_replies == 0 and s.unfinished_inbound == 0
    if wait_until(done, timeout, interval=0.2):
        return ""
    s = read_state(svc.config.state_path)
    return (f"after {timeout:.0f} s: {len(crowd.numbers) - crowd.answered(sim)} unanswered, "
            f"inbound {s.inbound}, outbound {s.outbound}, network holds "
            f"{[sim.network.pending(m) for m in sim.modems]}")


def check_no_loss(crowd: Crowd, sim: Simulator, svc: Any) -> None:
    """Every citizen answered once with the right text, and state.db agrees."""
    tally = crowd.tally(sim)
    state = read_state(svc.config.state_path)
    assert not tally.missing, f"{len(tally.missing)} citizens never answered"
    assert not tally.wrong, f"wrong reply text for {tally.wrong[:5]}"
    assert sum(state.inbound.values()) == len(crowd.numbers)
    assert state.unfinished_inbound == 0 and state.pending_replies == 0
    assert state.failed_replies == 0, state.outbound
    assert not tally.explain_duplicates(state.tries), "a duplicate no send attempt explains"


@pytest.mark.parametrize("fault", list(FAULTS))
def test_one_fault_at_a_time(fault: str, tmp_path: Path, sample_registry: Path,
                             request: pytest.FixtureRequest, record_property: Any) -> None:
    """60 citizens text 4 modems; the fault is on for two of them from the 10th SMS to the
    last, then cleared: every SMS answered after recovery, nothing left waiting."""
    crowd = Crowd.make(60, sample_registry, seed=11)
    with Simulator(tmp_path / "ports", 4, seed=11, time_scale=0.1) as sim, \
            running_service(tmp_path, sim) as svc:
        began = time.monotonic()
        feeder = Feeder(crowd, sim, rate=10.0, seed=11)
        feeder.start()
        try:
            assert wait_until(lambda: feeder.sent >= 10, 10)
            for i in (0, 1):
                switch(sim, i, fault, on=True)
            assert wait_until(lambda: feeder.sent == len(crowd.numbers), 30)
            for i in (0, 1):
                switch(sim, i, fault, on=False)
            cleared = time.monotonic()
            why = settle(crowd, sim, svc, 90)
        finally:
            feeder.halt.set()
        recovered = time.monotonic() - cleared
        tally, state = crowd.tally(sim), read_state(svc.config.state_path)
        show_figures(request, record_property, f"fault[{fault}]", {
            "sms": len(crowd.numbers), "answered": tally.answered,
            "lost": len(tally.missing), "duplicates": tally.duplicates,
            "orphan_parts": tally.orphan_parts, "attempts": state.attempts,
            "recovery_s": recovered, "wall_s": time.monotonic() - began})
        assert not why, why
        check_no_loss(crowd, sim, svc)


def test_all_faults_mixed_at_random(tmp_path: Path, sample_registry: Path,
                                    request: pytest.FixtureRequest, record_property: Any) -> None:
    """Every fault above, switched on and off at random over 8 modems while citizens text;
    then all cleared: every SMS answered, nothing left waiting."""
    rng = random.Random(23)
    crowd = Crowd.make(240, sample_registry, seed=23)
    switched = 0
    with Simulator(tmp_path / "ports", 8, seed=23, time_scale=0.1) as sim, \
            running_service(tmp_path, sim) as svc:
        began = time.monotonic()
        feeder = Feeder(crowd, sim, rate=12.0, seed=23)
        active: dict[tuple[int, str], float] = {}   # (modem, fault) -> when it clears
        feeder.start()
        try:
            while feeder.is_alive():
                now = time.monotonic()
                for key in [k for k, until in active.items() if until <= now]:
                    switch(sim, *key, on=False)
                    del active[key]
                key = (rng.randrange(len(sim.modems)), rng.choice(list(FAULTS)))
                if key not in active:
                    switch(sim, *key, on=True)
                    active[key] = now + rng.uniform(1.0, 4.0)
                    switched += 1
                feeder.join(rng.uniform(0.2, 0.8))
            for key in active:
                switch(sim, *key, on=False)
            cleared = time.monotonic()
            why = settle(crowd, sim, svc, 120)
        finally:
            feeder.halt.set()
        tally, state = crowd.tally(sim), read_state(svc.config.state_path)
        show_figures(request, record_property, "fault[mixed]", {
            "sms": len(crowd.numbers), "modems": len(sim.modems), "faults_switched": switched,
            "answered": tally.answered, "lost": len(tally.missing),
            "duplicates": tally.duplicates, "orphan_parts": tally.orphan_parts,
            "attempts": state.attempts, "recovery_s": time.monotonic() - cleared,
            "wall_s": time.monotonic() - began})
        assert not why, why
        check_no_loss(crowd, sim, svc)


# -- a burst of 5,000 ------------------------------------------------------------------------------

BURST = 5000
CMGS_S = 3.0          # simulated AT+CMGS (a real network: 3-15 s, docs/field-notes.md)
BURST_SCALE = 0.01    # … run at 1/100: 30 ms


def test_burst_of_5000_keeps_memory_flat_and_sends_at_radio_rate(
        tmp_path: Path, sample_registry: Path, request: pytest.FixtureRequest,
        record_property: Any) -> None:
    """5,000 citizens text at once across 8 modems with a 3 s AT+CMGS, run at 1/100 speed.

    Memory: the queue lives in state.db, so RSS once the whole burst is answered is about
    RSS at 10 % of it. Pace: the modems, not the unit, must set it. At 1/100 speed the
    radio's 30 ms per part is no longer large beside the unit's own work per part (reads,
    commits, delivery reports), which time_scale does not shrink; so the test measures that
    work, projects the rate at the real 3 s, and wants >= 80 % of the radio limit there —
    and every modem carrying at least half a fair share (a modem dropped from rotation
    shows here). Samples and rates are printed.
    """
    crowd = Crowd.make(BURST, sample_registry, seed=31, hit_share=0.0)  # one-part replies
    samples: list[tuple[float, int, int]] = []   # (seconds, handsets answered, RSS KiB)
    with Simulator(tmp_path / "ports", 8, seed=31, time_scale=BURST_SCALE) as sim:
        for m in sim.modems:
            m.faults.cmgs_latency = CMGS_S
        unit = Unit(tmp_path, sim)
        unit.start()
        try:
            assert wait_until(lambda: "service started" in unit.log_text(), 30), unit.log_tail()
            began = time.monotonic()
            for i in range(BURST):
                crowd.send(sim, i, i % len(sim.modems))

            def sample() -> bool:
                answered = len({s.recipient for s in sim.submitted})
                samples.append((time.monotonic() - began, answered, unit.rss_kib()))
                return answered >= BURST and read_state(unit.state_db).pending_replies == 0
            finished = wait_until(sample, 240, interval=0.5)
        finally:
            code = unit.stop()
        submitted = [s.time for s in sim.submitted]
        tally = crowd.tally(sim)
    state = read_state(unit.state_db)
    at10 = next((s for s in samples if s[1] >= BURST // 10), samples[0])
    latency = CMGS_S * BURST_SCALE
    rate = len(submitted) / (max(submitted) - min(submitted))
    radio = len(sim.modems) / latency
    # What each part costs the unit besides the radio's time (reads, commits, reports) does
    # not shrink with time_scale; at the real 3 s it is a small share of each send.
    overhead = max(0.0, len(sim.modems) / rate - latency)
    at_real_speed = CMGS_S / (CMGS_S + overhead)
    per_modem = Counter(s.modem for s in sim.submitted)
    share = min(per_modem[m.name] for m in sim.modems) * len(sim.modems) / len(submitted)
    show_figures(request, record_property, "burst_5000", {
        "sms": BURST, "modems": len(sim.modems), "answered": tally.answered,
        "lost": len(tally.missing), "duplicates": tally.duplicates,
        "failed_replies": state.failed_replies,
        "rss_10pct_kib": at10[2], "rss_100pct_kib": samples[-1][2],
        "rss_peak_kib": max(s[2] for s in samples),
        "parts_per_s": rate, "radio_limit_parts_per_s": radio, "ratio_at_scale": rate / radio,
        "overhead_ms_per_part": overhead * 1000, "ratio_at_3s_cmgs": at_real_speed,
        "smallest_modem_share": share,
        "first_1pct_replies_s": next((t for t, n, _ in samples if n >= BURST // 100), -1.0),
        "wall_s": samples[-1][0],
        "rss_samples": " ".join(f"{t:.0f}s:{n}:{kib // 1024}M" for t, n, kib in samples[::10])})
    assert finished, f"{len(tally.missing)} unanswered after 240 s\n" + unit.log_tail()
    assert code == 0, unit.log_tail()
    assert not tally.missing and not tally.wrong
    assert state.unfinished_inbound == 0 and state.pending_replies == 0
    assert state.failed_replies == 0, state.outbound
    assert samples[-1][2] - at10[2] < 15 * 1024, "RSS grew with the queue"
    assert share >= 0.5, f"a modem carried {share:.0%} of a fair share: {dict(per_modem)}"
    assert at_real_speed >= 0.8, f"{overhead * 1000:.0f} ms of unit time per part"
