"""The bank's rules against a real state.db: which modem takes which reply, pacing, caps,
blocking after failures and re-admission."""

from __future__ import annotations

import time
from pathlib import Path

from appliance.modem.engine import ModemState, ModemStatus
from appliance.outbox.bank import Bank, SlotSettings
from appliance.outbox.table import ReplyTable
from appliance.state.store import Store
from tests.conftest import wait_until

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened


def ready(name: str) -> ModemStatus:
    return ModemStatus(name, f"/dev/{name}", state=ModemState.READY, registered=True)


def make_bank(store: Store, **slot: float) -> Bank:
    settings = SlotSettings(min_interval_s=slot.get("min_interval_s", 0.0),
                            hourly_cap=int(slot.get("hourly_cap", 100)),
                            daily_cap=int(slot.get("daily_cap", 1000)))
    bank = Bank(replies, [("a", settings), ("b", settings)], block_after_failures=2,
                block_cooldown_s=0.2)
    bank.on_status(ready("a"))
    bank.on_status(ready("b"))
    return bank


def queue(store: Store, preferred: str | None) -> int:
    return replies.queue_reply(recipient="+923001234567", text="x", parts=1,
                             preferred_modem=preferred)


def test_the_receiving_modem_takes_its_reply_others_do_not(store: Store) -> None:
    bank = make_bank(store)
    oid = queue(store, "a")
    assert bank.next_job("b") is None
    job = bank.next_job("a")
    assert job is not None and job.outbound_id == oid and job.modem == "a"


def test_a_reply_moves_when_its_modem_is_down(store: Store) -> None:
    bank = make_bank(store)
    oid = queue(store, "a")
    bank.on_status(ModemStatus("a", "/dev/a", state=ModemState.GONE))
    job = bank.next_job("b")
    assert job is not None and job.outbound_id == oid


def test_pacing_keeps_a_minimum_interval(store: Store) -> None:
    bank = make_bank(store, min_interval_s=0.3)
    queue(store, "a")
    queue(store, "a")
    assert bank.next_job("a") is not None
    assert bank.next_job("a") is None          # too soon after the last one
    assert wait_until(lambda: bank.next_job("a") is not None, 2), "pacing never let it go"


def test_hourly_cap_moves_replies_to_another_modem(store: Store) -> None:
    bank = make_bank(store, hourly_cap=2)
    now = time.time()
    bank.part_sent("a", now)
    bank.part_sent("a", now)
    assert "hourly cap" in bank.snapshot()["a"]["unavailable"]
    oid = queue(store, "a")
    assert bank.next_job("a") is None
    job = bank.next_job("b")
    assert job is not None and job.outbound_id == oid


def test_block_after_failures_then_readmitted_by_a_health_report(store: Store) -> None:
    bank = make_bank(store)
    bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500")
    assert bank.available("a")
    bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500")
    assert not bank.available("a") and "blocked" in bank.snapshot()["a"]["unavailable"]
    time.sleep(0.25)  # the cooldown (0.2 s) itself is what is under test
    bank.on_status(ready("a"))  # the next health check after the cooldown re-admits
    assert bank.available("a")


def test_credit_block_waits_for_a_readmission(store: Store) -> None:
    bank = make_bank(store)
    bank.send_failed("a", modem_fault=True, reason="+CMS ERROR: 21")
    time.sleep(0.25)
    bank.on_status(ready("a"))
    assert not bank.available("a")             # a cooldown does not recharge a SIM
    assert bank.snapshot()["a"]["credit_blocked"]
    bank.readmit("a")                          # a passing balance check does
    assert bank.available("a")


def test_caps_survive_a_restart(store: Store, tmp_path: Path) -> None:
    from appliance.modem.ports import Job, SubmittedPart

    bank = make_bank(store, hourly_cap=1)
    oid = queue(store, "a")
    job = bank.next_job("a")
    assert job is not None and job.outbound_id == oid
    replies.record_parts(job, [SubmittedPart(1, 1, None, 7, time.time())])
    again = Bank(replies, [("a", SlotSettings(0.0, 1, 10))])
    again.on_status(ready("a"))
    assert not again.available("a")           # counted from state.db, not from memory
    assert isinstance(job, Job)
