"""The modem engine against simulated modems over real ptys (no patching of internals).

The handler here is the engine's real boundary: it implements both of its ports
(``appliance.modem.ports.InboxPort`` and ``OutboxPort``), records what the engine hands over and
lets a test hold or fail a persist.
"""

from __future__ import annotations

import threading
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest

from appliance.errors import ModemCommandError
from appliance.modem.engine import Modem, ModemSettings, ModemState, ModemStatus
from appliance.modem.pdu import Deliver
from appliance.modem.ports import Job, PlanPart, SubmittedPart
from tests.conftest import wait_until

CITIZEN = "+923001234567"


class Handler:
    def __init__(self) -> None:
        self.inbound: list[tuple[str, Any]] = []
        self.reports: list[Any] = []
        self.jobs: list[Job] = []
        self.parts: list[tuple[Job, SubmittedPart]] = []
        self.done: list[tuple[Job, BaseException | None, list[SubmittedPart]]] = []
        self.states: list[str] = []
        self.balances: list[tuple[float | None, str]] = []
        self.stored: list[tuple[Job, SubmittedPart]] = []
        self.plans: list[tuple[Job, list[PlanPart]]] = []
        self.hold = threading.Event()
        self.handed = threading.Event()
        self.hold.set()
        self.fail_persist = 0
        self.lock = threading.Lock()

    def on_inbound(self, modem: str, pdu_hex: str, decoded: Any) -> None:
        self.hold.wait(10)
        with self.lock:
            if self.fail_persist:
                self.fail_persist -= 1
                raise OSError("disk full (test)")
            self.inbound.append((modem, decoded))

    def on_status_report(self, modem: str, report: Any) -> None:
        self.reports.append(report)

    def next_job(self, modem: str) -> Job | None:
        with self.lock:
            if not self.jobs:
                return None
            self.handed.set()  # the engine starts AT+CMGS for it right now
            return self.jobs.pop(0)

    def plan_encoded(self, job: Job, parts: list[PlanPart]) -> Job:
        self.plans.append((job, parts))
        return replace(job, plan=len(self.plans), parts=tuple(parts))

    def part_sent(self, job: Job, part: SubmittedPart) -> None:
        self.parts.append((job, part))

    def job_done(self, job: Job, error: BaseException | None,
                 parts: list[SubmittedPart]) -> None:
        self.done.append((job, error, parts))

    def on_status(self, status: ModemStatus) -> None:
        self.states.append(status.state)

    def on_balance(self, modem: str, amount: float | None, text: str) -> None:
        self.balances.append((amount, text))

    def part_stored(self, job: Job, part: SubmittedPart) -> None:
        self.stored.append((job, part))

    def stored_parts(self, modem: str) -> list[Any]:
        return []

    def part_resolved(self, part: Any, *, sent: bool, mr: int | None) -> None:
        pass

    def recovery_done(self, modem: str) -> None:
        pass

    def texts(self) -> list[str]:
        return [d.text for _, d in self.inbound if isinstance(d, Deliver)]


def settings(sim_modem: Any, **kw: Any) -> ModemSettings:
    base: dict[str, Any] = dict(name=sim_modem.name, port=sim_modem.port, command_timeout_s=1.5,
                                send_timeout_s=5.0, sweep_interval_s=30.0,
                                health_interval_s=30.0)
    base.update(kw)
    return ModemSettings(**base)


@pytest.fixture
def modem(sim: Any) -> Any:
    handler = Handler()
    m = Modem(settings(sim.modems[0]), handler, handler)
    m.start()
    assert wait_until(lambda: m.status().state == ModemState.READY, 10), m.status()
    yield m, handler, sim.modems[0]
    m.stop()


def job(text: str, n: int = 1, to: str = CITIZEN) -> Job:
    return Job(outbound_id=n, recipient=to, text=text, attempt=1, modem="sim0")


def test_init_records_identity(modem: Any) -> None:
    m, _, _ = modem
    st = m.status()
    assert st.identity["imei"] and st.identity["manufacturer"]
    assert st.registered and st.bars > 0


def test_sim_delete_only_after_persist(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    handler.hold.clear()
    sim.citizen_send(CITIZEN, 0, "3520212345671")
    assert wait_until(lambda: len(sm.stored()) == 1, 5)
    time.sleep(0.3)  # give a wrong engine time to delete early; the assertion is the point
    assert len(sm.stored()) == 1, "deleted from the SIM before the handler returned"
    handler.hold.set()
    assert wait_until(lambda: not sm.stored(), 5)
    assert handler.texts() == ["3520212345671"]


def test_failed_persist_leaves_the_sms_on_the_sim_for_the_sweep(sim: Any) -> None:
    handler = Handler()
    handler.fail_persist = 1
    m = Modem(settings(sim.modems[0], sweep_interval_s=1.0), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        sim.citizen_send(CITIZEN, 0, "hello")
        assert wait_until(lambda: handler.texts() == ["hello"], 10)
        assert wait_until(lambda: not sim.modems[0].stored(), 5)
    finally:
        m.stop()


def test_send_single_and_multipart(modem: Any, sim: Any) -> None:
    m, handler, _ = modem
    long_urdu = "خبردار! " * 20
    handler.jobs += [job("hello citizen", 1), job(long_urdu, 2)]
    m.poke()
    assert wait_until(lambda: len(handler.done) == 2, 10)
    assert all(err is None for _, err, _ in handler.done)
    assert sim.inbox(CITIZEN) == ["hello citizen", long_urdu]
    refs = {p.concat_ref for j, p in handler.parts if j.outbound_id == 2}
    assert len(refs) == 1 and None not in refs
    assert all(p.mr is not None for _, p in handler.parts)


def test_cmti_during_cmgs_is_still_read(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    sm.faults.cmgs_latency = 1.0
    sm.faults.urc_in_response = True
    handler.jobs.append(job("reply"))
    m.poke()
    # The engine is in AT+CMGS; its +CMGS answer is a second away, and the simulator
    # holds the +CMTI until it can put it inside that response.
    assert handler.handed.wait(5)
    sim.citizen_send(CITIZEN, 0, "sent while the modem was sending")
    assert wait_until(lambda: handler.texts() == ["sent while the modem was sending"], 10)
    assert wait_until(lambda: len(handler.done) == 1, 10)
    assert handler.done[0][1] is None


def test_two_cmti_in_one_burst_are_both_read(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    text = "ا" * 150  # three UCS-2 parts → three +CMTI back to back
    sim.citizen_send(CITIZEN, 0, text)
    assert wait_until(lambda: len(handler.inbound) == 3, 10)
    assert "".join(sorted((d.concat.seq, d.text) for _, d in handler.inbound)[i][1]
                   for i in range(3)) == text


def test_non_utf8_byte_does_not_stop_the_modem(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    sm.faults.non_utf8 = True
    sm.faults.urc_in_response = True
    sim.citizen_send(CITIZEN, 0, "one")
    handler.jobs.append(job("two"))
    m.poke()
    assert wait_until(lambda: handler.texts() == ["one"] and len(handler.done) == 1, 10)
    assert handler.done[0][1] is None


def test_hang_then_recovery(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    sm.faults.hang = True
    handler.jobs.append(job("during hang"))
    m.poke()
    assert wait_until(lambda: m.status().state != ModemState.READY, 20)
    sm.faults.hang = False
    assert wait_until(lambda: m.status().state == ModemState.READY, 30)
    assert wait_until(lambda: CITIZEN in [r for r in [CITIZEN] if sim.inbox(r)] or
                      len(handler.done) >= 1, 10)
    # The job failed with a timeout (the reply is retried by the service) or went through
    # after recovery; either way the modem answers again:
    handler.jobs.append(job("after hang", 2))
    m.poke()
    assert wait_until(lambda: "after hang" in sim.inbox(CITIZEN), 10)


def test_unplug_and_replug_reopens(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    sm.unplug()
    assert wait_until(lambda: m.status().state == ModemState.GONE, 10)
    sm.replug()
    assert wait_until(lambda: m.status().state == ModemState.READY, 40)
    sim.citizen_send(CITIZEN, 0, "after replug")
    assert wait_until(lambda: handler.texts() == ["after replug"], 10)


def test_sim_full_is_drained(sim: Any) -> None:
    sm = sim.modems[0]
    sm.faults.sim_full = True
    for i in range(5):
        sim.citizen_send(CITIZEN, 0, f"waiting {i}")
    handler = Handler()
    m = Modem(settings(sm, sweep_interval_s=1.0), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: m.status().state == ModemState.READY, 10)
        sm.faults.sim_full = False
        assert wait_until(lambda: len(handler.texts()) == 5, 20), handler.texts()
        assert sorted(handler.texts()) == [f"waiting {i}" for i in range(5)]
    finally:
        m.stop()


def test_cms_error_is_reported_with_its_code(modem: Any, sim: Any) -> None:
    m, handler, sm = modem
    sm.faults.cms_error_rate = 1.0
    sm.faults.cms_error_code = 38
    handler.jobs.append(job("x"))
    m.poke()
    assert wait_until(lambda: len(handler.done) == 1, 10)
    err = handler.done[0][1]
    assert isinstance(err, ModemCommandError) and err.kind == "CMS" and err.code == 38
    assert m.status().state == ModemState.READY


def test_multipart_failing_on_part_two_resumes_with_the_same_reference(
        modem: Any, sim: Any) -> None:
    """Issue 13: a refused part 2 is sent again alone, the same PDU with the same
    reference, so the handset joins it to the part 1 it already holds; never re-encoded."""
    m, handler, sm = modem
    sm.faults.fail_submits = [2]  # the second submit from now fails
    text = "ب" * 100  # two UCS-2 parts
    handler.jobs.append(job(text, 7))
    m.poke()
    assert wait_until(lambda: len(handler.done) == 1, 10)
    first_err = handler.done[0][1]
    assert isinstance(first_err, ModemCommandError)
    (planned, plan), = handler.plans
    assert [p.seq for _, p in handler.parts] == [1]
    assert sim.inbox(CITIZEN) == []  # part 1 only: the phone waits for part 2
    # What the store would hand back: part 1 sent, part 2 still pending.
    resumed = replace(planned, attempt=2, plan=1, parts=(replace(plan[0], status="sent"),
                                                         plan[1]))
    handler.jobs.append(resumed)
    m.poke()
    assert wait_until(lambda: len(handler.done) == 2, 10)
    assert handler.done[1][1] is None
    assert len(handler.plans) == 1, "re-encoded"
    assert [p.seq for _, p in handler.parts] == [1, 2]
    refs = {p.concat_ref for _, p in handler.parts}
    assert refs == {plan[0].concat_ref}
    assert [s.pdu for s in sm.network.submitted[-1:]] == [plan[1].pdu]
    assert sim.inbox(CITIZEN) == [text]


def test_sixteen_modems_at_once_nothing_lost(tmp_path: Path) -> None:
    from appliance.simulator.bank import Simulator

    with Simulator(tmp_path / "ports16", 16, seed=3) as sim16:
        handlers = [Handler() for _ in range(16)]
        modems = [Modem(settings(sm), h, h) for sm, h in zip(sim16.modems, handlers)]
        for mm in modems:
            mm.start()
        try:
            assert wait_until(lambda: all(mm.status().state == ModemState.READY
                                          for mm in modems), 30)
            per = 10
            for i in range(16 * per):
                sim16.citizen_send(f"+9230010{i:05d}", i % 16, f"msg {i}")
            for k, h in enumerate(handlers):
                with h.lock:
                    h.jobs += [job(f"reply {k}-{j}", j, f"+9230020{k:02d}{j:03d}")
                               for j in range(per)]
            for mm in modems:
                mm.poke()
            assert wait_until(lambda: sum(len(h.inbound) for h in handlers) == 16 * per, 60)
            assert wait_until(lambda: sum(len(h.done) for h in handlers) == 16 * per, 60)
            got = sorted(t for h in handlers for t in h.texts())
            assert got == sorted(f"msg {i}" for i in range(16 * per))
            assert all(err is None for h in handlers for _, err, _ in h.done)
            assert all(not sm.stored() for sm in sim16.modems)
        finally:
            for mm in modems:
                mm.stop()


def test_balance_check_by_ussd(sim: Any) -> None:
    handler = Handler()
    m = Modem(settings(sim.modems[0], balance_ussd="*123#",
                       balance_pattern=r"Rs\.?\s*([0-9.,]+)"), handler, handler)
    m.start()
    try:
        assert wait_until(lambda: handler.balances, 20)
        amount, text = handler.balances[0]
        assert amount == pytest.approx(123.45) and "123.45" in text
        assert m.status().balance == pytest.approx(123.45)
    finally:
        m.stop()


def test_wrong_pin_is_sent_once_and_never_shown(tmp_path: Path) -> None:
    """Three wrong PINs lock a SIM (PUK): the reopen loop must not retry a refused PIN,
    and the PIN must not appear in errors (they reach logs and the status page)."""
    from appliance.simulator.bank import ModemSpec, Simulator

    with Simulator(tmp_path / "pin", [ModemSpec(pin="1234")], seed=5) as s:
        handler = Handler()
        m = Modem(settings(s.modems[0], pin="9876", command_timeout_s=1.0), handler, handler)
        m.start()
        try:
            assert wait_until(lambda: "refused the configured PIN" in m.status().last_error, 10)
            assert wait_until(lambda: m.status().reopens >= 3, 20)  # it kept trying to open
            tries = [c for c in s.modems[0].commands() if c.upper().startswith("+CPIN=")]
            assert len(tries) == 1
            assert "9876" not in m.status().last_error
        finally:
            m.stop()


def test_reply_goes_out_when_the_memory_is_full_of_inbound(tmp_path: Path) -> None:
    """AT+CMGW answers +CMS ERROR: 322 when unanswered SMS fill the SIM: the part is sent
    with AT+CMGS instead of failing the reply."""
    from appliance.simulator.bank import ModemSpec, Simulator

    with Simulator(tmp_path / "full", [ModemSpec(sim_capacity=2)], seed=6) as s:
        handler = Handler()
        handler.fail_persist = 10**6  # nothing can be stored: the SIM stays full
        m = Modem(settings(s.modems[0]), handler, handler)
        m.start()
        try:
            assert wait_until(lambda: m.status().state == ModemState.READY, 10)
            s.citizen_send(CITIZEN, 0, "one")
            s.citizen_send(CITIZEN, 0, "two")
            assert wait_until(lambda: len(s.modems[0].stored()) == 2, 5)
            handler.jobs.append(job("reply while full"))
            m.poke()
            assert wait_until(lambda: len(handler.done) == 1, 10)
            assert handler.done[0][1] is None
            assert s.inbox(CITIZEN) == ["reply while full"]
        finally:
            m.stop()


def test_blank_sms_centre_on_the_sim_is_reported(tmp_path: Path) -> None:
    """``+CSCA: "",129`` is a SIM with no SMS centre (the 129 is its type, not a number):
    every send would fail, so start-up says so and names the fix."""
    from appliance.simulator.bank import ModemSpec, Simulator

    with Simulator(tmp_path / "csca", [ModemSpec()], seed=6) as s:
        s.modems[0].smsc = ""   # the SIM's stored centre, as a blank SIM holds it
        handler = Handler()
        m = Modem(settings(s.modems[0]), handler, handler)
        m.start()
        try:
            assert wait_until(lambda: "no SMS centre number" in m.status().last_error, 10)
        finally:
            m.stop()


def test_a_message_routed_straight_to_the_unit_is_held_until_it_is_stored(
        tmp_path: Path) -> None:
    """+CMT (a modem that offers only <mt> 2): the SMS is on no SIM, so a failed store must
    not lose it. The owner holds it and offers it again until the inbox takes it."""
    from appliance.simulator.bank import ModemSpec, Simulator

    with Simulator(tmp_path / "cmt", [ModemSpec(profile="sim800_cmt")], seed=8) as s:
        handler = Handler()
        handler.fail_persist = 10**6  # the store fails until the test lets it work
        m = Modem(settings(s.modems[0]), handler, handler)
        m.start()
        try:
            assert wait_until(lambda: m.status().state == ModemState.READY, 10)
            s.citizen_send(CITIZEN, 0, "35202-1234567-1")
            assert wait_until(lambda: m.status().held == 1, 10), "held, and it says so"
            with handler.lock:
                handler.fail_persist = 1
            assert wait_until(lambda: handler.texts() == ["35202-1234567-1"], 30)
            assert handler.fail_persist == 0, "stored only after another failed attempt"
            assert wait_until(lambda: m.status().held == 0, 5)
            assert not s.modems[0].stored(), "+CMT: nothing was ever on the SIM"
        finally:
            m.stop()
