"""A reply is encoded once and resumed on its SIM (issue 13), against a real state.db:
the store's plan rows, the bank's claim rules for them, and the modem's error streak."""

from __future__ import annotations

import sqlite3
import time
from pathlib import Path

from appliance.modem.engine import ModemState, ModemStatus
from appliance.modem.ports import Job, PlanPart, SubmittedPart
from appliance.outbox.bank import Bank, SlotSettings
from appliance.outbox.states import State
from appliance.outbox.table import ReplyTable
from appliance.state.store import Store
from tests.conftest import wait_until

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened

PDUS = ("0051000B910300000000F00008FF0A0500030702010041",
        "0051000B910300000000F00008FF0A0500030702020042")


def ready(name: str) -> ModemStatus:
    return ModemStatus(name, f"/dev/{name}", state=ModemState.READY, registered=True)


def bank_of(store: Store, move_after_s: float = 120.0) -> Bank:
    slots = [(n, SlotSettings(0.0, 100, 1000)) for n in ("a", "b")]
    bank = Bank(replies, slots, block_after_failures=3, block_cooldown_s=600.0,
                move_after_s=move_after_s)
    bank.on_status(ready("a"))
    bank.on_status(ready("b"))
    return bank


def plan(ref: int = 7) -> list[PlanPart]:
    return [PlanPart(i + 1, 2, ref, pdu) for i, pdu in enumerate(PDUS)]


def planned_on_a(bank: Bank) -> Job:
    """A two-part reply queued for "a", claimed by it and encoded there."""
    replies.queue_reply(recipient="+923001234567", text="x" * 200, parts=2, preferred_modem="a")
    job = bank.next_job("a")
    assert job is not None and job.parts == ()
    return replies.record_plan(job, plan())


def first_part_left(store: Store, bank: Bank) -> Job:
    """Reply queued for "a", encoded there, part 1 sent, part 2 refused."""
    job = planned_on_a(bank)
    replies.record_parts(job, [SubmittedPart(1, 2, 7, 11, time.time())])
    replies.move(job.outbound_id, State.RETRY, next_attempt_at=0.0)
    return job


def test_plan_has_a_fixed_tpdu_length() -> None:
    part = PlanPart(1, 1, None, "07911326040000F0" + "0001000B91")
    assert part.tpdu_length == 5
    assert PlanPart(1, 1, None, "00" + "AB" * 20).tpdu_length == 20


def test_a_retry_resumes_the_same_encoding_on_the_same_sim(store: Store) -> None:
    bank = bank_of(store)
    job = first_part_left(store, bank)
    assert bank.next_job("b") is None, "another SIM took a reply that is under way"
    again = bank.next_job("a")
    assert again is not None and again.plan == job.plan
    assert [(p.seq, p.concat_ref, p.pdu, p.status) for p in again.parts] == [
        (1, 7, PDUS[0], "sent"), (2, 7, PDUS[1], "pending")]


def test_a_reply_with_nothing_sent_moves_at_once_and_is_not_a_split(store: Store) -> None:
    bank = bank_of(store)
    job = planned_on_a(bank)
    replies.move(job.outbound_id, State.RETRY, next_attempt_at=0.0)
    bank.on_status(ModemStatus("a", "/dev/a", state=ModemState.GONE))
    moved = bank.next_job("b")
    assert moved is not None and moved.parts == ()          # encoded afresh for b
    assert replies.split_count() == 0


def test_a_reply_under_way_waits_for_its_sim_then_moves_as_a_counted_split(
        store: Store) -> None:
    bank = bank_of(store, move_after_s=0.3)
    job = first_part_left(store, bank)
    bank.on_status(ModemStatus("a", "/dev/a", state=ModemState.GONE))
    assert bank.next_job("b") is None, "moved before its SIM was down for move_after_s"
    claimed: list[Job] = []

    def b_claims() -> bool:
        job = bank.next_job("b")
        if job is not None:
            claimed.append(job)
        return bool(claimed)
    assert wait_until(b_claims, 5), "never moved after move_after_s"
    (moved,) = claimed
    assert moved.parts == ()
    assert replies.split_count() == 1
    con = sqlite3.connect(store.path)
    statuses = dict(con.execute("SELECT seq, status FROM part WHERE outbound_id = ? AND "
                                "attempt = ?", (job.outbound_id, job.plan)).fetchall())
    assert statuses == {1: "sent", 2: "abandoned"}
    moved = replies.record_plan(moved, plan(ref=9))
    assert moved.plan == job.plan + 1


def test_a_released_reply_goes_to_another_sim(store: Store) -> None:
    bank = bank_of(store)
    job = first_part_left(store, bank)
    replies.release_plan(job.outbound_id, "8 failed tries")
    assert replies.split_count() == 1
    assert bank.next_job("a") is None, "the SIM that gave up took it back"
    assert bank.next_job("b") is not None


def test_a_crash_mid_reply_resumes_it(store: Store) -> None:
    bank = bank_of(store)
    job = planned_on_a(bank)
    replies.record_parts(job, [SubmittedPart(1, 2, 7, 11, time.time())])
    assert replies.recover_after_crash() == (0, 1)           # back to queued, not resent whole
    again = bank.next_job("a")
    assert again is not None and [p.status for p in again.parts] == ["sent", "pending"]


def test_a_stored_part_refused_waits_as_unsent(store: Store) -> None:
    bank = bank_of(store)
    job = planned_on_a(bank)
    replies.record_stored(job, SubmittedPart(1, 2, 7, None, time.time(), storage_index=3,
                                           pdu=PDUS[0]))
    assert [p.part_id for p in replies.stored_parts("a")]
    replies.unstore_refused(job)
    assert replies.stored_parts("a") == []
    assert replies.part_times("a", 0) == [], "a part that never left counts against no cap"


def test_the_modem_streak_counts_a_reply_once_and_ends_when_a_part_leaves(
        store: Store) -> None:
    bank = bank_of(store)
    for _ in range(5):   # one reply refused five times: its own business
        bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500", reply=1)
    assert bank.available("a")
    bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500", reply=2)
    bank.part_sent("a", time.time())                       # the modem works
    bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500", reply=3)
    bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500", reply=4)
    assert bank.available("a")
    bank.send_failed("a", modem_fault=False, reason="+CMS ERROR: 500", reply=5)
    assert not bank.available("a"), "three replies in a row failed: rest the modem"


def test_an_older_state_db_gets_the_new_columns(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    Store(path).close()
    con = sqlite3.connect(path)
    for column in ("plan", "plan_modem", "sim_attempts", "splits"):
        con.execute(f"ALTER TABLE outbound DROP COLUMN {column}")
    con.execute("DELETE FROM schema_migration WHERE version > 1")  # as schema 1 left it
    con.execute("PRAGMA user_version = 1")
    con.execute("INSERT INTO outbound (recipient, text, kind, status, attempts, resends, "
                "link_failures, parts, next_attempt_at, created_at, updated_at) VALUES "
                "('+923001234567', 'x', 'reply', 'queued', 0, 0, 0, 1, 0, 0, 0)")
    con.commit()
    con.close()
    store = Store(path)
    try:
        job = replies.claim_next("a")
        assert job is not None and job.plan == 0 and job.parts == ()
    finally:
        store.close()
