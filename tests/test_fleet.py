"""The fleet link against a real mosquitto (started by the tests, on the shipped config).

The unit is the real process (``python -m appliance run``) on simulated modems; the centre
is the real ``fleet`` tooling (its archive de-duplicates by report id). Figures are
printed as FIGURES lines.
"""

from __future__ import annotations

import json
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_dict
from appliance.errors import FleetError
from appliance.fleet import topics
from appliance.fleet.centre import HitArchive, collect_hits
from appliance.fleet.mqtt import connect_blocking, make_client
from appliance.simulator.bank import Simulator
from appliance.registry.importer import demo_cnics
from tests.conftest import ROOT, wait_until
from tests.fault_support import Crowd, Unit, show_figures
from tests.fleet_support import Broker, broker  # noqa: F401  (fixture)

HITS = demo_cnics().hits


def settings(b: Broker, user: str | None, **extra: Any) -> Any:
    return config_from_dict({"fleet": b.fleet(user, **extra)}).fleet


def outbox_count(state_db: Path) -> int:
    con = sqlite3.connect(f"file:{state_db}?mode=ro", uri=True, timeout=30)
    try:
        return int(con.execute("SELECT COUNT(*) FROM fleet_hit").fetchone()[0])
    except sqlite3.OperationalError:  # the unit has not made the table yet
        return -1
    finally:
        con.close()


class Collector:
    """The centre's ``fleet hits`` collector, following, in a thread of the test."""

    def __init__(self, b: Broker, archive: HitArchive) -> None:
        self.cfg = settings(b, "centre")
        self.archive = archive
        self.stop = threading.Event()
        self.ready = threading.Event()
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        try:
            collect_hits(self.cfg, self.archive, client_id="nsor-centre-hits", idle_s=0,
                         follow=True, stop=self.stop, ready=self.ready)
        except BaseException as exc:  # shown by the test
            self.error = exc

    def __enter__(self) -> Collector:
        self.thread.start()
        assert wait_until(lambda: self.ready.is_set() or not self.thread.is_alive(), 20)
        assert self.error is None, self.error
        return self

    def __exit__(self, *_exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def make_session(b: Broker, archive: HitArchive) -> None:
    """Create the collector's persistent session once: from now on the broker keeps hit
    reports for it while it is away (what the centre's collector service does)."""
    collect_hits(settings(b, "centre"), archive, client_id="nsor-centre-hits", idle_s=0.2)


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(tmp_path / "ports", 2, seed=5, time_scale=0.05) as s:
        yield s


# -- authentication and ACLs ------------------------------------------------------------


def test_credentials_tls_and_acls_are_enforced(broker: Broker, tmp_path: Path) -> None:
    # Wrong password: refused.
    good = settings(broker, "unit-a")
    wrong = tmp_path / "wrong.password"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o600)
    bad = settings(broker, "unit-a", password_file=str(wrong))
    with pytest.raises(FleetError, match="refused"):
        connect_blocking(make_client(bad, "unit-a"), bad, 10)
    # A name the broker does not know: refused.
    stranger = settings(broker, None, username="nobody", password_file=str(wrong))
    with pytest.raises(FleetError, match="refused"):
        connect_blocking(make_client(stranger, "nobody"), stranger, 10)
    # Plaintext on the TLS listener: no MQTT session at all.
    plain = settings(broker, "unit-a", tls=False)
    with pytest.raises(FleetError):
        connect_blocking(make_client(plain, "unit-a"), plain, 5)
    # Certificate listener: no certificate, no session; a CA-signed one is the identity.
    nocert = settings(broker, "unit-a", broker_port=broker.cert_port)
    with pytest.raises(FleetError):
        connect_blocking(make_client(nocert, "unit-a"), nocert, 5)

    # The centre listens to everything the units and the centre say.
    seen: list[tuple[str, bytes]] = []
    centre_cfg = settings(broker, "centre")
    centre = make_client(centre_cfg, "centre-spy")
    centre.on_message = lambda _c, _u, m: seen.append((m.topic, m.payload))
    connect_blocking(centre, centre_cfg, 10)
    got_sub = threading.Event()
    centre.on_subscribe = lambda *_a: got_sub.set()
    centre.subscribe([("nsor/units/#", 1), ("nsor/centre/#", 1)])
    assert got_sub.wait(10)

    unit_a = make_client(good, "unit-a")
    connect_blocking(unit_a, good, 10)
    cert_cfg = settings(broker, "unit-c", cert=True)
    unit_c = make_client(cert_cfg, "unit-c")
    connect_blocking(unit_c, cert_cfg, 10)  # no password: the certificate's CN is the user
    try:
        forged = [unit_a.publish("nsor/units/unit-b/hits", b'{"id":"forged-1"}', qos=1),
                  unit_a.publish("nsor/centre/registry", b'{"version":999}', qos=1,
                                 retain=True),
                  unit_c.publish("nsor/units/unit-a/status", b'{"forged":1}', qos=1)]
        honest = [unit_a.publish("nsor/units/unit-a/hits", b'{"id":"honest-a"}', qos=1),
                  unit_c.publish("nsor/units/unit-c/hits", b'{"id":"honest-c"}', qos=1)]
        for info in forged + honest:
            info.wait_for_publish(10)
        # The honest ones arrive; they were sent after the forged ones on the same
        # connections, so once they are here the forged ones would be too.
        assert wait_until(lambda: len(seen) >= 2, 10), seen
        topics_seen = sorted(t for t, _ in seen)
        assert topics_seen == ["nsor/units/unit-a/hits", "nsor/units/unit-c/hits"], seen
        # A unit may read the centre's topics, and nothing else.
        unit_msgs: list[str] = []
        unit_a.on_message = lambda _c, _u, m: unit_msgs.append(m.topic)
        unit_a.subscribe([("nsor/units/#", 1)])
        unit_c.publish("nsor/units/unit-c/status", b"{}", qos=1).wait_for_publish(10)
        assert wait_until(lambda: any(t.endswith("unit-c/status") for t, _ in seen), 10)
        assert unit_msgs == []
    finally:
        for c in (unit_a, unit_c, centre):
            c.disconnect()
            c.loop_stop()


@pytest.mark.parametrize("case, expected", [
    ("wrong CA", "cannot reach the broker"),
    ("wrong password", "broker refused the connection: Not authorized"),
    ("plaintext", "closed before the broker answered"),
])
def test_the_link_says_why_it_cannot_connect(broker: Broker, tmp_path: Path, case: str,
                                             expected: str) -> None:
    """What the fleet_link alarm and the status snapshot will name, per cause."""
    from appliance.service.alarms import Alarms
    from appliance.fleet.link import FleetLink
    from appliance.state.store import Store
    from tests.fleet_support import Pki

    section = broker.fleet("unit-x")
    if case == "wrong CA":
        section["ca_file"] = str(Pki(tmp_path / "other-ca").ca)
    elif case == "wrong password":
        bad = tmp_path / "bad.password"
        bad.write_text("nope\n")
        bad.chmod(0o600)
        section["password_file"] = str(bad)
    else:
        section["tls"] = False
    store = Store(tmp_path / "state.db")
    link = FleetLink(config_from_dict({"fleet": section}).fleet, "unit-x", alarms=Alarms(),
                     hash_number=lambda n: n, version="test")
    link.start(lambda: {})
    try:
        assert wait_until(lambda: expected in link.status()["last_error"], 15), link.status()
        assert not link.status()["connected"]
    finally:
        link.stop()
        store.close()


# -- hit reports: broker restart, link cut, kill -9 --------------------------------------


def test_hit_reports_survive_broker_restarts_without_loss(
        broker: Broker, tmp_path: Path, sim: Simulator, sample_registry: Path,
        request: pytest.FixtureRequest, record_property: Any) -> None:
    """60 citizens ask about registered offenders while the broker restarts twice."""
    archive = HitArchive(tmp_path / "centre" / "hits.db")
    make_session(broker, archive)
    crowd = Crowd.make(60, sample_registry, seed=7, hit_share=1.0)
    unit = Unit(tmp_path, sim, sections={"fleet": broker.fleet("fault")})
    restarts = 0
    unit.start()
    try:
        with Collector(broker, archive) as collector:
            # Three waves of 20; the broker restarts while each of the first two is still
            # being reported (some acknowledged, some in flight, some not yet written).
            for wave in range(3):
                for i in range(wave * 20, wave * 20 + 20):
                    crowd.send(sim, i, i % 2)
                if wave < 2:
                    assert wait_until(lambda: archive.added >= wave * 20 + 3, 30), \
                        unit.log_tail()
                    broker.restart()
                    restarts += 1
            assert wait_until(lambda: crowd.answered(sim) == 60, 60), unit.log_tail()
            assert wait_until(lambda: archive.added >= 60 and outbox_count(unit.state_db) == 0,
                              60), (archive.added, outbox_count(unit.state_db),
                                    unit.log_tail())
            assert collector.error is None, collector.error
            # A duplicate (as a unit resends after a lost PUBACK) is dropped by its id.
            some = archive.since(0)[0]
            dup_cfg = settings(broker, "fault")
            dup = make_client(dup_cfg, "fault-dup")
            connect_blocking(dup, dup_cfg, 10)
            payload = dict(some)
            payload.pop("received_at")
            before = archive.duplicates
            dup.publish("nsor/units/fault/hits", topics.encode(payload),
                        qos=1).wait_for_publish(10)
            dup.disconnect()
            dup.loop_stop()
            assert wait_until(lambda: archive.duplicates > before, 10)
    finally:
        assert unit.stop() == 0, unit.log_tail()
    reports = archive.since(0)
    assert len(reports) == 60 == len({r["id"] for r in reports})
    # The operator's view of the same archive: `fleet hits`, as CSV.
    out = subprocess.run(
        [sys.executable, "-m", "appliance", "fleet", "hits", "--config",
         str(broker.centre_toml(tmp_path / "centre.toml")), "--db", str(archive.path),
         "--no-collect", "--since", "1h", "--format", "csv"],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0].startswith("id,unit,district,cnic,time") and len(lines) == 61
    assert "60 hit report(s) since" in out.stderr
    assert sorted(r["cnic"] for r in reports) == sorted(crowd.texts)
    assert all(r["unit"] == "fault" and "number" not in r and len(r["number_hash"]) == 64
               for r in reports)
    show_figures(request, record_property, "fleet_broker_restart", {
        "hits": 60, "broker_restarts": restarts, "received": archive.added,
        "lost": 60 - archive.added, "duplicates_dropped": archive.duplicates})


def test_backlog_after_a_link_cut_is_delivered_and_kill9_loses_nothing(
        broker: Broker, tmp_path: Path, sim: Simulator, sample_registry: Path,
        request: pytest.FixtureRequest, record_property: Any) -> None:
    """The link is cut (broker down) while 20 citizens get hits, on top of 2,000 older
    reports already waiting in state.db (written through the outbox's own API, so that the
    delivery takes long enough to kill the unit in the middle of it). The broker comes
    back; the unit is killed with SIGKILL while it delivers, restarted, and every report
    reaches the centre exactly once after de-duplication."""
    from appliance.fleet.hits import HitOutbox
    from appliance.state.store import Store, write_txn

    archive = HitArchive(tmp_path / "centre" / "hits.db")
    make_session(broker, archive)
    broker.stop()
    state = Store(tmp_path / "data" / "state.db")
    try:
        outbox = HitOutbox()
        with write_txn():
            for i in range(2000):
                outbox.add(f"old-{i:04d}", topics.encode(
                    {"v": 1, "id": f"old-{i:04d}", "unit": "fault", "cnic": HITS[0]}))
    finally:
        state.close()
    crowd = Crowd.make(20, sample_registry, seed=8, hit_share=1.0)
    unit = Unit(tmp_path, sim, sections={"fleet": broker.fleet("fault")})
    unit.start()
    try:
        for i in range(20):
            crowd.send(sim, i, i % 2)
        assert wait_until(lambda: crowd.answered(sim) == 20, 60), unit.log_tail()
        assert wait_until(lambda: outbox_count(unit.state_db) == 2020, 10)
        broker.start()
        began = time.monotonic()
        with Collector(broker, archive) as collector:
            assert wait_until(lambda: outbox_count(unit.state_db) < 2020, 30), unit.log_tail()
            unit.kill()  # SIGKILL, in the middle of the delivery
            left_at_kill = outbox_count(unit.state_db)
            unit.start()
            assert wait_until(lambda: outbox_count(unit.state_db) == 0, 60), unit.log_tail()
            assert wait_until(lambda: archive.added >= 2020, 30), archive.added
            took = time.monotonic() - began
            assert collector.error is None
    finally:
        assert unit.stop() == 0, unit.log_tail()
    ids = {r["id"] for r in archive.since(0)}
    assert len(ids) == 2020
    assert {f"old-{i:04d}" for i in range(2000)} <= ids
    assert crowd.tally(sim).wrong == []
    show_figures(request, record_property, "fleet_backlog_kill9", {
        "backlog": 2020, "left_at_kill": left_at_kill, "received": len(ids),
        "lost": 2020 - len(ids), "duplicates_dropped": archive.duplicates,
        "delivery_s": took})


# -- isolation: the citizen never waits for the link -------------------------------------


def _burst(tmp_path: Path, registry: Path, fleet: dict[str, Any] | None) -> dict[str, Any]:
    crowd = Crowd.make(200, registry, seed=11, hit_share=0.5)
    (tmp_path / "data").mkdir(parents=True)
    shutil.copy(registry, tmp_path / "data" / "registry.db")
    with Simulator(tmp_path / "ports", 4, seed=11, time_scale=0.01) as sim:
        for m in sim.modems:
            m.faults.cmgs_latency = 3.0
        unit = Unit(tmp_path, sim, sections={"fleet": fleet} if fleet else None)
        unit.start()
        try:
            assert wait_until(lambda: "service started" in unit.log_text(), 30), unit.log_tail()
            sent_at: dict[str, float] = {}
            for i in range(200):
                sent_at[crowd.numbers[i]] = time.monotonic()
                crowd.send(sim, i, i % 4)
            latencies: dict[str, float] = {}

            def done() -> bool:
                for num in crowd.numbers:
                    if num not in latencies and sim.inbox(num):
                        latencies[num] = time.monotonic() - sent_at[num]
                return len(latencies) == 200
            assert wait_until(done, 120, interval=0.01), unit.log_tail()
            alarm = None
            if fleet:
                alarm = wait_until(lambda: "ALARM fleet_link" in unit.log_text(), 20)
        finally:
            assert unit.stop() == 0, unit.log_tail()
        tally = crowd.tally(sim)
        replies = {num: sim.inbox(num) for num in crowd.numbers}
    ordered = sorted(latencies.values())
    return {"tally": tally, "replies": replies, "p50": ordered[99], "p99": ordered[197],
            "alarm": alarm, "state_db": unit.state_db}


def test_a_200_sms_burst_is_answered_exactly_as_without_a_link(
        tmp_path: Path, sample_registry: Path, request: pytest.FixtureRequest,
        record_property: Any) -> None:
    """Broker down (nothing listens on its port): same replies, same counts, no alarm
    before offline_alarm_after_s, then the fleet_link alarm; hit reports wait on disk."""
    from tests.fleet_support import free_port

    none = _burst(tmp_path / "nolink", sample_registry, None)
    down = {"enabled": True, "broker_host": "127.0.0.1", "broker_port": free_port(),
            "tls": False, "offline_alarm_after_s": 10, "reconnect_min_s": 0.2,
            "reconnect_max_s": 1}
    link = _burst(tmp_path / "link", sample_registry, down)
    for run in (none, link):
        assert run["tally"].answered == 200 and not run["tally"].wrong, run["tally"]
        assert run["tally"].duplicates == 0
    assert link["replies"] == none["replies"]
    assert link["alarm"], "the fleet_link alarm was not raised with the broker down"
    waiting = outbox_count(link["state_db"])
    hits = sum(1 for texts in none["replies"].values() if "خبردار" in texts[0])
    assert waiting >= hits > 0
    show_figures(request, record_property, "fleet_isolation", {
        "sms": 200, "answered_no_link": none["tally"].answered,
        "answered_broker_down": link["tally"].answered,
        "differences": sum(link["replies"][n] != none["replies"][n] for n in none["replies"]),
        "p50_no_link_s": none["p50"], "p50_broker_down_s": link["p50"],
        "p99_no_link_s": none["p99"], "p99_broker_down_s": link["p99"],
        "hit_reports_waiting": waiting})


# -- pushed updates, heartbeats, the watch table -----------------------------------------


def test_publish_notify_makes_the_unit_sync_at_once_and_watch_shows_it(
        broker: Broker, tmp_path: Path, sim: Simulator,
        request: pytest.FixtureRequest, record_property: Any) -> None:
    from appliance.registry.lookup import Registry
    from tests.test_registry_support import Env, people, write_export

    env = Env(tmp_path / "pub")
    try:
        env.publish(people(30))
        env.unit().sync()  # the unit's registry.db, version 1
        unit_db = env.db
        centre = broker.centre_toml(tmp_path / "centre.toml")
        unit = Unit(tmp_path, sim, sections={
            "fleet": broker.fleet("fault", heartbeat_min_interval_s=1),
            "registry": {"path": str(unit_db), "repository_url": env.server.url,
                         "trusted_root": str(env.root), "max_age_hours": 24}})
        unit.start()
        try:
            def watch() -> dict[str, Any]:
                out = subprocess.run(
                    [sys.executable, "-m", "appliance", "fleet", "watch", "--config",
                     str(centre), "--once", "--json", "--wait-s", "2"],
                    cwd=ROOT, capture_output=True, text=True, timeout=30)
                assert out.returncode == 0, out.stderr
                rows = json.loads(out.stdout)
                return next((r for r in rows if r["unit"] == "fault"), {})
            assert wait_until(lambda: watch().get("registry") == 1, 30), unit.log_tail()
            row = watch()
            assert row["online"] is True and row["modems_up"] == 2 and row["version"]
            # Version 2 withdraws person 0: published with --notify, the unit syncs now,
            # not at its nightly time (check_interval_minutes is 0).
            export = write_export(tmp_path / "v2.csv", people(29, start=1))
            began = time.monotonic()
            out = subprocess.run(
                [sys.executable, "-m", "appliance", "registry", "publish", str(export),
                 "--repo", str(env.publisher.repo_dir), "--keys", str(tmp_path / "pub" / "keys"),
                 "--notify", str(centre)], cwd=ROOT, capture_output=True, text=True,
                timeout=60)
            assert out.returncode == 0, out.stderr
            published = time.monotonic()

            def version() -> int | None:
                with Registry(unit_db) as reg:
                    return reg.info().version
            assert wait_until(lambda: version() == 2, 30), unit.log_tail()
            synced = time.monotonic()
            assert "syncing the registry now (hint v2, installed v1)" in unit.log_text()
            with Registry(unit_db) as reg:
                assert reg.lookup(people(1)[0]["cnic"]) is None
            assert wait_until(lambda: watch().get("registry") == 2, 30)
            # A change that matters (a modem loses its network) goes out before the
            # heartbeat interval (300 s) is up.
            sim.modems[1].faults.registered = False
            assert wait_until(lambda: watch().get("modems_down") == 1, 40), unit.log_tail()
            # Offline: the will flips the flag, the last status stays.
            unit.kill()
            assert wait_until(lambda: watch().get("online") is False, 20)
            assert watch().get("registry") == 2
        finally:
            unit.stop()
    finally:
        env.server.close()
    show_figures(request, record_property, "fleet_push_one_unit", {
        "publish_cmd_s": published - began, "publish_start_to_synced_s": synced - began})
