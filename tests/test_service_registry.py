"""The service on a damaged registry (issue 12, items 1-3): it starts, answers every SMS
"service temporarily unavailable" (never the damaged verdict), raises
``registry_corrupt``, and repairs itself from a real signed repository on 127.0.0.1
through its own scheduler jobs; then verdicts resume. Real ``state.db`` and
``registry.db``; the port calls are made as the engine makes them. ~10 s.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest

from appliance.config import config_from_dict
from appliance.modem import pdu as pdumod
from appliance.modem.engine import ModemState, ModemStatus
from appliance.rules.responder import RegistryState
from appliance.service.unit import Service
from tests.conftest import FIRMWARE_CONFIG, wait_until
from tests.pdu_support import deliver_pdus
from tests.test_registry_support import Env, env, people, person

__all__ = ["env"]

STAMP = datetime(2026, 11, 22, 9, 0, tzinfo=timezone.utc)
OFFENDER = person(4)["cnic"]
NEIGHBOUR = OFFENDER[:-1] + str((int(OFFENDER[-1]) + 1) % 10)   # innocent, one digit off


@pytest.fixture
def unit(env: Env, tmp_path: Path) -> Iterator[tuple[Env, Path]]:
    env.publish(people(30))
    env.unit().sync()
    yield env, env.db


def start_service(e: Env, tmp_path: Path) -> Service:
    config = config_from_dict({
        "unit": {"name": "test", "data_dir": str(e.db.parent)},
        "modems": [{"name": "m0", "port": str(tmp_path / "no-such-port"), "enabled": False}],
        "replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml"), "language": "en"},
        "registry": {"repository_url": e.server.url, "trusted_root": str(e.root),
                     "check_interval_minutes": 0},
        "status": {"http_bind": ""},
    }, base_dir=tmp_path)
    svc = Service(config, health_check_s=0.5)
    svc.start()
    svc.outbox.bank.on_status(ModemStatus(name="m0", port="", state=ModemState.READY))
    return svc


def ask(svc: Service, text: str, sender: str) -> str:
    """Deliver one SMS; the kind of the reply queued for it."""
    pdu_hex = deliver_pdus(sender, text, timestamp=STAMP)[0]
    svc.on_inbound("m0", pdu_hex, pdumod.decode(pdu_hex))
    with sqlite3.connect(svc.config.state_path) as conn:
        return str(conn.execute("SELECT kind FROM outbound ORDER BY id DESC LIMIT 1"
                                ).fetchone()[0])


def repaired(svc: Service) -> bool:
    return (svc.registry_view(max_age_s=0).state is RegistryState.OK
            and "registry_corrupt" not in {a.kind for a in svc.alarms.active()})


def test_damaged_metadata_starts_answers_unavailable_and_repairs(
        unit: tuple[Env, Path], tmp_path: Path) -> None:
    e, db = unit
    with sqlite3.connect(db) as conn:
        conn.execute("UPDATE registry_meta SET signed_at = 'yesterday-ish'")
    svc = start_service(e, tmp_path)                      # used to exit 70 here
    try:
        if svc.registry_view(max_age_s=0).state is not RegistryState.OK:
            assert ask(svc, OFFENDER, "+923001110001") == "unavailable"
        assert wait_until(lambda: svc.alarms.raised_total.get("registry_corrupt"), 20)
        assert wait_until(lambda: repaired(svc), 30), svc.alarms.active()
        assert ask(svc, OFFENDER, "+923001110002") == "hit"
        assert ask(svc, NEIGHBOUR, "+923001110003") == "no_record"
    finally:
        svc.stop()


def test_a_changed_cnic_digit_never_brands_the_neighbour(
        unit: tuple[Env, Path], tmp_path: Path) -> None:
    """The issue's example: the last digit of an offender's CNIC changed in the file's
    bytes. SQLite's integrity_check still says ok; the digests do not."""
    e, db = unit
    data = db.read_bytes()
    assert data.count(OFFENDER.encode()) == 2              # offender and offender_digest
    db.write_bytes(data.replace(OFFENDER.encode(), NEIGHBOUR.encode(), 1))
    with sqlite3.connect(db) as conn:
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    svc = start_service(e, tmp_path)
    try:
        # Whether or not the start-up verification has run yet: the row now naming the
        # neighbour does not match its digest, so the neighbour is never a "convict".
        assert ask(svc, NEIGHBOUR, "+923002220001") in ("no_record", "unavailable")
        assert ask(svc, OFFENDER, "+923002220002") in ("no_record", "unavailable")
        assert wait_until(lambda: svc.alarms.raised_total.get("registry_corrupt"), 20)
        assert wait_until(lambda: repaired(svc), 30), svc.alarms.active()
        assert ask(svc, NEIGHBOUR, "+923002220003") == "no_record"
        assert ask(svc, OFFENDER, "+923002220004") == "hit"
    finally:
        svc.stop()
