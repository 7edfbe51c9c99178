"""Issue 13: faults cost a citizen seconds, never a broken message.

Each scenario runs the real service on simulated modems (real ptys) and counts from what
the simulated network delivered to handsets: an orphan part is a part in a (sender,
reference) group that never completed (``fault_support.orphan_parts``), however sure the
unit is that it finished. Latency is from the citizen's send to the moment the last part
of the answer reached the handset. Marked ``fault``; the figures are printed as FIGURES
lines (tests/fault_support.py).

Runtime (2 cores, shared): about 3 minutes for the file.
"""

from __future__ import annotations

import math
import shutil
import sqlite3
import threading
import time
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from appliance.rules.inbound_age import AgeRules, judge_age
from appliance.simulator.pdu import PAKISTAN
from appliance.simulator.bank import Simulator
from tests.conftest import wait_until
from tests.fault_support import Crowd, StateFigures, Tally, read_state, show_figures
from tests.test_faults import running_service, settle

pytestmark = pytest.mark.fault

CITIZENS = 35
SEND_S = 0.3          # simulated AT+CMGS / AT+CMSS time (the measurement)
RATE = 5.0            # citizens texting per second, spread over the modems
#: The shipped [reliability] defaults (conftest's unit_config shortens them for other tests).
SHIPPED_RELIABILITY = {"retry_base_s": 1.0, "retry_max_s": 60.0}


@dataclass
class Run:
    latencies: list[float]
    tally: Tally
    state: StateFigures
    wall_s: float

    @property
    def p99(self) -> float:
        ordered = sorted(self.latencies)
        return ordered[max(0, math.ceil(0.99 * len(ordered)) - 1)]


def p50(values: list[float]) -> float:
    ordered = sorted(values)
    return ordered[len(ordered) // 2]


def scenario(base: Path, registry: Path, name: str, *, faults: dict[str, Any],
             seed: int = 13, modems: int = 2) -> Run:
    """35 citizens text 2 modems (30 % ask about two convicts: four-part replies); the
    ``faults`` are on from the start to the end."""
    where = base / name
    (where / "data").mkdir(parents=True)
    shutil.copy(registry, where / "data" / "registry.db")
    crowd = Crowd.make(CITIZENS, registry, seed=seed, hit_share=0.6, two_hits_share=0.3)
    sent_at: dict[str, float] = {}
    with Simulator(where / "ports", modems, seed=seed) as sim:
        for m in sim.modems:
            m.faults.cmgs_latency = SEND_S
            for key, value in faults.items():
                setattr(m.faults, key, value)
        with running_service(where, sim, reliability=SHIPPED_RELIABILITY) as svc:
            began = time.monotonic()
            pace = threading.Event()
            for i, number in enumerate(crowd.numbers):
                pace.wait(max(0.0, began + i / RATE - time.monotonic()))
                sent_at[number] = time.time()
                crowd.send(sim, i, i % modems)
            why = settle(crowd, sim, svc, 150)
            wall = time.monotonic() - began
            tally = crowd.tally(sim)
            state = read_state(svc.config.state_path)
            latencies = [sim.inbox_messages(n)[0].time - sent_at[n]
                         for n in crowd.numbers if sim.inbox_messages(n)]
    assert not why, f"{name}: {why}"
    return Run(latencies, tally, state, wall)


def figures(run: Run, **extra: Any) -> dict[str, Any]:
    return {"citizens": CITIZENS, "answered": run.tally.answered,
            "lost": len(run.tally.missing), "wrong": len(run.tally.wrong),
            "duplicates": run.tally.duplicates, "parts": run.tally.parts,
            "orphan_parts": run.tally.orphan_parts,
            "duplicate_parts": run.tally.duplicate_parts, "split_replies": run.state.splits,
            "attempts": run.state.attempts, "p50_s": p50(run.latencies), "p99_s": run.p99,
            "max_s": max(run.latencies), "wall_s": run.wall_s, **extra}


def test_refused_submissions_and_lost_notices_cost_seconds(
        tmp_path: Path, sample_registry: Path, request: pytest.FixtureRequest,
        record_property: Any) -> None:
    """The same 35 citizens three times: no fault; 30 % of submissions refused with
    +CMS ERROR 500; half of the +CMTI notices lost. Refusals: no orphan part, every reply
    complete within 60 s, p99 below the no-fault p99 + 30 s. Lost notices: p99 at most
    twice the no-fault p99 (the AT+CPMS? check finds them in seconds)."""
    clean = scenario(tmp_path, sample_registry, "clean", faults={})
    show_figures(request, record_property, "resume[no_fault]", figures(clean))
    refused = scenario(tmp_path, sample_registry, "refused",
                       faults={"cms_error_rate": 0.3, "cms_error_code": 500})
    show_figures(request, record_property, "resume[cms500_30pct]",
                 figures(refused, target_p99_s=clean.p99 + 30))
    lost = scenario(tmp_path, sample_registry, "lost_cmti", faults={"drop_cmti_rate": 0.5})
    show_figures(request, record_property, "resume[half_cmti_lost]",
                 figures(lost, target_p99_s=2 * clean.p99))
    for run in (clean, refused, lost):
        assert not run.tally.missing and not run.tally.wrong
        assert run.tally.orphan_parts == 0, run.tally
        assert run.state.failed_replies == 0
    assert refused.state.attempts > CITIZENS, "the fault did not bite"
    assert max(refused.latencies) <= 60.0, sorted(refused.latencies)[-5:]
    assert refused.p99 < clean.p99 + 30
    assert lost.p99 <= 2 * clean.p99, (lost.p99, clean.p99)


def test_unplug_and_replug_mid_reply_leaves_no_orphan(
        tmp_path: Path, sample_registry: Path, request: pytest.FixtureRequest,
        record_property: Any) -> None:
    """A modem unplugged for 3 s right after part 1 of a long reply left: the reply waits
    for its SIM and resumes there with part 2 (same reference), no orphan, no split."""
    crowd = Crowd.make(12, sample_registry, seed=7, hit_share=1.0, two_hits_share=0.5)
    with Simulator(tmp_path / "ports", 2, seed=7) as sim:
        for m in sim.modems:
            m.faults.cmgs_latency = 1.0   # a window between two parts
        with running_service(tmp_path, sim, reliability=SHIPPED_RELIABILITY) as svc:
            target = sim.modems[0]

            def mid_reply() -> bool:
                parts = [p for p in sim.submitted if p.modem == target.name and p.concat]
                if not parts:
                    return False
                last = parts[-1]
                assert last.concat is not None
                return last.concat.seq < last.concat.total
            for i in range(len(crowd.numbers)):
                crowd.send(sim, i, 0)
            assert wait_until(mid_reply, 30, interval=0.005), "no long reply under way"
            target.unplug()
            cut = time.monotonic()
            gone = threading.Event()
            gone.wait(3.0)  # the technician's 3 s with the cable out
            target.replug()
            why = settle(crowd, sim, svc, 120)
            recovered = time.monotonic() - cut
            tally, state = crowd.tally(sim), read_state(svc.config.state_path)
    show_figures(request, record_property, "resume[unplug_mid_reply]", {
        "citizens": len(crowd.numbers), "answered": tally.answered,
        "lost": len(tally.missing), "orphan_parts": tally.orphan_parts,
        "duplicate_parts": tally.duplicate_parts, "split_replies": state.splits,
        "recovery_s": recovered})
    assert not why, why
    assert not tally.missing and not tally.wrong
    assert tally.orphan_parts == 0, tally
    assert state.splits == 0


IDLE_WINDOW_S = 61.0   # one storage check, two health checks, twelve used-count checks


def test_idle_at_traffic_of_the_used_count_check(
        sim: Any, request: pytest.FixtureRequest, record_property: Any) -> None:
    """What the cheap check costs: the AT traffic of one idle modem with the shipped
    intervals (check 5 s, storage check 60 s, health 30 s), counted by the simulated modem
    over a window and scaled to an hour; bytes both ways, answer sizes as this modem gives
    them."""
    from appliance.modem.engine import Modem, ModemSettings, ModemState
    from tests.test_engine import Handler

    sm = sim.modems[0]
    handler = Handler()
    m = Modem(ModemSettings(name=sm.name, port=sm.port), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        answer = m.call(lambda sess: sess.run("AT+CPMS?", 5.0)).result(10)
        start = len(sm.commands())
        began = time.monotonic()
        pause = threading.Event()
        pause.wait(IDLE_WINDOW_S)
        window = time.monotonic() - began
        seen = [c.upper() for c in sm.commands()[start:]]
    finally:
        m.stop()
    per_hour = 3600.0 / window
    checks = sum(c.endswith("+CPMS?") for c in seen)
    reads = sum("CMGL" in c for c in seen)
    check_bytes = len("AT+CPMS?\r") + sum(len(line) + 4 for line in answer) + len("\r\nOK\r\n")
    show_figures(request, record_property, "idle_at_traffic", {
        "window_s": window, "cpms_commands_per_h": round(checks * per_hour),
        "cpms_bytes_per_h": round(checks * per_hour * check_bytes),
        "bytes_per_cpms": check_bytes,
        "all_commands_per_h": round(len(seen) * per_hour), "reads_in_window": reads})
    assert checks >= int(window / 5.0) - 1, seen   # the check runs on an idle modem
    assert reads == 0, "an empty SIM must not be read"


#: What a second-hand SIM holds before the unit ever starts on it.
OLD_SENDERS = [("Jazz", "Aap ka bundle khatam ho gaya. Dial *117# for offers"),
               ("Telenor", "Get 5GB for Rs. 99 only! Reply YES"),
               ("ZONG", "Mubarak! Aap ne 100 free minutes jeetay"),
               ("8558", "Your code is 4411"),
               ("+923001112223", "Bhai kal milte hain"),
               ("+923214445556", "35202-1234567-1 yeh mera CNIC hai, form bhar do"),
               ("+923335556667", "Salam, kahan ho?")]


def test_a_sim_full_of_old_messages_is_not_a_queue_of_citizens(
        tmp_path: Path, sample_registry: Path, request: pytest.FixtureRequest,
        record_property: Any) -> None:
    """30 old messages (promotions, a short code, personal numbers, one with a CNIC in it;
    1-30 days old) are on the SIM before the unit first starts: none is answered, each is
    recorded with a reason; every citizen who texts afterwards is answered."""
    crowd = Crowd.make(10, sample_registry, seed=3)
    now = datetime.now(PAKISTAN)
    with Simulator(tmp_path / "ports", 2, seed=3) as sim:
        sim.modems[0].sim_capacity = 50
        for i in range(30):
            sender, text = OLD_SENDERS[i % len(OLD_SENDERS)]
            sim.citizen_send(sender, 0, text, store_only=True,
                             sent_at=now - timedelta(days=1 + i % 30, hours=i % 7))
        assert wait_until(lambda: len(sim.modems[0].stored()) == 30, 5)
        with running_service(tmp_path, sim) as svc:
            assert wait_until(lambda: not sim.modems[0].stored(), 30), "old messages kept"
            for i in range(len(crowd.numbers)):
                crowd.send(sim, i, i % 2)
            why = settle(crowd, sim, svc, 60)
            tally = crowd.tally(sim)
            old_numbers = {s for s, _ in OLD_SENDERS}
            replies_to_old = [p for p in sim.submitted
                              if any(p.recipient.endswith(n[-9:]) for n in old_numbers)]
            con = sqlite3.connect(f"file:{svc.config.state_path}?mode=ro", uri=True)
            try:
                old_rows = con.execute("SELECT status, reason FROM inbound WHERE sent_at < ?",
                                       (time.time() - 86400 + 60,)).fetchall()
            finally:
                con.close()
    show_figures(request, record_property, "old_sim_messages", {
        "old_messages": 30, "old_recorded": len(old_rows),
        "old_answered": len(replies_to_old), "citizens": len(crowd.numbers),
        "citizens_answered": tally.answered})
    assert not why, why
    assert replies_to_old == []
    assert len(old_rows) == 30
    assert all(status == "ignored" and reason and "history" in reason
               for status, reason in old_rows), old_rows
    assert not tally.missing and not tally.wrong


# -- the age rules, as values ---------------------------------------------------------------------

RULES = AgeRules(history_margin_s=600, late_after_s=3600)
T0 = 1_800_000_000.0   # the unit's first start on the SIM


@pytest.mark.parametrize(("sent", "received", "cnic", "code"), [
    (T0 - 3 * 86400, T0 + 5, True, "history"),       # the previous owner's, even with a CNIC
    (T0 - 3 * 86400, T0 + 5, False, "history"),
    (T0 - 300, T0 + 5, True, None),                  # within the margin: a citizen, answered
    (T0 + 86400, T0 + 3 * 86400, True, None),        # unit off over a weekend: answered
    (T0 + 86400, T0 + 3 * 86400, False, "late"),     # … but a late "hello?" is not
    (T0 + 86400, T0 + 86400 + 60, False, None),      # on time, no CNIC: the help reply
    (T0 + 9 * 86400, T0 + 86400, False, None),       # stamp from the future: no judgement
    (None, T0 + 86400, False, None),                 # no stamp
])
def test_age_rules(sent: float | None, received: float, cnic: bool, code: str | None) -> None:
    verdict = judge_age(sent_at=sent, received_at=received, first_start=T0, has_cnic=cnic,
                        rules=RULES)
    assert (verdict.code if verdict else None) == code
    assert verdict is None or verdict.reason


def test_no_first_start_known_means_no_history_rule() -> None:
    assert judge_age(sent_at=T0 - 86400 * 30, received_at=T0 - 86400 * 30 + 5,
                     first_start=None, has_cnic=False, rules=RULES) is None
