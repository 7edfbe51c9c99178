"""The service's transactions around one SMS, on a real ``state.db`` and registry, without
modems: the calls on its two ports are made as the engine makes them.

A whole SMS is stored, checked, answered and audited in one commit; if answering fails,
the stored row commits alone and nothing half-answered is left (no reply, no guard count, no
audit row) for the leftovers job to trip over; a modem is woken only once the reply it is
woken for can be seen from another connection.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_dict
from appliance.modem import pdu as pdumod
from appliance.modem.engine import ModemState, ModemStatus
from appliance.registry.importer import SAMPLE_REGISTRY, import_file
from appliance.service.unit import Service
from appliance.state.store import db

from .conftest import FIRMWARE_CONFIG
from .pdu_support import deliver_pdus

#: Stamped now: an old stamp would make a message without a CNIC "late" (not answered).
STAMP = datetime.now(timezone.utc).replace(microsecond=0)
SENDER = "+923001234567"


@pytest.fixture
def service(tmp_path: Path) -> Iterator[Service]:
    data = tmp_path / "data"
    data.mkdir()
    import_file(SAMPLE_REGISTRY, data / "registry.db", version=1, source="tests")
    config = config_from_dict({
        "unit": {"name": "test", "data_dir": str(data)},
        "modems": [{"name": "m0", "port": str(tmp_path / "no-such-port")}],
        "replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml")},
        "status": {"http_bind": ""},
    }, base_dir=tmp_path)
    svc = Service(config)
    svc.outbox.bank.on_status(ModemStatus(name="m0", port="", state=ModemState.READY))
    try:
        yield svc
    finally:
        svc.store.close()


def a_cnic(svc: Service) -> str:
    with sqlite3.connect(svc.config.registry_path) as conn:
        return str(conn.execute("SELECT cnic FROM offender LIMIT 1").fetchone()[0])


def deliver(svc: Service, text: str, **kw: Any) -> list[str]:
    pdus = deliver_pdus(SENDER, text, timestamp=STAMP, **kw)
    for pdu_hex in pdus:
        svc.on_inbound("m0", pdu_hex, pdumod.decode(pdu_hex))
    return pdus


def counts(svc: Service) -> dict[str, Any]:
    """Read from a connection of its own, as another thread or the status page would."""
    with sqlite3.connect(svc.config.state_path) as conn:
        one = lambda sql: conn.execute(sql).fetchone()[0]  # noqa: E731
        return {
            "inbound": dict(conn.execute("SELECT status, COUNT(*) FROM inbound "
                                         "GROUP BY status").fetchall()),
            "outbound": one("SELECT COUNT(*) FROM outbound"),
            "guard": dict(conn.execute("SELECT kind, COUNT(*) FROM guard_event "
                                       "GROUP BY kind").fetchall()),
            "audit": one("SELECT COUNT(*) FROM audit_event"),
        }


def test_a_whole_sms_is_one_commit(service: Service) -> None:
    statements: list[str] = []
    db.connection().set_trace_callback(statements.append)
    try:
        deliver(service, a_cnic(service))
    finally:
        db.connection().set_trace_callback(None)
    assert sum(s.startswith("COMMIT") for s in statements) == 1, statements
    assert counts(service) == {"inbound": {"answered": 1}, "outbound": 1,
                               "guard": {"seen": 1, "answer": 1}, "audit": 1}


def test_a_failed_answer_commits_the_sms_alone_and_the_leftovers_job_answers_it(
        service: Service, monkeypatch: pytest.MonkeyPatch, caplog: Any) -> None:
    def broken(cnic: str) -> None:
        raise OSError("registry disk gone")

    monkeypatch.setattr(service.registry, "lookup", broken)
    deliver(service, a_cnic(service))
    # Stored (its SIM copy may now be deleted), and nothing of the failed answer is left:
    # the guard did not count a message it never answered, the audit log has no row.
    assert counts(service) == {"inbound": {"new": 1}, "outbound": 0, "guard": {}, "audit": 0}
    assert "answering inbound 1 failed; will retry" in caplog.text

    monkeypatch.undo()
    db.execute_sql("UPDATE inbound SET received_at = received_at - 5")
    service._answer_leftovers()
    assert counts(service) == {"inbound": {"answered": 1}, "outbound": 1,
                               "guard": {"seen": 1, "answer": 1}, "audit": 1}


def test_a_failed_answer_to_a_long_sms_hands_its_parts_back(
        service: Service, monkeypatch: pytest.MonkeyPatch) -> None:
    text = a_cnic(service) + " " + "please check this driver " * 8
    monkeypatch.setattr(service.registry, "lookup", lambda cnic: 1 / 0)
    pdus = deliver(service, text, reference=7)
    assert len(pdus) == 2
    # Not "merged" (a final state no job looks at again): back to "part" by the rollback.
    assert counts(service)["inbound"] == {"part": 2}
    assert counts(service)["outbound"] == 0

    monkeypatch.undo()
    service._try_reassemble("m0", SENDER, 7, 2)
    assert counts(service)["inbound"] == {"answered": 2}
    assert counts(service)["outbound"] == 1


def test_the_same_pdu_twice_is_stored_and_answered_once(service: Service) -> None:
    pdu_hex = deliver(service, a_cnic(service))[0]
    service.on_inbound("m0", pdu_hex, pdumod.decode(pdu_hex))  # the sweep saw it again
    assert counts(service) == {"inbound": {"answered": 1}, "outbound": 1,
                               "guard": {"seen": 1, "answer": 1}, "audit": 1}


def test_a_modem_is_woken_only_when_its_reply_is_visible(service: Service) -> None:
    seen_at_poke: list[int] = []

    def poke() -> None:
        with sqlite3.connect(service.config.state_path) as conn:
            seen_at_poke.append(conn.execute(
                "SELECT COUNT(*) FROM outbound WHERE status = 'queued'").fetchone()[0])

    service.outbox.bank.pokers["m0"] = poke
    deliver(service, a_cnic(service))
    deliver(service, "help")
    assert seen_at_poke == [1, 2]
    job = service.outbox.next_job("m0")
    assert job is not None and job.recipient == SENDER


def test_old_messages_of_a_sim_are_recorded_not_answered_and_a_new_sim_is_dated_anew(
        service: Service) -> None:
    """Issue 13: the first start on a SIM (by IMSI) dates its history. A message stamped
    days before it is ignored with a reason, even with a CNIC; a SIM swapped in later gets
    its own date, not the modem's."""
    from datetime import timedelta

    service.on_status(ModemStatus(name="m0", port="", state=ModemState.READY,
                                  identity={"imsi": "410010000000001"}))
    old = STAMP - timedelta(days=3)
    for pdu_hex in deliver_pdus(SENDER, a_cnic(service), timestamp=old):
        service.on_inbound("m0", pdu_hex, pdumod.decode(pdu_hex))
    with sqlite3.connect(service.config.state_path) as conn:
        status, reason = conn.execute("SELECT status, reason FROM inbound").fetchone()
    assert status == "ignored" and "before the unit first started" in reason
    assert counts(service)["outbound"] == 0
    first = service._first_start["m0"]
    service.on_status(ModemStatus(name="m0", port="", state=ModemState.READY,
                                  identity={"imsi": "410010000000002"}))
    assert service._first_start["m0"] >= first
    assert sorted(service.store.kv_keys("sim_first_start:")) == [
        "sim_first_start:410010000000001", "sim_first_start:410010000000002"]


def test_an_upgraded_unit_dates_its_sim_by_its_first_message(service: Service) -> None:
    """A state.db from before the rule: the SIM's first start is the first message this
    modem received, not the upgrade (else what waited through the upgrade is ignored)."""
    deliver(service, "help")
    with sqlite3.connect(service.config.state_path) as conn:
        (received,) = conn.execute("SELECT received_at FROM inbound").fetchone()
    service.on_status(ModemStatus(name="m0", port="", state=ModemState.READY,
                                  identity={"imsi": "410010000000003"}))
    assert service._first_start["m0"] == received


def test_messages_held_by_a_modem_raise_an_alarm_until_they_are_stored(
        service: Service) -> None:
    """+CMT messages the service could not store exist only in the owner thread's memory:
    a technician must know before a restart loses them."""
    service.on_status(ModemStatus(name="m0", port="", state=ModemState.READY, held=2))
    (alarm,) = [a for a in service.alarms.active() if a.kind == "inbound_held:m0"]
    assert "holds 2 SMS" in alarm.message
    service.on_status(ModemStatus(name="m0", port="", state=ModemState.READY, held=0))
    assert not [a for a in service.alarms.active() if a.kind.startswith("inbound_held")]

