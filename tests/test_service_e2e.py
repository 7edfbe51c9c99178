"""The unit end to end: citizen SMS → simulated modem (real pty, real AT) → service →
registry → reply PDUs captured by the simulator, decoded with an independent decoder."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.rules.cnic import format_cnic, to_urdu_digits
from appliance.registry.importer import demo_cnics
from appliance.registry.lookup import Registry
from appliance.rules.responder import Policy, load_templates, respond
from tests.conftest import FIRMWARE_CONFIG, ROOT, unit_config, wait_until, write_unit_toml

CITIZEN = "+923001112233"
CNICS = demo_cnics()


def independent_texts(sim: Any, recipient: str) -> list[str]:
    """Replies to ``recipient`` rebuilt from the captured PDUs by smspdudecoder, parts
    joined by concatenation reference and order — not by our codec or the simulator's."""
    from smspdudecoder.easy import read_outgoing_sms
    from smspdudecoder.fields import SMSSubmit
    from io import StringIO

    groups: dict[Any, dict[int, str]] = {}
    order: list[Any] = []
    for sub in sim.submitted:
        tpdu = sub.pdu  # as written after the prompt: SMSC field first, as the decoder expects
        decoded = read_outgoing_sms(tpdu)
        if decoded["recipient"] != recipient:
            continue
        header = SMSSubmit.decode(StringIO(tpdu))["user_data"].get("header") or {}
        key: Any = (sub.modem, len(order))
        seq = 1
        for el in header.get("elements", []):
            if el["iei"] in (0x00, 0x08):
                key = (sub.modem, el["data"]["reference"])
                seq = el["data"]["part_number"]
        if key not in groups:
            groups[key] = {}
            order.append(key)
        groups[key][seq] = decoded["content"]
    return ["".join(parts[i] for i in sorted(parts)) for parts in (groups[k] for k in order)]


def expected_reply(registry_path: Path, text: str) -> str:
    templates = load_templates(FIRMWARE_CONFIG / "replies.toml")
    with Registry(registry_path) as reg:
        return respond(text, reg.lookup, templates, Policy()).text


@pytest.fixture
def service(tmp_path: Path, sim: Any, sample_registry: Path) -> Any:
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, sim))
    svc.start()
    yield svc
    svc.stop()


@pytest.mark.parametrize("text", [
    format_cnic(CNICS.hits[0]),
    CNICS.misses[0],
    to_urdu_digits(format_cnic(CNICS.hits[1])),
    f"{CNICS.hits[0]} {CNICS.misses[0]}",
    "35202-123456-7",
    "مدد",
])
def test_reply_matches_template_exactly(service: Any, sim: Any, sample_registry: Path,
                                        text: str) -> None:
    sim.citizen_send(CITIZEN, 0, text)
    assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15), "no reply"
    want = expected_reply(sample_registry, text)
    assert sim.inbox(CITIZEN) == [want]
    assert independent_texts(sim, CITIZEN) == [want]
    # The reply left from the modem that received the request.
    assert {s.modem for s in sim.submitted} == {sim.modems[0].name}


def test_hit_reply_is_urdu_ucs2_and_multipart(service: Any, sim: Any) -> None:
    sim.citizen_send(CITIZEN, 1, f"{CNICS.hits[0]} {CNICS.hits[1]}")
    assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15)
    parts = [s for s in sim.submitted if s.modem == sim.modems[1].name]
    assert len(parts) >= 2, "two hits in Urdu do not fit one UCS-2 SMS"
    assert "خبردار" in sim.inbox(CITIZEN)[0]


def test_long_inbound_sms_is_reassembled(service: Any, sim: Any, sample_registry: Path) -> None:
    text = ("میں ایک ڈرائیور رکھنا چاہتا ہوں، براہ کرم اس شناختی کارڈ کی تصدیق کریں: "
            f"{format_cnic(CNICS.hits[2])} شکریہ، اللہ آپ کو خوش رکھے")
    assert len(text) > 70
    sim.citizen_send(CITIZEN, 0, text)
    assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15)
    assert sim.inbox(CITIZEN) == [expected_reply(sample_registry, text)]


def test_sms_stored_before_startup_is_answered(tmp_path: Path, sim: Any,
                                               sample_registry: Path) -> None:
    from appliance.service.unit import Service

    sim.citizen_send(CITIZEN, 0, CNICS.misses[1], store_only=True)
    assert len(sim.modems[0].stored()) == 1
    svc = Service(unit_config(tmp_path, sim))
    svc.start()
    try:
        assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15)
        assert wait_until(lambda: not sim.modems[0].stored(), 5), "not deleted from the SIM"
    finally:
        svc.stop()


def test_alphanumeric_and_own_numbers_are_not_answered(service: Any, sim: Any) -> None:
    sim.citizen_send("Jazz", 0, "Your balance is Rs. 12.50")
    sim.citizen_send(sim.modems[1].number, 0, CNICS.misses[0])
    sim.citizen_send(CITIZEN, 0, CNICS.misses[0])
    assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15)
    from appliance.state.store import Inbound
    assert wait_until(lambda: Inbound.select().where(Inbound.status == "ignored").count() == 2)
    reasons = {r.reason for r in Inbound.select().where(Inbound.status == "ignored")}
    assert any("alphanumeric" in r for r in reasons) and any("own number" in r for r in reasons)
    assert not sim.inbox(sim.modems[1].number)


def test_reply_moves_to_another_modem_when_the_receiver_cannot_send(
        service: Any, sim: Any) -> None:
    sim.modems[0].faults.registered = False
    assert wait_until(lambda: service.modems[sim.modems[0].name].status().state != "ready", 10)
    sim.modems[0].faults.registered = True  # receive again, but keep it out by blocking
    service.outbox.bank.send_failed(sim.modems[0].name, modem_fault=True, reason="test: no credit")
    sim.citizen_send(CITIZEN, 0, CNICS.misses[0])
    assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15)
    assert {s.modem for s in sim.submitted} == {sim.modems[1].name}


# -- the real process: run, kill -9, restart -------------------------------------------------

def write_config(tmp_path: Path, sim: Any, extra: str = "") -> Path:
    return write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                           own_numbers=[m.number for m in sim.modems], send_timeout_s=15,
                           sweep_interval_s=5, extra=extra)


def start_unit(config: Path) -> subprocess.Popen[bytes]:
    return subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))


def test_kill_and_restart_sends_every_queued_reply(tmp_path: Path, sim: Any,
                                                   sample_registry: Path) -> None:
    for m in sim.modems:
        m.faults.cmgs_latency = 0.4
    config = write_config(tmp_path, sim)
    citizens = [f"+92300555{i:04d}" for i in range(12)]
    proc = start_unit(config)
    kills = 0
    try:
        for i, who in enumerate(citizens):
            sim.citizen_send(who, i % 2, CNICS.misses[i % len(CNICS.misses)])
        assert wait_until(lambda: len(sim.submitted) >= 2, 20), "nothing sent before the kill"
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        kills += 1
        proc = start_unit(config)
        assert wait_until(lambda: all(sim.inbox(w) for w in citizens), 60), \
            [w for w in citizens if not sim.inbox(w)]
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=20)
    assert proc.returncode == 0, err.decode(errors="replace")[-2000:]
    duplicates = sum(len(sim.inbox(w)) - 1 for w in citizens)
    assert duplicates <= kills
    assert b"Traceback" not in err


def test_sigterm_keeps_queued_replies_for_the_next_start(tmp_path: Path, sim: Any,
                                                         sample_registry: Path) -> None:
    for m in sim.modems:
        m.faults.registered = False  # nothing can leave: replies stay queued
    config = write_config(tmp_path, sim, "[reliability]\nretry_base_s = 1\nretry_max_s = 2\n")
    proc = start_unit(config)
    try:
        sim.modems[0].faults.registered = True  # receive on sim0, but it cannot send:
        sim.modems[0].faults.cms_error_rate = 1.0  # every submit fails, temporarily
        sim.citizen_send(CITIZEN, 0, CNICS.misses[0])
        assert wait_until(lambda: any("CMSS" in c or "CMGS" in c
                                  for c in sim.modems[0].commands()), 20)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)
    assert proc.returncode == 0
    assert not sim.inbox(CITIZEN)
    sim.modems[0].faults.cms_error_rate = 0.0
    proc = start_unit(config)
    try:
        assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 30)
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


@pytest.mark.parametrize("body, expected", [
    ('[unit]\nname = "x"\ndata_dirr = "/tmp"\n', ["data_dirr", "did you mean", "data_dir"]),
    ('[[modems]]\nname = "a"\nport = "/dev/x"\nbaudrate = 11520\n',
     ['line 4: modem "a".baudrate']),
    ('[unit\n', ["line 1"]),
    ('[[modems]]\nport = "/dev/x"\n', ["line 1: modem #1 (no name).name"]),
])
def test_bad_config_gives_one_clear_message(tmp_path: Path, body: str,
                                            expected: list[str]) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(body)
    res = subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(path)],
                         cwd=ROOT, capture_output=True, text=True, timeout=30)
    assert res.returncode == 2
    assert "Traceback" not in res.stderr
    assert "bad.toml" in res.stderr
    for word in expected:
        assert word in res.stderr, res.stderr


def test_kill_during_cmss_sends_no_duplicate(tmp_path: Path, sim: Any,
                                             sample_registry: Path) -> None:
    """Killed while the modem is sending from memory: after restart the unit asks the
    modem (AT+CMGR: <stat> 3, "stored sent") and does not send the reply again."""
    import sqlite3

    sim.modems[0].faults.cmgs_latency = 2.0  # the radio takes 2 s; the kill lands inside
    config = write_config(tmp_path, sim)
    proc = start_unit(config)
    try:
        sim.citizen_send(CITIZEN, 0, CNICS.misses[0])
        assert wait_until(lambda: any(re.match(r"\+CMSS=\d", c, re.I)
                                      for c in sim.modems[0].commands()), 20)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 10)  # the modem sent it
        sim.modems[0].faults.cmgs_latency = 0.0
        proc = start_unit(config)
        db = tmp_path / "data" / "state.db"

        def reply_row() -> tuple[str, int] | None:
            with sqlite3.connect(db) as conn:
                return conn.execute("SELECT status, resends FROM outbound").fetchone()
        assert wait_until(lambda: (reply_row() or ("",))[0] == "sent", 20), reply_row()
        assert reply_row() == ("sent", 0)
        assert len(sim.inbox(CITIZEN)) == 1
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=20)


def test_delivery_reports_mark_the_reply_delivered(service: Any, sim: Any) -> None:
    from appliance.state.store import Outbound

    sim.citizen_send(CITIZEN, 0, f"{CNICS.hits[0]} {CNICS.hits[1]}")  # a multipart reply
    assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15)
    assert wait_until(lambda: Outbound.select().where(
        Outbound.status == "delivered").count() == 1, 15), \
        [(o.status, o.parts) for o in Outbound.select()]
    row = Outbound.get()
    assert row.parts >= 2 and row.delivered_at is not None


def test_a_permanent_error_fails_the_reply_with_an_alarm(service: Any, sim: Any) -> None:
    from appliance.state.store import Outbound

    sim.modems[0].faults.cms_error_rate = 1.0
    sim.modems[0].faults.cms_error_code = 1  # unassigned number: never retried
    sim.citizen_send(CITIZEN, 0, CNICS.misses[0])
    assert wait_until(lambda: Outbound.select().where(Outbound.status == "failed").count()
                      == 1, 15)
    row = Outbound.get()
    assert row.attempts == 1 and "+CMS ERROR: 1" in (row.last_error or "")
    assert "reply_failed" in {a.kind for a in service.alarms.active()}
    assert not sim.inbox(CITIZEN)


def test_an_incomplete_long_sms_is_answered_after_the_timeout(
        tmp_path: Path, sim: Any, sample_registry: Path) -> None:
    """Part 2 of 2 never arrives: after reassembly_timeout_s the unit answers what it has."""
    from datetime import datetime, timezone

    from appliance.service.unit import Service
    from tests.pdu_support import deliver_pdus

    text = f"{format_cnic(CNICS.hits[0])} " + "x" * 170  # two GSM-7 parts
    parts = deliver_pdus(CITIZEN, text, timestamp=datetime.now(timezone.utc), reference=9)
    assert len(parts) == 2
    svc = Service(unit_config(tmp_path, sim, limits={"reassembly_timeout_s": 10}))
    svc.start()
    try:
        sim.store_pdu(0, parts[0])  # only part 1
        assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 40)
        assert "خبردار" in sim.inbox(CITIZEN)[0]  # the CNIC in part 1 was answered
    finally:
        svc.stop()
