"""The outbox's policy for a reply's fate, error class by error class, on a real state.db.

What the engine reports (``Outbox.job_done``) decides where the reply goes next, whether
the attempt counts, what the modem's error streak becomes, and whether a technician is
told. End-to-end tests see the sum of it over ptys (tests/test_faults*.py); here each rule
is pinned down on its own.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.config import ReliabilityConfig
from appliance.errors import ModemCommandError, ModemGone, ModemTimeout
from appliance.modem.contract import ModemState, ModemStatus
from appliance.modem.ports import Job, PlanPart, SubmittedPart
from appliance.outbox import Outbox
from appliance.outbox.bank import SlotSettings
from appliance.state.store import Outbound, Store

CITIZEN = "+923001234567"


class Alarms:
    """Records each alarm with the bank's view of the modem at that moment."""

    def __init__(self) -> None:
        self.raised: list[tuple[str, str, dict[str, object]]] = []
        self.cleared: list[str] = []
        self.outbox: Outbox | None = None

    def raise_(self, kind: str, message: str) -> None:
        assert self.outbox is not None
        self.raised.append((kind, message, self.outbox.bank.snapshot()["a"]))

    def clear(self, kind: str) -> None:
        self.cleared.append(kind)


@pytest.fixture
def box(tmp_path: Path) -> Iterator[tuple[Outbox, Alarms, list[tuple[str, dict[str, Any]]]]]:
    store = Store(tmp_path / "state.db")
    alarms = Alarms()
    events: list[tuple[str, dict[str, Any]]] = []
    rules = dataclasses.replace(ReliabilityConfig(), max_attempts=3, attempts_per_sim=2,
                                block_after_failures=5)
    outbox = Outbox([(n, SlotSettings(0.0, 100, 1000)) for n in ("a", "b")], rules,
                    country_code="92", alarms=alarms,
                    emit=lambda event, **data: events.append((event, data)))
    alarms.outbox = outbox
    for name in ("a", "b"):
        outbox.on_status(ModemStatus(name, f"/dev/{name}", state=ModemState.READY))
    try:
        yield outbox, alarms, events
    finally:
        store.close()


def claimed(outbox: Outbox, text: str = "x" * 200) -> Job:
    """A reply queued for modem a, claimed by a and encoded in two parts."""
    outbox.queue(to=CITIZEN, text=text, kind="no_record", preferred_modem="a")
    job = outbox.next_job("a")
    assert job is not None
    return outbox.plan_encoded(job, [PlanPart(1, 2, 7, "00" * 20), PlanPart(2, 2, 7, "00" * 20)])


def row(job: Job) -> Any:
    return Outbound.get_by_id(job.outbound_id)


def cms(code: int) -> ModemCommandError:
    return ModemCommandError(f"AT+CMSS=1 answered +CMS ERROR: {code}", kind="CMS", code=code)


def test_sent(box: Any) -> None:
    outbox, alarms, events = box
    job = claimed(outbox)
    parts = [SubmittedPart(1, 2, 7, 11, time.time()), SubmittedPart(2, 2, 7, 12, time.time())]
    for part in parts:
        outbox.part_sent(job, part)
    outbox.job_done(job, None, parts)
    assert row(job).status == "sent" and row(job).attempts == 1
    assert alarms.cleared == ["reply_failed"] and not alarms.raised
    assert [e for e, _ in events] == ["sent"]


def test_a_permanent_refusal_fails_the_reply_and_tells_a_technician(box: Any) -> None:
    outbox, alarms, events = box
    job = claimed(outbox)
    outbox.job_done(job, cms(1), [])   # TS 24.011: unassigned number
    assert row(job).status == "failed" and "+CMS ERROR: 1" in row(job).last_error
    ((kind, message, bank),) = alarms.raised
    assert kind == "reply_failed" and f"reply {job.outbound_id} failed after 1 attempt" in message
    # The modem's streak was counted before the alarm (whose SMS must not go to it blindly).
    assert bank["consecutive_failures"] == 1
    assert events[-1][0] == "failed" and events[-1][1]["error_class"] == "permanent"


def test_a_modem_fault_gives_the_attempt_back_and_rests_the_modem(box: Any) -> None:
    outbox, alarms, _ = box
    job = claimed(outbox)
    outbox.job_done(job, cms(8), [])   # operator determined barring: no credit
    assert row(job).status == "queued" and row(job).attempts == 0
    assert outbox.bank.credit_blocked("a") and outbox.next_job("a") is None
    assert outbox.next_job("b") is not None, "another modem takes it"
    outbox.balance_ok("a")
    assert not outbox.bank.credit_blocked("a")
    assert [k for k, _, _ in alarms.raised] == ["modem_blocked:a"]


def test_a_link_failure_gives_the_attempt_back_and_counts_against_the_reply(box: Any) -> None:
    outbox, alarms, _ = box
    job = claimed(outbox)
    outbox.job_done(job, ModemTimeout("AT+CMSS=1: no answer in 60 s"), [])
    r = row(job)
    assert (r.status, r.attempts, r.link_failures) == ("retry", 0, 1)
    assert r.next_attempt_at > time.time() and not alarms.raised


def test_link_failures_without_end_fail_the_reply(box: Any) -> None:
    outbox, alarms, _ = box
    job = claimed(outbox)
    limit = 3 * outbox.rules.max_attempts   # LINK_FAILURES_PER_ATTEMPT × max_attempts
    for _ in range(limit - 1):
        outbox.job_done(job, ModemGone("/dev/a: unplugged"), [])
        Outbound.update(next_attempt_at=0).where(Outbound.id == job.outbound_id).execute()
        again = outbox.next_job("a")
        assert again is not None and again.outbound_id == job.outbound_id
        job = again
    outbox.job_done(job, ModemGone("/dev/a: unplugged"), [])
    assert row(job).status == "failed" and row(job).link_failures == limit
    assert [k for k, _, _ in alarms.raised] == ["reply_failed"]
    assert f"{limit} timeouts or disconnects" in alarms.raised[0][1]


def test_congestion_retries_in_seconds_then_moves_to_another_sim(box: Any) -> None:
    outbox, alarms, _ = box
    job = claimed(outbox)
    outbox.job_done(job, cms(500), [])
    r = row(job)
    assert (r.status, r.sim_attempts, r.plan_modem) == ("retry", 1, "a")
    assert 0 < r.next_attempt_at - time.time() <= outbox.rules.retry_base_s + 0.5
    Outbound.update(next_attempt_at=0).where(Outbound.id == job.outbound_id).execute()
    job = outbox.next_job("a")
    assert job is not None and job.parts, "resumed with the same encoding on its SIM"
    outbox.job_done(job, cms(500), [])   # attempts_per_sim (2) reached: the plan goes
    r = row(job)
    assert (r.status, r.sim_attempts, r.plan_modem, r.splits) == ("retry", 0, None, 0)
    assert not alarms.raised


def test_the_last_attempt_fails_the_reply(box: Any) -> None:
    outbox, alarms, _ = box
    job = claimed(outbox)
    for _ in range(outbox.rules.max_attempts - 1):
        outbox.job_done(job, cms(500), [])
        Outbound.update(next_attempt_at=0).where(Outbound.id == job.outbound_id).execute()
        again = outbox.next_job("a") or outbox.next_job("b")
        assert again is not None
        job = again
    outbox.job_done(job, cms(500), [])
    assert row(job).status == "failed" and row(job).attempts == outbox.rules.max_attempts
    assert [k for k, _, _ in alarms.raised] == ["reply_failed"]


def test_a_closed_outbox_hands_out_nothing(box: Any) -> None:
    outbox, _, _ = box
    outbox.queue(to=CITIZEN, text="x", kind="no_record", preferred_modem="a")
    outbox.close()
    assert outbox.next_job("a") is None and outbox.pending_count() == 1
