"""Unit-side sync against a real HTTP server on 127.0.0.1 serving a signed repository.

Each failure case checks the three promises of issue 4: the right error class (and alarm),
the installed registry untouched and still answering, and the failure recorded in the
status file.
"""

from __future__ import annotations

import shutil
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tuf.api.metadata import Metadata, Root
from tuf.api.serialization.json import JSONSerializer

from appliance.errors import FreezeError, RollbackError, SignatureError, SyncError
from appliance.registry.lookup import Registry
from appliance.registry.status import sync_status
from appliance.errors import ClockNotTrusted
from tests.test_registry_support import Env, Server, env, free_port_url, people, person

__all__ = ["env"]


def installed_version(e: Env) -> int | None:
    with Registry(e.db) as registry:
        return registry.info().version


def assert_kept(e: Env, version: int, kind: str) -> None:
    """The failure left version ``version`` answering, alarmed ``kind`` and recorded it."""
    assert installed_version(e) == version
    with Registry(e.db) as registry:
        assert registry.lookup(person(1)["cnic"]) is not None
    assert e.alarms and e.alarms[-1][0] == kind
    status = sync_status(e.db)
    assert status["last_error"]["kind"] == kind
    assert status["consecutive_failures"] >= 1 and not status["healthy"]


def test_happy_path_first_sync_installs_the_snapshot(env: Env) -> None:
    env.publish(people(50) + [person(99, status="removed")])
    result = env.unit().sync()
    assert (result.action, result.from_version, result.to_version) == ("snapshot", None, 1)
    assert result.record_count == 50
    with Registry(env.db) as registry:
        record = registry.lookup(person(6)["cnic"])
        assert record is not None and record.name_en == "Test Person 6"
        assert record.name_ur == "ٹیسٹ شخص 6" and record.relation == "s/o"
        assert registry.lookup(person(99)["cnic"]) is None          # removed: never shipped
        assert registry.lookup("3000000000000") is None
        info = registry.info()
    assert info.version == 1 and info.record_count == 50 and info.source == env.server.url
    assert info.signed_at is not None and info.expires_at is not None
    # The flashed root was copied into the unit's metadata directory on first use.
    assert (env.db.with_suffix(".tuf") / "root_history" / "1.root.json").is_file()
    status = sync_status(env.db)
    assert status["healthy"] and status["version"] == 1 and status["last_error"] is None
    assert status["last_success"] is not None and not env.alarms
    again = env.unit().sync()
    assert again.action == "current" and again.to_version == 1


def test_delta_chain_from_the_installed_version(env: Env) -> None:
    base = people(40)
    env.publish(base)
    env.unit().sync()
    v2 = base[:-5] + [person(1000)]                                   # 5 removed, 1 new
    env.publish(v2)
    v3 = [person(i, variant=1) if i < 3 else r for i, r in enumerate(v2)]  # 3 renamed
    env.publish(v3)
    before = len(env.server.faults.requests)
    result = env.unit().sync()
    assert (result.action, result.from_version, result.to_version) == ("delta", 1, 3)
    assert result.record_count == 36
    fetched = env.server.faults.requests[before:]
    assert any("delta-00000001-00000002" in p for p in fetched)
    assert any("delta-00000002-00000003" in p for p in fetched)
    assert not any("snapshot-" in p for p in fetched)
    with Registry(env.db) as registry:
        renamed = registry.lookup(person(1)["cnic"])
        assert renamed is not None and renamed.name_en == "Test Person 1 v1"
        assert registry.lookup(person(1000)["cnic"]) is not None
        assert registry.lookup(person(39)["cnic"]) is None
        assert registry.info().record_count == 36


def test_snapshot_fallback_when_a_delta_is_missing(env: Env) -> None:
    env.publish(people(30))
    env.unit().sync()
    env.publish(people(31))
    env.publish(people(32))
    env.target("delta-00000002-00000003").unlink()                  # gone from the server
    result = env.unit().sync()
    assert (result.action, result.to_version, result.record_count) == ("snapshot", 3, 32)
    assert not env.alarms


def test_snapshot_when_the_index_no_longer_lists_the_deltas(env: Env) -> None:
    env.publish(people(30))
    env.unit().sync()
    env.publisher.keep_deltas = 0
    env.publish(people(31))
    index = env.publisher.current_index()
    assert index is not None and index.deltas == ()
    assert env.unit().sync().action == "snapshot"


def test_tampered_snapshot_is_refused(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publish(people(12))
    shutil.rmtree(env.db.with_suffix(".incoming"))
    env.publisher.keep_deltas = 0
    env.publish(people(13))
    snap = env.target("snapshot-00000003")
    data = bytearray(snap.read_bytes())
    data[len(data) // 2] ^= 0xFF
    snap.write_bytes(bytes(data))
    with pytest.raises(SignatureError):
        env.unit().sync()
    assert_kept(env, 1, "registry_signature")


def test_tampered_delta_is_refused_not_skipped(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publish(people(11))
    delta = env.target("delta-00000001-00000002")
    data = bytearray(delta.read_bytes())
    data[-5] ^= 0x01                                                # the gzip CRC
    delta.write_bytes(bytes(data))
    with pytest.raises(SignatureError):
        env.unit().sync()
    assert_kept(env, 1, "registry_signature")


def test_tampered_metadata_signature_is_refused(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publish(people(11))
    ts = env.public / "metadata" / "timestamp.json"
    md = Metadata.from_file(str(ts))
    md.signed.version += 1                                          # signature now wrong
    md.to_file(str(ts), JSONSerializer(compact=False))
    with pytest.raises(SignatureError):
        env.unit().sync()
    assert_kept(env, 1, "registry_signature")


def test_truncated_download_keeps_the_registry(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publisher.keep_deltas = 0
    env.publish(people(20))
    env.server.faults.cut.add("snapshot-00000002")
    with pytest.raises(SyncError):
        env.unit().sync()
    assert_kept(env, 1, "registry_sync")
    env.server.faults.cut.clear()
    assert env.unit().sync().to_version == 2                        # and it recovers


def test_short_file_is_a_length_mismatch(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publish(people(20))
    delta = env.target("delta-00000001-00000002")
    delta.write_bytes(delta.read_bytes()[:20])
    with pytest.raises(SignatureError):
        env.unit().sync()
    assert_kept(env, 1, "registry_signature")


def test_rollback_to_an_older_signed_version_is_refused(env: Env) -> None:
    env.publish(people(10))
    old_public = env.snapshot_public("public-v1")
    env.publish(people(12))
    env.unit().sync()
    assert installed_version(env) == 2
    old = Server(old_public)
    try:
        with pytest.raises(RollbackError):
            env.unit(old.url).sync()
        assert_kept(env, 2, "registry_rollback")
        # Even with the unit's TUF metadata lost, the registry version itself is checked.
        shutil.rmtree(env.db.with_suffix(".tuf"))
        with pytest.raises(RollbackError):
            env.unit(old.url).sync()
        assert_kept(env, 2, "registry_rollback")
    finally:
        old.close()


def test_expired_timestamp_is_a_freeze(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publish(people(11))
    env.publisher.resign_timestamp(datetime.now(timezone.utc) - timedelta(minutes=1))
    with pytest.raises(FreezeError):
        env.unit().sync()
    assert_kept(env, 1, "registry_freeze")
    env.publisher.resign_timestamp()                                # the publisher recovers
    assert env.unit().sync().to_version == 2


def test_key_rotation_is_followed_through_the_signed_root_chain(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publisher.rotate("root")
    env.publisher.rotate("timestamp")
    env.publisher.rotate("targets")
    env.publish(people(11))
    result = env.unit().sync()                                      # unit still has root v1
    assert result.to_version == 2
    assert (env.db.with_suffix(".tuf") / "root_history" / "4.root.json").is_file()


def test_root_signed_only_by_a_new_key_is_refused(env: Env) -> None:
    from securesystemslib.signer import CryptoSigner
    env.publish(people(10))
    env.unit().sync()
    current = Metadata[Root].from_file(str(env.public / "metadata" / "1.root.json"))
    intruder = CryptoSigner.generate_ed25519()
    root = current.signed
    root.version = 2
    for keyid in list(root.roles["root"].keyids):
        root.revoke_key(keyid, "root")
    root.add_key(intruder.public_key, "root")
    forged = Metadata(root)
    forged.sign(intruder)
    forged.to_file(str(env.public / "metadata" / "2.root.json"), JSONSerializer())
    with pytest.raises(SignatureError):
        env.unit().sync()
    assert_kept(env, 1, "registry_signature")


def test_server_down_keeps_the_registry_and_counts_failures(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    down = free_port_url()
    for attempt in (1, 2):
        with pytest.raises(SyncError):
            env.unit(down).sync()
        assert sync_status(env.db)["consecutive_failures"] == attempt
    assert_kept(env, 1, "registry_sync")
    assert "network" in env.alarms[-1][1]
    cleared: list[str] = []
    env.unit(on_clear=cleared.append).sync()
    assert "registry_sync" in cleared and "registry_signature" in cleared
    status = sync_status(env.db)
    assert status["healthy"] and status["last_error"]["kind"] == "registry_sync"


def test_removals_are_honoured_by_delta_and_snapshot(env: Env) -> None:
    rows = people(20)
    env.publish(rows)
    env.unit().sync()
    gone, withdrawn = rows[4]["cnic"], rows[5]["cnic"]
    v2 = [r for r in rows if r["cnic"] != gone]
    v2 = [dict(r, status="removed") if r["cnic"] == withdrawn else r for r in v2]
    env.publish(v2)
    index = env.publisher.current_index()
    assert index is not None and index.deltas[0].removals == 2
    assert env.unit().sync().action == "delta"
    with Registry(env.db) as registry:
        assert registry.lookup(gone) is None and registry.lookup(withdrawn) is None
        assert registry.info().record_count == 18
    fresh = Env(env.tmp / "fresh")
    try:
        fresh.publish(v2)
        fresh.unit().sync()
        with Registry(fresh.db) as registry:
            assert registry.lookup(gone) is None and registry.lookup(withdrawn) is None
    finally:
        fresh.server.close()


def test_clock_before_the_signing_time_refuses_to_sync(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publish(people(11))
    past = datetime(2020, 1, 1, tzinfo=timezone.utc)
    with pytest.raises(ClockNotTrusted, match="before the installed registry"):
        env.unit(clock=lambda: past).sync()
    assert_kept(env, 1, "registry_clock")


def test_lookups_keep_answering_during_snapshot_and_delta(env: Env) -> None:
    env.publish(people(300))
    env.unit().sync()
    probe = person(5)["cnic"]
    errors: list[BaseException] = []
    names: set[str] = set()
    stop = threading.Event()

    def reader() -> None:
        with Registry(env.db) as registry:
            while not stop.is_set():
                try:
                    record = registry.lookup(probe)
                    names.add(record.name_en if record else "<none>")
                except BaseException as exc:  # noqa: BLE001 - any failure fails the test
                    errors.append(exc)

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        env.publish([person(i, variant=1) for i in range(300)])     # delta: all renamed
        assert env.unit().sync().action == "delta"
        env.publisher.keep_deltas = 0
        env.publish([person(i, variant=2) for i in range(300)])
        assert env.unit().sync().action == "snapshot"
    finally:
        stop.set()
        thread.join(timeout=10)
    assert not errors
    assert "<none>" not in names
    assert names <= {"Test Person 5", "Test Person 5 v1", "Test Person 5 v2"}
    with Registry(env.db) as registry:
        final = registry.lookup(probe)
        assert final is not None and final.name_en == "Test Person 5 v2"


def test_wrong_url_says_what_to_check(env: Env) -> None:
    env.publish(people(3))
    with pytest.raises(SyncError):
        env.unit(env.server.url + "/nothing-here").sync()
    assert env.alarms and not env.db.exists()


def test_missing_trusted_root_is_a_signature_error(env: Env, tmp_path: Path) -> None:
    env.publish(people(3))
    env.root.unlink()
    with pytest.raises(SignatureError, match="trusted root"):
        env.unit().sync()


def test_a_current_sync_keeps_an_old_signature_fresh(env: Env) -> None:
    """Freshness runs from the last sync that verified the version is still the newest,
    not only from the publisher's signing time: no daily re-publish of unchanged data."""
    from appliance.registry.lookup import is_stale

    env.publish(people(5))
    env.unit().sync()
    with Registry(env.db) as registry:
        signed = registry.info().signed_at
    assert signed is not None
    later = signed + timedelta(hours=100)  # older than a 72 h max_age by signature alone
    result = env.unit(clock=lambda: later).sync()
    assert result.action == "current"
    with Registry(env.db) as registry:
        info = registry.info()
    assert info.verified_at == later
    assert not is_stale(info, timedelta(hours=72), later + timedelta(hours=1))
    assert is_stale(info, timedelta(hours=72), later + timedelta(hours=73))
