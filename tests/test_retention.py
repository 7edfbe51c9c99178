"""Privacy of the message store (state.db): what it keeps, how long, and with what mode.

The end-to-end proof runs the real service over the simulator with citizens' SMS, then
judges the store with a clock advanced past ``privacy.message_retention_days``: no clear
CNIC, name or sender number (nor their UCS-2 or semi-octet encodings inside a PDU) is left
in any column of any table, found by scanning every table generically, nor in the raw
bytes of state.db and its WAL.
"""

from __future__ import annotations

import os
import sqlite3
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.rules.cnic import format_cnic
from appliance.registry.importer import demo_cnics
from appliance.registry.lookup import Registry
from appliance.state.retention import (
    RETENTION, Hashers, Redact, is_keyed_hash, redact, unclassified_columns,
)
from tests.conftest import ROOT, unit_config, wait_until
from appliance.outbox.table import ReplyTable

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened

CITIZENS = ("+923001112233", "03214445566")   # the second written nationally, as phones do
CNICS = demo_cnics()
DAY_S = 86_400.0


def _semi_octets(digits: str) -> str:
    """A number as TS 23.040 §9.1.2.3 packs it in a PDU (nibbles swapped, F-padded)."""
    if len(digits) % 2:
        digits += "F"
    return "".join(digits[i + 1] + digits[i] for i in range(0, len(digits), 2))


def needles(numbers: tuple[str, ...], cnics: tuple[str, ...],
            names: tuple[str, ...]) -> set[str]:
    """Every clear form of the personal data, as text and as a PDU would carry it."""
    found: set[str] = set()
    for number in numbers:
        national = number.removeprefix("+92").lstrip("0")       # 3001112233
        for form in (national, "0" + national, "92" + national, "+92" + national):
            found.add(form)
        found.add(_semi_octets("92" + national))
        found.add(_semi_octets("0" + national))
    for cnic in cnics:
        found.update({cnic, format_cnic(cnic), cnic.encode("utf-16-be").hex().upper()})
    for name in names:
        found.update({name, name.encode("utf-16-be").hex().upper()})
    return found | {n.lower() for n in found}


def scan_tables(db_path: Path, wanted: set[str]) -> list[str]:
    """``table.column = …`` for every value holding a needle, over every table there is."""
    conn = sqlite3.connect(f"file:{db_path}?mode=ro", uri=True)
    try:
        hits = []
        tables = [r[0] for r in conn.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table'")]
        for table in tables:
            cols = [r[1] for r in conn.execute(f'PRAGMA table_info("{table}")')]
            for row in conn.execute(f'SELECT * FROM "{table}"'):
                for col, value in zip(cols, row):
                    text = value.hex() if isinstance(value, bytes) else str(value)
                    for needle in wanted:
                        if needle in text:
                            hits.append(f"{table}.{col} holds {needle!r}")
        return hits
    finally:
        conn.close()


def scan_bytes(paths: list[Path], wanted: set[str]) -> list[str]:
    hits = []
    for path in paths:
        if not path.exists():
            continue
        data = path.read_bytes()
        for needle in wanted:
            if needle.encode("utf-8") in data:
                hits.append(f"{path.name} bytes hold {needle!r}")
    return hits


def _names(registry: Path, cnics: list[str]) -> tuple[str, ...]:
    with Registry(registry) as reg:
        records = [reg.lookup(c) for c in cnics]
    return tuple(n for r in records if r is not None
                 for n in (r.name_ur, r.name_en, r.parent_ur, r.parent_en) if n)


@pytest.fixture
def service(tmp_path: Path, sim: Any, sample_registry: Path) -> Iterator[Any]:
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, sim))
    svc.start()
    yield svc
    svc.stop()


def test_no_clear_cnic_name_or_number_after_the_window(tmp_path: Path, service: Any,
                                                       sim: Any,
                                                       sample_registry: Path) -> None:
    asked = [CNICS.hits[0], CNICS.misses[0], CNICS.hits[1], CNICS.removed[0]]
    messages = [
        (CITIZENS[0], 0, format_cnic(asked[0])),
        (CITIZENS[0], 1, f"{asked[1]} {asked[2]}"),
        (CITIZENS[1], 0, f"شناختی کارڈ {format_cnic(asked[3])}"),
        (CITIZENS[1], 1, "35202-123456-7"),            # invalid: answered, no CNIC
        ("Jazz", 0, f"promo {asked[0]}"),              # ignored: alphanumeric sender
    ]
    for sender, modem, text in messages:
        sim.citizen_send(sender, modem, text)
    handsets = ("+923001112233", "+923214445566")
    assert wait_until(lambda: len(sim.inbox(handsets[0])) == 2
                      and len(sim.inbox(handsets[1])) == 2, 30), "replies missing"
    from appliance.state.store import Inbound, Outbound
    assert wait_until(lambda: Inbound.select().count() == len(messages)
                      and Outbound.select().where(Outbound.status == "queued").count() == 0
                      and Outbound.select().where(Outbound.status == "sending").count() == 0,
                      15)
    db_path = service.config.state_path
    wanted = needles(CITIZENS + ("Jazz",), tuple(asked), _names(sample_registry, asked))

    # Before the window ends, the store still holds them (so the scan can see a leak) ...
    before = scan_tables(db_path, wanted)
    assert any(h.startswith("inbound.text") for h in before)
    assert any(h.startswith("outbound.text") for h in before)
    assert any(h.startswith("audit_event.sender") for h in before)
    # ... and a run of the job inside the window changes nothing.
    assert service.redact_expired(now=time.time()) == {}
    counts = {t: _count(db_path, t) for t in ("inbound", "outbound", "part", "audit_event")}

    changed = service.redact_expired(now=time.time() + 7 * DAY_S + 3600)
    assert changed["inbound"] == len(messages) and changed["outbound"] == counts["outbound"]

    assert scan_tables(db_path, wanted) == []
    # Counts and keyed hashes stay: the audit rows still say who asked what kind of thing.
    assert {t: _count(db_path, t) for t in counts} == counts
    conn = sqlite3.connect(db_path)
    try:
        senders = {r[0] for r in conn.execute("SELECT sender FROM audit_event")}
        assert senders and all(s is None or is_keyed_hash(s) for s in senders)
        hashes = [r[0] for r in conn.execute(
            "SELECT cnic_hmac FROM audit_event WHERE cnic_hmac IS NOT NULL")]
        assert hashes and all(is_keyed_hash(h) for h in hashes)
        # One citizen, one pseudonym, in every table that counts senders.
        recipients = {r[0] for r in conn.execute(
            "SELECT recipient FROM outbound WHERE kind <> 'alarm'")}
        assert len(recipients) == 2 and recipients <= senders
    finally:
        conn.close()
    # A second run has nothing left to do.
    assert service.redact_expired(now=time.time() + 8 * DAY_S) == {}

    # Nor do old values linger in free pages or old WAL frames (secure_delete, checkpoint).
    service.stop()
    files = [db_path, db_path.with_name(db_path.name + "-wal")]
    assert scan_bytes(files, wanted) == []


def _count(db_path: Path, table: str) -> int:
    conn = sqlite3.connect(db_path)
    try:
        return int(conn.execute(f'SELECT COUNT(*) FROM "{table}"').fetchone()[0])
    finally:
        conn.close()


# --- the classification and the job, on a store without modems -----------------------------

@pytest.fixture
def store(tmp_path: Path) -> Iterator[Any]:
    from appliance.state.audit import ensure_schema
    from appliance.service.guard import GuardCnic, GuardEvent
    from appliance.fleet.hits import FleetHit
    from appliance.state.history import HistoryRow
    from appliance.state.store import Store, db

    s = Store(tmp_path / "state.db")
    db.create_tables([GuardEvent, GuardCnic, HistoryRow, FleetHit], safe=True)
    ensure_schema()
    yield s
    s.close()


def test_every_text_column_of_state_db_is_classified(store: Any) -> None:
    assert unclassified_columns() == []


def test_an_unclassified_text_column_is_reported(store: Any) -> None:
    from appliance.state.store import db

    db.execute_sql("CREATE TABLE later_feature (id INTEGER PRIMARY KEY, note TEXT, n INTEGER)")
    db.execute_sql("ALTER TABLE inbound ADD COLUMN operator_note VARCHAR(40)")
    assert unclassified_columns() == ["inbound.operator_note", "later_feature.note"]


def test_classification_names_only_real_columns(store: Any) -> None:
    from appliance.state.store import db

    for rule in RETENTION:
        cols = {r[1] for r in db.execute_sql(f'PRAGMA table_info("{rule.table}")')}
        assert set(rule.columns) <= cols, rule.table


_HASHERS = Hashers(number=lambda n: "a" * 63 + "1", digest=lambda d: "b" * 63 + "2")


def test_rows_still_needed_are_never_redacted(store: Any) -> None:
    from appliance.state.store import Inbound

    old = time.time() - 30 * DAY_S
    waiting = store.record_inbound(modem="m", pdu_hash="1" * 32, pdu="07AB", sender="+92300",
                                   text="35202-1234567-1", status="new", received_at=old)[0]
    part = store.record_inbound(modem="m", pdu_hash="2" * 32, pdu="07CD", sender="+92300",
                                text="half", status="part", received_at=old)[0]
    done = store.record_inbound(modem="m", pdu_hash="3" * 32, pdu="07EF", sender="+92300",
                                text="35202-1234567-1", status="new", received_at=old)[0]
    store.set_inbound_status([done], "answered")
    oid = replies.queue_reply(recipient="+92300", text="queued reply", parts=1,
                            preferred_modem="m")
    changed = redact(now=time.time() + 8 * DAY_S, retention_days=7, hashers=_HASHERS)
    assert changed == {"inbound": 1}
    assert Inbound.get_by_id(waiting).text == "35202-1234567-1"
    assert Inbound.get_by_id(part).pdu == "07CD"
    row = Inbound.get_by_id(done)
    assert (row.text, row.pdu, row.sender, row.pdu_hash) == ("", "", "a" * 63 + "1",
                                                            "b" * 63 + "2")
    from appliance.state.store import Outbound
    assert Outbound.get_by_id(oid).text == "queued reply"


def test_window_counts_from_when_the_message_was_done(store: Any) -> None:
    received = time.time() - 30 * DAY_S
    iid = store.record_inbound(modem="m", pdu_hash="4" * 32, pdu="07AB", sender="+92300",
                               text="x", status="new", received_at=received)[0]
    store.set_inbound_status([iid], "answered")      # answered only now (after an outage)
    assert redact(now=time.time() + 6 * DAY_S, retention_days=7, hashers=_HASHERS) == {}
    assert redact(now=time.time() + 8 * DAY_S, retention_days=7,
                  hashers=_HASHERS) == {"inbound": 1}


def test_audit_rows_accept_only_their_sender_pseudonymised(store: Any) -> None:
    from appliance.state.audit import Audit
    from appliance.state.store import db

    audit = Audit(b"k" * 32)
    audit.append(modem="m", sender="+923001112233", entries=[("3520212345671", "hit")],
                 at=time.time())
    with pytest.raises(Exception, match="append-only"):
        db.execute_sql("UPDATE audit_event SET verdict = 'no_record'")
    with pytest.raises(Exception, match="append-only"):
        db.execute_sql("UPDATE audit_event SET sender = '+923009999999'")
    with pytest.raises(Exception, match="append-only"):   # a hash and another change at once
        db.execute_sql("UPDATE audit_event SET sender = ?, modem = 'x'",
                       (audit.sender_hash("+923001112233"),))
    db.execute_sql("UPDATE audit_event SET sender = ?", (audit.sender_hash("+923001112233"),))
    with pytest.raises(Exception, match="append-only"):   # and never back, nor re-hashed
        db.execute_sql("UPDATE audit_event SET sender = ?", ("c" * 64,))


def test_redact_kinds_cover_each_column_once() -> None:
    tables = [r.table for r in RETENTION]
    assert len(tables) == len(set(tables))
    assert all(isinstance(how, Redact) for r in RETENTION for how in r.columns.values())


# --- file modes ------------------------------------------------------------------------------

def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_state_db_and_its_wal_are_0600_under_umask_022(tmp_path: Path) -> None:
    from appliance.state.store import Store, db

    old = os.umask(0o022)
    try:
        store = Store(tmp_path / "data" / "state.db")
        db.execute_sql("CREATE TABLE IF NOT EXISTS t (x)")
        db.execute_sql("INSERT INTO t VALUES (1)")
        files = [tmp_path / "data" / n for n in ("state.db", "state.db-wal", "state.db-shm")]
        assert all(p.exists() for p in files)
        assert {p.name: _mode(p) for p in files} == {p.name: 0o600 for p in files}
        store.close()
    finally:
        os.umask(old)


def test_a_world_readable_state_db_is_tightened(tmp_path: Path) -> None:
    from appliance.state.store import Store

    path = tmp_path / "state.db"
    Store(path).close()
    os.chmod(path, 0o644)
    Store(path).close()
    assert _mode(path) == 0o600


def test_the_demo_writes_a_private_state_db_under_umask_022(tmp_path: Path) -> None:
    work = tmp_path / "demo"
    proc = subprocess.run(
        [sys.executable, "-m", "appliance", "demo", "--messages", "2", "--modems", "1",
         "--latency", "0", "--dir", str(work)],
        cwd=ROOT, capture_output=True, text=True, timeout=120,
        preexec_fn=lambda: os.umask(0o022), env={**os.environ, "COLUMNS": "120"})
    assert proc.returncode == 0, proc.stdout + proc.stderr
    state = work / "data" / "state.db"
    assert _mode(state) == 0o600
    for side in ("-wal", "-shm"):
        path = state.with_name(state.name + side)
        if path.exists():
            assert _mode(path) == 0o600


def test_an_older_store_gets_the_new_audit_trigger(store: Any) -> None:
    from appliance.state.audit import Audit, ensure_schema
    from appliance.state.store import db

    db.execute_sql("DROP TRIGGER audit_event_only_pseudonymise")
    db.execute_sql("""CREATE TRIGGER audit_event_no_update BEFORE UPDATE ON audit_event
       BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: rows cannot be changed'); END""")
    ensure_schema()
    names = {r[0] for r in db.execute_sql("SELECT name FROM sqlite_master WHERE type='trigger'")}
    assert "audit_event_no_update" not in names and "audit_event_only_pseudonymise" in names
    audit = Audit(b"k" * 32)
    audit.append(modem="m", sender="+923001112233", entries=[(None, "help")], at=time.time())
    db.execute_sql("UPDATE audit_event SET sender = ?", (audit.sender_hash("+923001112233"),))


def test_the_watermark_survives_rows_deleted_and_rowids_reused(store: Any) -> None:
    """A guard table emptied by its purge reuses rowids below the job's watermark; rows
    written in clear there (by an older version) are still found."""
    from appliance.state.store import db

    old = time.time() - 30 * DAY_S
    for _ in range(3):
        db.execute_sql("INSERT INTO guard_event (sender, at, kind) VALUES ('+923001112233', ?, "
                       "'seen')", (old,))
    assert redact(now=time.time(), retention_days=7, hashers=_HASHERS) == {"guard_event": 3}
    db.execute_sql("DELETE FROM guard_event")
    db.execute_sql("INSERT INTO guard_event (sender, at, kind) VALUES ('+923001112233', ?, "
                   "'seen')", (old,))
    assert redact(now=time.time(), retention_days=7, hashers=_HASHERS) == {"guard_event": 1}
    senders = [r[0] for r in db.execute_sql("SELECT sender FROM guard_event")]
    assert senders == ["a" * 63 + "1"]


def test_guard_rows_of_an_older_version_are_pseudonymised_and_still_count(
        tmp_path: Path) -> None:
    """An upgrade keeps every sender's counters (the loop guard sees the earlier messages)
    while the clear numbers leave the guard's tables at once."""
    from appliance.config import config_from_dict
    from appliance.service.guard import Guard, GuardCnic, GuardEvent
    from appliance.state.store import Store, db

    store = Store(tmp_path / "state.db")
    try:
        db.create_tables([GuardEvent, GuardCnic], safe=True)
        now = time.time()
        for i in range(4):
            db.execute_sql("INSERT INTO guard_event (sender, at, kind) VALUES (?, ?, 'seen')",
                           ("+923001112233", now - i))
        config = config_from_dict({"unit": {"data_dir": str(tmp_path)},
                                   "limits": {"loop_guard_count": 5}}, base_dir=tmp_path)
        guard = Guard(config, secret=b"s" * 32)
        senders = {r[0] for r in db.execute_sql("SELECT sender FROM guard_event")}
        assert senders == {guard.counter_key("03001112233")}
        verdict = guard.check("03001112233", "international", "hello", now=now)
        assert not verdict.answer and verdict.code == "loop"   # 4 old + this one = 5
    finally:
        store.close()
