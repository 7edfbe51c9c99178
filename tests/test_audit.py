"""The audit log (append-only, purge, export), the unit secret, and logs without CNICs."""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import io
import json
import logging
import os
import re
import sqlite3
import stat
import threading
from datetime import datetime, timezone
from pathlib import Path

import peewee as pw
import pytest

from appliance.state import audit
from appliance.state.audit import Audit, AuditEvent
from appliance.errors import ConfigError
from appliance.service.guard import Guard, GuardVerdict
from appliance.registry.importer import SAMPLE_REGISTRY, demo_cnics, read_export
from appliance.rules.responder import Reply, Verdict
from appliance.rules.when import parse_since
from appliance.state.secret import load_or_create_secret
from appliance.state.store import Store

SECRET = bytes(range(32))
DAY = 86_400.0
T0 = 1_750_000_000.0
CNIC = "3520212345671"


def add(log: Audit, at: float, verdict: str = "no_record", cnic: str | None = CNIC) -> None:
    log.append(modem="sim0", sender="+923001234567", entries=[(cnic, verdict)], reply=7,
               inbound=3, at=at)


# --- append-only --------------------------------------------------------------------------

def test_rows_cannot_be_changed_or_deleted(store: Store, tmp_path: Path) -> None:
    log = Audit(SECRET)
    add(log, T0)
    with pytest.raises(pw.IntegrityError, match="append-only"):
        AuditEvent.update(verdict="hit").execute()
    with pytest.raises(pw.IntegrityError, match="append-only"):
        AuditEvent.delete().execute()
    # Not only through the ORM: any connection to the file meets the triggers.
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        for sql in ("UPDATE audit_event SET sender = NULL", "DELETE FROM audit_event",
                    "DELETE FROM audit_purge_gate"):
            with pytest.raises(sqlite3.IntegrityError):
                conn.execute(sql)
        # Opening the gate by hand cannot reach the last day of the log.
        with pytest.raises(sqlite3.IntegrityError, match="last day"):
            conn.execute("UPDATE audit_purge_gate SET cutoff = ?", (T0 + 1,))
    finally:
        conn.close()
    assert [r.verdict for r in AuditEvent.select()] == ["no_record"]


def test_purge_deletes_only_rows_past_retention(store: Store) -> None:
    log = Audit(SECRET)
    for age_days in (400, 366, 364, 10, 0):
        add(log, T0 - age_days * DAY)
    assert audit.purge(365, now=T0) == 2
    assert sorted(round((T0 - r.at) / DAY) for r in AuditEvent.select()) == [0, 10, 364]
    assert audit.purge(365, now=T0) == 0
    with pytest.raises(pw.IntegrityError):  # the gate closed again after the purge
        AuditEvent.delete().execute()


def test_purge_never_empties_the_last_day(store: Store) -> None:
    """A clock that jumped years ahead (no RTC, no time sync yet) keeps the recent rows."""
    log = Audit(SECRET)
    add(log, T0 - 3 * DAY)
    add(log, T0 - 0.5 * DAY)
    add(log, T0)
    assert audit.purge(1, now=T0 + 10 * 365 * DAY) == 1
    assert AuditEvent.select().count() == 2


def test_triggers_are_part_of_the_file(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    add(Audit(SECRET), T0)
    s.close()
    conn = sqlite3.connect(tmp_path / "state.db")
    try:
        names = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type='trigger'")}
        assert {"audit_event_only_pseudonymise", "audit_event_no_delete"} <= names
    finally:
        conn.close()


def test_cnic_is_stored_as_its_hmac(store: Store) -> None:
    log = Audit(SECRET)
    add(log, T0)
    add(log, T0, "help", None)
    rows = list(AuditEvent.select().order_by(AuditEvent.id))
    assert rows[0].cnic_hmac == hmac.new(SECRET, CNIC.encode(), hashlib.sha256).hexdigest()
    assert rows[1].cnic_hmac is None
    assert Audit(bytes(32 * [7])).cnic_hash(CNIC) != rows[0].cnic_hmac  # keyed per unit
    assert "SECRET" not in repr(log) and SECRET.hex() not in repr(log)


# --- what the guard audits ----------------------------------------------------------------

def test_guard_audits_each_cnic_and_each_refusal(tmp_path: Path) -> None:
    from appliance.config import config_from_dict
    from appliance.registry.record import OffenderRecord

    config = config_from_dict({"unit": {"data_dir": str(tmp_path)},
                               "status": {"http_bind": ""}}, base_dir=tmp_path)
    s = Store(config.state_path)
    try:
        g = Guard(config, secret=SECRET)
        rec = OffenderRecord(cnic=CNIC, name_ur="ن", name_en="N", parent_ur="پ",
                             parent_en="P", relation="s/o", status="active")
        other = "4210176543212"
        g.record("0300-1234567", Reply("x", "mixed", (CNIC, other),
                                       (Verdict(CNIC, rec), Verdict(other, None))),
                 [5], 11, "sim1", now=T0)
        g.record("+923001234567", Reply("x", "invalid", (), ()), [6], 12, "sim1", now=T0)
        g.record_ignored("Jazz", GuardVerdict(False, "alphanumeric", code="alphanumeric"), [7],
                         "sim2", f"offer {CNIC}", now=T0)
        rows = [(r.sender, r.cnic_hmac, r.verdict, r.reply, r.inbound, r.modem)
                for r in AuditEvent.select().order_by(AuditEvent.id)]
        h = g.audit.cnic_hash
        assert rows == [
            ("+923001234567", h(CNIC), "hit", 11, 5, "sim1"),
            ("+923001234567", h(other), "no_record", 11, 5, "sim1"),
            ("+923001234567", None, "invalid", 12, 6, "sim1"),
            ("Jazz", h(CNIC), "ignored:alphanumeric", None, 7, "sim2"),
        ]
    finally:
        s.close()


# --- export -------------------------------------------------------------------------------

def test_export_csv_and_ndjson(store: Store) -> None:
    log = Audit(SECRET)
    add(log, T0 - 2 * DAY, "hit")
    add(log, T0, "ignored:duplicate")
    out = io.StringIO()
    assert audit.export(out, "csv", unit="lahore-1") == 2
    rows = list(csv.DictReader(io.StringIO(out.getvalue())))
    assert rows[0]["unit"] == "lahore-1" and rows[0]["verdict"] == "hit"
    assert rows[0]["time"] == "2025-06-13T15:06:40Z"
    assert rows[1]["cnic_hmac"] == log.cnic_hash(CNIC) and rows[1]["reply_id"] == "7"
    out = io.StringIO()
    assert audit.export(out, "ndjson", since=T0 - DAY, pseudonymise=log.sender_hash) == 1
    (event,) = [json.loads(line) for line in out.getvalue().splitlines()]
    assert event["verdict"] == "ignored:duplicate" and event["inbound_id"] == 3
    assert event["sender"] == log.sender_hash("+923001234567") != "+923001234567"


def test_since_is_read_in_the_unit_time_zone() -> None:
    pk = "Asia/Karachi"
    assert parse_since("2025-01-01", now=0, zone=pk) == 1735671600.0  # 2024-12-31T19:00Z
    assert parse_since("2025-01-01T00:00:00+00:00", now=0, zone=pk) == 1735689600.0
    assert parse_since("7d", now=1735689600.0, zone=pk) == 1735689600.0 - 7 * 86400
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday", now=0, zone=pk)


def _cli(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    sub = parser.add_subparsers(dest="command")

    def config_arg(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", type=Path, required=True)

    audit.add_parsers(sub, config_arg)
    return parser.parse_args(argv)


def test_cli_export_and_purge(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    data = tmp_path / "data"
    conf = tmp_path / "appliance.toml"
    conf.write_text(f'[unit]\nname = "pesh-2"\ndata_dir = "{data}"\n', encoding="utf-8")
    s = Store(data / "state.db")
    log = Audit(SECRET)
    add(log, 1_000_000.0)  # 1970: far past any retention
    add(log, T0)
    s.close()

    out = tmp_path / "audit.ndjson"
    args = _cli(["audit", "export", "--config", str(conf), "--format", "ndjson",
                 "--out", str(out), "--since", "2020-01-01"])
    assert args.func(args) == 0
    assert stat.S_IMODE(out.stat().st_mode) == 0o600
    (event,) = [json.loads(line) for line in out.read_text(encoding="utf-8").splitlines()]
    assert event["unit"] == "pesh-2" and event["sender"] == "+923001234567"
    assert "exported 1 audit event(s)" in capsys.readouterr().err

    args = _cli(["audit", "export", "--config", str(conf)])
    assert args.func(args) == 0
    assert len(list(csv.DictReader(io.StringIO(capsys.readouterr().out)))) == 2

    args = _cli(["audit", "purge", "--config", str(conf)])
    assert args.func(args) == 0
    assert "purged 1 audit event(s)" in capsys.readouterr().err


def test_cli_export_without_a_store_says_where_it_looked(tmp_path: Path) -> None:
    from appliance.errors import StoreError

    conf = tmp_path / "appliance.toml"
    conf.write_text(f'[unit]\ndata_dir = "{tmp_path / "nowhere"}"\n', encoding="utf-8")
    args = _cli(["audit", "export", "--config", str(conf)])
    with pytest.raises(StoreError, match="nowhere/state.db"):
        args.func(args)


# --- the unit secret ----------------------------------------------------------------------

def test_secret_is_created_once_private_and_never_logged(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    path = tmp_path / "data" / "secret.key"
    key = load_or_create_secret(path)
    assert len(key) == 32
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.read_text(encoding="ascii") == key.hex() + "\n"  # provision.sh's format
    assert load_or_create_secret(path) == key
    assert [p.name for p in path.parent.iterdir()] == ["secret.key"]  # no temporary left
    assert all(key.hex() not in r.getMessage() for r in caplog.records)


def test_secret_creation_races_to_one_key(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    keys: list[bytes] = []
    threads = [threading.Thread(target=lambda: keys.append(load_or_create_secret(path)))
               for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    assert len(keys) == 8 and len(set(keys)) == 1


def test_secret_readable_by_others_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "secret.key"
    load_or_create_secret(path)
    os.chmod(path, 0o640)
    with pytest.raises(ConfigError) as err:
        load_or_create_secret(path)
    assert str(path) in str(err.value) and f"chmod 600 {path}" in str(err.value)


@pytest.mark.parametrize("content", ["", "abc\n", "Z" * 64, "00" * 31 + "\n"])
def test_malformed_secret_is_refused_without_being_quoted(tmp_path: Path, content: str) -> None:
    path = tmp_path / "secret.key"
    fd = os.open(path, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, content.encode())
    os.close(fd)
    with pytest.raises(ConfigError, match="64 lower-case hex digits") as err:
        load_or_create_secret(path)
    assert (not content.strip()) or content.strip() not in str(err.value)


def test_secret_symlink_is_refused(tmp_path: Path) -> None:
    real = tmp_path / "elsewhere.key"
    load_or_create_secret(real)
    link = tmp_path / "secret.key"
    link.symlink_to(real)
    with pytest.raises(ConfigError, match="symlink"):
        load_or_create_secret(link)


# --- logs never show a CNIC or a name -------------------------------------------------------

_DIGITS = str.maketrans({chr(z + i): str(i) for z in (0x660, 0x6F0) for i in range(10)})
_CNIC_RUN = re.compile(r"(?:\d[\s\-\u2010-\u2015.]?){12}\d")


def _sample_names() -> set[str]:
    names = set()
    for _, item in read_export(SAMPLE_REGISTRY):
        if isinstance(item, dict):
            names |= {str(item[k]).strip() for k in item
                      if k.startswith(("name", "parent")) and str(item[k]).strip()}
    return names


def test_service_logs_no_cnic_or_name_at_info(tmp_path: Path,
                                              caplog: pytest.LogCaptureFixture) -> None:
    from appliance.simulator import pdu as sim_pdu
    from tests.test_fuzz_inbound import CORPUS, Harness

    # Stamped now: an old stamp makes "help" a late message without a CNIC (not answered).
    SENT = datetime.now(timezone.utc).replace(microsecond=0)

    names = _sample_names()
    assert len(names) > 20
    caplog.set_level(logging.INFO)
    h = Harness(tmp_path, per_sender_hourly=2, loop_guard_count=20)
    cnics = demo_cnics()
    hit, removed, miss = cnics.hits[0], cnics.removed[0], cnics.misses[0]
    texts = [hit, f"{hit[:5]}-{hit[5:12]}-{hit[12]}", f"{hit} {miss}", removed, miss,
             hit.translate({48 + i: 0x6F0 + i for i in range(10)}), "help", f"{hit}99",
             cnics.misses[1], cnics.misses[2], cnics.misses[3]]  # over the hourly limit
    # (the corpus, stamped 2025, is now "late": only its CNIC queries reach the limits)
    try:
        for i, text in enumerate(texts):  # hits, duplicates, limit reply, over the limit
            for part in sim_pdu.encode_deliver(f"+9230012345{i % 2:02d}", text,
                                               smsc="+923000000099", timestamp=SENT):
                h.feed(part.pdu, modem="sim0")
        for sender in ("Jazz", "8558", "+923009999999"):  # refused senders asking a hit
            h.feed(sim_pdu.encode_deliver(sender, hit, smsc="+923000000099",
                                          timestamp=SENT)[0].pdu, modem="sim1")
        for c in CORPUS:
            h.feed(c["pdu"], modem="sim2")
        bad = sim_pdu.encode_deliver("+923001111111", hit, smsc="+923000000099",
                                     timestamp=SENT)[0].pdu[:-6]  # cut: quarantined
        h.feed(bad + "ZZ", modem="sim3")
    finally:
        h.close()
    said = " ".join(r.getMessage() for r in caplog.records)
    assert all(why in said for why in ("duplicate", "over the hourly limit", "alphanumeric",
                                       "own number", "quarantined"))
    # The checks below can fail: they see a CNIC in any writing, and a name.
    assert _CNIC_RUN.search(f"x {hit[:5]}-{hit[5:12]}-{hit[12]} y")
    assert _CNIC_RUN.search(texts[5].translate(_DIGITS))
    assert not _CNIC_RUN.search("inbound [1, 2, 3] at 2025-03-14 09:26:53")
    for record in caplog.records:
        if record.levelno < logging.INFO:
            continue
        message = record.getMessage()
        if record.exc_info:
            message += logging.Formatter().formatException(record.exc_info)
        assert not _CNIC_RUN.search(message.translate(_DIGITS)), message
        assert not any(name in message for name in names), message
