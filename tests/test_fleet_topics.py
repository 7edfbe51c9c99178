"""The fleet's pure core: topics, heartbeat, hit report, hint; the centre's table and
archive; the [fleet] configuration checks. No broker needed."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from appliance.config import config_from_dict
from appliance.errors import ConfigError
from appliance.fleet import topics
from appliance.fleet.centre import HitArchive, write_hits
from appliance.rules.when import parse_since
from appliance.fleet.watch import FleetView


def snapshot(**over: object) -> dict[str, object]:
    snap: dict[str, object] = {
        "unit": "lhr-01", "time": 1_800_000_000.5, "uptime_s": 3600.2,
        "modems": [{"name": "sim1", "state": "ready", "balance": 120.5, "queue": 2},
                   {"name": "sim2", "state": "no network", "balance": None, "queue": 0}],
        "queue": {"pending": 2, "unassigned": 0},
        "counts": {"inbound": {"answered": 40, "ignored": 2}, "outbound": {"sent": 39}},
        "registry": {"state": "ok", "version": 12, "records": 900, "age_s": 5000.7},
        "alarms": [{"kind": "modem_down:sim2", "message": "x", "since": 1.0, "count": 1}],
    }
    snap.update(over)
    return snap


def test_topics_stay_under_the_units_prefix() -> None:
    t = topics.UnitTopics("nsor", "lhr-01")
    assert (t.status, t.online, t.hits, t.centre) == (
        "nsor/units/lhr-01/status", "nsor/units/lhr-01/online", "nsor/units/lhr-01/hits",
        "nsor/centre/#")
    assert topics.split_unit_topic("nsor", t.hits) == ("lhr-01", "hits")
    for other in ("nsor/centre/registry", "nsor/units/x", "other/units/a/hits",
                  "nsor/units//hits", "nsor/units/a/b/c"):
        assert topics.split_unit_topic("nsor", other) is None


def test_heartbeat_is_compact_and_says_what_the_centre_watches() -> None:
    hb = topics.heartbeat(snapshot(), version="1.2.3", backlog=4)
    assert hb["sw"] == "1.2.3" and hb["unit"] == "lhr-01"
    assert hb["reg"] == {"v": 12, "state": "ok", "ok": 1, "age_s": 5000, "n": 900}
    assert hb["n_alarms"] == 1
    assert hb["modems"]["up"] == 1 and hb["modems"]["down"] == 1
    assert hb["modems"]["m"][0] == {"name": "sim1", "state": "ready", "bal": 120.5, "q": 2}
    assert hb["queue"] == 2 and hb["alarms"] == ["modem_down:sim2"] and hb["hits_wait"] == 4
    assert hb["in"] == 42 and hb["out"] == {"sent": 39}
    assert len(topics.encode(hb)) < 400


def test_heartbeat_change_ignores_the_clock_but_not_the_state() -> None:
    key = topics.heartbeat_change_key(topics.heartbeat(snapshot(), version="1", backlog=0))
    later = snapshot(time=1_800_000_100.0, uptime_s=3700.0,
                     registry={"state": "ok", "version": 12, "records": 900, "age_s": 5100},
                     counts={"inbound": {"answered": 41}, "outbound": {"sent": 40}})
    assert topics.heartbeat_change_key(topics.heartbeat(later, version="1", backlog=0)) == key
    for changed in (snapshot(alarms=[]),
                    snapshot(registry={"state": "ok", "version": 13, "records": 900}),
                    snapshot(queue={"pending": 9})):
        hb = topics.heartbeat(changed, version="1", backlog=0)
        assert topics.heartbeat_change_key(hb) != key


def test_hit_report_follows_the_policy() -> None:
    full = topics.hit_report(report_id="r1", unit="u", cnic="3520212345671", at=1.23456,
                             fields=topics.HIT_FIELDS, district="Lahore", number_hash="h",
                             modem="sim1")
    assert full == {"v": 1, "id": "r1", "unit": "u", "cnic": "3520212345671",
                    "district": "Lahore", "at": 1.235, "number_hash": "h", "modem": "sim1"}
    bare = topics.hit_report(report_id="r2", unit="u", cnic="3520212345671", at=1.0,
                             fields=(), number_hash="h")
    assert bare == {"v": 1, "id": "r2", "unit": "u"}
    clear = topics.hit_report(report_id="r3", unit="u", cnic="1", at=1.0, fields=("cnic",),
                              number="+923001234567")
    assert clear["number"] == "+923001234567"


@pytest.mark.parametrize("payload, version", [
    (topics.hint_payload(7, "2026-12-01T00:00:00+00:00"), 7),
    (b'{"version": 3}', 3),
    (b'{"version": -1}', None), (b'{"version": true}', None), (b'{"version": "9"}', None),
    (b"\xff\xfe", None), (b"[]", None), (b"", None),
])
def test_a_hint_is_parsed_as_untrusted_input(payload: bytes, version: int | None) -> None:
    assert topics.parse_hint(payload) == version


def test_a_hint_triggers_a_sync_unless_the_unit_already_has_that_version() -> None:
    assert topics.hint_wants_sync(5, 4)
    assert not topics.hint_wants_sync(5, 5)
    assert not topics.hint_wants_sync(4, 5)     # an old retained hint: nothing to do
    assert topics.hint_wants_sync(None, 5)      # unreadable: look anyway (TUF decides)
    assert topics.hint_wants_sync(5, None)      # no registry yet


def test_archive_drops_duplicates_and_trusts_the_topic_for_the_unit(tmp_path: Path) -> None:
    archive = HitArchive(tmp_path / "hits.db")
    report = topics.encode({"v": 1, "id": "a1", "unit": "forged", "cnic": "1", "at": 100.0})
    assert archive.add("lhr-01", report, 200.0) is not None
    assert archive.add("lhr-01", report, 201.0) is None
    assert archive.add("lhr-01", b"not json", 202.0) is None
    assert archive.add("lhr-01", b'{"id": ""}', 202.0) is None
    assert (archive.added, archive.duplicates, archive.rejected) == (1, 1, 2)
    rows = archive.since(50.0)
    assert [r["unit"] for r in rows] == ["lhr-01"]
    assert archive.since(150.0) == []
    out = io.StringIO()
    assert write_hits(rows, "csv", out) == 1
    header, line = out.getvalue().splitlines()
    assert header.startswith("id,unit,district,cnic,time,at")
    assert "1970-01-01T00:01:40+00:00" in line
    out = io.StringIO()
    write_hits(rows, "ndjson", out)
    assert json.loads(out.getvalue())["id"] == "a1"
    archive.close()


def test_since_accepts_ages_and_iso_times() -> None:
    assert parse_since("24h", now=100_000.0) == 100_000.0 - 86_400
    assert parse_since("90m", now=10_000.0) == 10_000.0 - 5400
    assert parse_since("2026-12-01", now=0) == 1_796_083_200.0
    assert parse_since("2026-12-01T05:00+05:00", now=0) == 1_796_083_200.0
    with pytest.raises(ConfigError, match="--since"):
        parse_since("yesterday", now=0)


def test_watch_table_keeps_the_last_status_of_an_offline_unit() -> None:
    view = FleetView("nsor")
    hb = topics.heartbeat(snapshot(), version="1.0", backlog=0)
    view.on_message("nsor/units/lhr-01/status", topics.encode(hb), 1_800_000_010.0)
    view.on_message("nsor/units/lhr-01/online", topics.OFFLINE, 1_800_000_020.0)
    view.on_message("nsor/centre/registry", b"{}", 0)
    (row,) = view.rows(1_800_000_030.5)
    assert row["online"] is False and row["registry"] == 12 and row["modems_down"] == 1
    assert row["last_seen_s"] == 30.5  # from the heartbeat's own time
    assert row["alarms"] == ["modem_down:sim2"]


def test_fleet_config_is_checked_as_a_whole() -> None:
    with pytest.raises(ConfigError) as caught:
        config_from_dict({"fleet": {"enabled": True, "cert_file": "a.crt",
                                    "reconnect_min_s": 50, "reconnect_max_s": 10,
                                    "hit_fields": ["cnic", "phone"]}})
    text = "\n".join(caught.value.problems)
    assert "fleet.hit_fields[1]" in text
    with pytest.raises(ConfigError) as caught:  # cross checks run once the values are valid
        config_from_dict({"fleet": {"enabled": True, "cert_file": "a.crt", "reconnect_min_s": 50,
                            "reconnect_max_s": 10}})
    text = "\n".join(caught.value.problems)
    assert "fleet.broker_host" in text and "fleet.key_file" in text
    assert "fleet.reconnect_max_s" in text
    assert config_from_dict({}).fleet.enabled is False
