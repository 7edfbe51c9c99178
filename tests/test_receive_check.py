"""The receive path's cheap check and burst read (issue 13, points 3 and 5), on the real
engine over a simulated modem's pty.

* A message whose ``+CMTI`` was lost is found by the ``AT+CPMS?`` used-count check within
  seconds, with no periodic sweep to wait for.
* Several notices at once are read with one ``AT+CMGL``, not one ``AT+CMGR`` each, and each
  message is still stored before it is deleted.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from appliance.modem.engine import Modem, ModemState
from appliance.modem.session import ATSession
from tests.conftest import wait_until
from tests.test_engine import CITIZEN, Handler, settings


def commands_since(sm: Any, start: int) -> list[str]:
    return [c.upper() for c in sm.commands()[start:]]


def burst(m: Modem, sim: Any, texts: list[str], sender: str) -> Callable[[], None]:
    """Hold the owner in a call while ``texts`` arrive from ``sender`` + index, and until
    their notices are all in (as a burst arrives: back to back), so that they wait
    together. Returns what lets the owner go; the SMS are on the SIM meanwhile."""
    release = threading.Event()
    holding = threading.Event()

    def hold(sess: ATSession) -> None:
        holding.set()
        release.wait(10)
        assert wait_until(lambda: sess.take_arrived() or len(sess.urcs) >= len(texts), 5)
    done = m.call(hold)
    assert holding.wait(5)
    for i, text in enumerate(texts):
        sim.citizen_send(f"{sender}{i}", 0, text)
    assert wait_until(lambda: len(sim.modems[0].stored()) == len(texts), 5)

    def let_go() -> None:
        release.set()
        done.result(5)  # its notices all arrived while it held the owner
    return let_go


def test_a_lost_notice_is_found_by_the_used_count_check(sim: Any) -> None:
    sm = sim.modems[0]
    handler = Handler()
    # No periodic storage read for an hour: only the cheap check can find the message.
    m = Modem(settings(sm, sweep_interval_s=3600.0, idle_check_s=0.5), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        sm.faults.drop_cmti_rate = 1.0
        start = len(sm.commands())
        sim.citizen_send(CITIZEN, 0, "35202-1234567-1")
        assert wait_until(lambda: handler.texts() == ["35202-1234567-1"], 10)
        assert wait_until(lambda: not sm.stored(), 5)
        seen = commands_since(sm, start)
        assert any("CPMS?" in c for c in seen)
        assert any("CMGL" in c for c in seen)
        assert not any("CMGR" in c for c in seen), "nothing announced it: no AT+CMGR"
    finally:
        m.stop()


def test_an_idle_sim_is_not_read_only_checked(sim: Any) -> None:
    """The check costs one AT+CPMS? while the SIM holds nothing: no AT+CMGL."""
    sm = sim.modems[0]
    handler = Handler()
    m = Modem(settings(sm, sweep_interval_s=3600.0, idle_check_s=0.2), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        start = len(sm.commands())
        assert wait_until(lambda: sum("CPMS?" in c for c in commands_since(sm, start)) >= 5, 10)
        assert not any("CMGL" in c for c in commands_since(sm, start))
    finally:
        m.stop()


def test_a_burst_of_notices_is_read_with_one_cmgl(sim: Any) -> None:
    sm = sim.modems[0]
    handler = Handler()
    m = Modem(settings(sm, sweep_interval_s=3600.0, idle_check_s=0.0), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        let_go = burst(m, sim, [f"query {i}" for i in range(3)], "+92300765432")
        start = len(sm.commands())
        let_go()
        assert wait_until(lambda: sorted(handler.texts()) == [f"query {i}" for i in range(3)],
                          10)
        assert wait_until(lambda: not sm.stored(), 5)
        seen = commands_since(sm, start)
        assert sum("CMGL" in c for c in seen) == 1, seen
        assert not any("CMGR" in c for c in seen), seen
        assert sum("CMGD" in c for c in seen) == 3
    finally:
        m.stop()


def test_a_burst_waits_for_its_commit_before_any_delete(sim: Any) -> None:
    """Store before delete holds on the burst path: a handler that has not returned keeps
    every message of the burst on the SIM."""
    sm = sim.modems[0]
    handler = Handler()
    m = Modem(settings(sm, sweep_interval_s=3600.0, idle_check_s=0.0), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        let_go = burst(m, sim, [f"burst {i}" for i in range(2)], "+92300765433")
        handler.hold.clear()          # the commit of the first message does not return
        let_go()
        assert wait_until(lambda: any("CMGL" in c for c in sm.commands()[-5:]), 5)
        assert len(sm.stored()) == 2, "deleted before the handler returned"
        handler.hold.set()
        assert wait_until(lambda: not sm.stored(), 10)
        assert sorted(handler.texts()) == ["burst 0", "burst 1"]
    finally:
        handler.hold.set()
        m.stop()


def test_a_long_burst_lets_replies_out_between_reads(sim: Any) -> None:
    """Six notices at once: one AT+CMGL lists them, four are stored and deleted, then the
    waiting reply goes out, then the other two (still on the SIM meanwhile)."""
    from tests.test_engine import job

    sm = sim.modems[0]
    handler = Handler()
    m = Modem(settings(sm, sweep_interval_s=3600.0, idle_check_s=0.0), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        let_go = burst(m, sim, [f"long burst {i}" for i in range(6)], "+92300765434")
        handler.jobs.append(job("a reply"))
        start = len(sm.commands())
        let_go()
        assert wait_until(lambda: len(handler.texts()) == 6 and len(handler.done) == 1, 10)
        assert wait_until(lambda: not sm.stored(), 5)
        seen = commands_since(sm, start)
        assert sum("CMGL" in c for c in seen) == 1, seen
        first_send = next(i for i, c in enumerate(seen) if "CMSS" in c)
        assert sum("CMGD" in c for c in seen[:first_send]) == 4, seen
    finally:
        m.stop()
