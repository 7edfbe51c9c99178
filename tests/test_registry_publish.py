"""Publisher: keys, signed metadata, snapshot/delta/index contents, rotation, pruning."""

from __future__ import annotations

import gzip
import json
import shutil
import sqlite3
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import Metadata, Root

from appliance.errors import RegistryError
from appliance.registry.formats import Index, read_delta
from appliance.registry.publish import Publisher
from tests.test_registry_support import people, person, write_export


@pytest.fixture
def publisher(tmp_path: Path) -> Publisher:
    pub = Publisher(tmp_path / "repo", tmp_path / "keys")
    pub.init(tmp_path / "root.json")
    return pub


def root_md(pub: Publisher, version: int) -> Metadata[Root]:
    return Metadata[Root].from_file(str(pub.public_dir / "metadata" / f"{version}.root.json"))


def test_init_creates_one_key_per_role_and_signed_metadata(publisher: Publisher,
                                                           tmp_path: Path) -> None:
    keys = sorted(p.name.split("-")[0] for p in (tmp_path / "keys").glob("*.pem"))
    assert keys == ["root", "snapshot", "targets", "timestamp"]
    assert all((p.stat().st_mode & 0o777) == 0o600 for p in (tmp_path / "keys").glob("*.pem"))
    root = root_md(publisher, 1)
    assert root.signed.consistent_snapshot
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    assert (tmp_path / "root.json").read_bytes() == publisher.repo.root_bytes()
    assert {p.name for p in (publisher.public_dir / "metadata").iterdir()} == {
        "1.root.json", "1.targets.json", "1.snapshot.json", "timestamp.json"}
    with pytest.raises(RegistryError, match="already holds"):
        publisher.init()


def test_publish_writes_snapshot_delta_and_index(publisher: Publisher, tmp_path: Path) -> None:
    v1 = people(10)
    first = publisher.publish(write_export(tmp_path / "1.csv", v1 + [
        person(50, status="removed")]))
    assert (first.version, first.record_count, first.delta) == (1, 10, None)
    v2 = [person(0, variant=1)] + v1[1:8] + [dict(v1[8], status="removed"), person(20)]
    second = publisher.publish(write_export(tmp_path / "2.csv", v2))
    assert second.version == 2 and second.record_count == 9
    assert second.delta is not None
    assert (second.delta.upserts, second.delta.removals) == (2, 2)   # v1[8] and v1[9] gone

    index = publisher.current_index()
    assert index is not None and index.version == 2 and index.record_count == 9
    assert [d.path for d in index.deltas] == [second.delta.path]
    targets = publisher.repo.targets().targets
    assert set(targets) == {"registry/index.json", index.snapshot, second.delta.path}
    delta_file = publisher._local(targets[second.delta.path])
    assert delta_file.name.startswith(targets[second.delta.path].hashes["sha256"])
    header, ops = read_delta(delta_file)
    assert (header.from_version, header.to_version, header.record_count) == (1, 2, 9)
    ops_list = list(ops)
    assert {o["record"]["cnic"] for o in ops_list if o["op"] == "upsert"} == {
        person(0)["cnic"], person(20)["cnic"]}
    assert {o["cnic"] for o in ops_list if o["op"] == "remove"} == {
        v1[8]["cnic"], v1[9]["cnic"]}

    snap = tmp_path / "snap.db"
    snap.write_bytes(gzip.decompress(publisher._local(targets[index.snapshot]).read_bytes()))
    conn = sqlite3.connect(snap)
    statuses = conn.execute("SELECT DISTINCT status FROM offender").fetchall()
    assert statuses == [("active",)]                                 # removed never shipped
    assert conn.execute("SELECT version, record_count FROM registry_meta").fetchone() == (2, 9)
    conn.close()


def test_versions_only_go_up(publisher: Publisher, tmp_path: Path) -> None:
    export = write_export(tmp_path / "e.csv", people(3))
    assert publisher.publish(export, version=5).version == 5
    with pytest.raises(RegistryError, match="not above the published version 5"):
        publisher.publish(export, version=5)
    assert publisher.publish(export).version == 6


def test_only_recent_deltas_are_listed_and_old_files_pruned(tmp_path: Path) -> None:
    pub = Publisher(tmp_path / "repo", tmp_path / "keys", keep_deltas=2)
    pub.init()
    for n in range(1, 7):
        pub.publish(write_export(tmp_path / f"{n}.csv", people(n)))
    index = pub.current_index()
    assert index is not None
    assert [(d.from_version, d.to_version) for d in index.deltas] == [(5, 6), (4, 5)]
    assert index.delta_chain(4) is not None and index.delta_chain(3) is None
    names = [p.name for p in (pub.public_dir / "targets" / "registry").iterdir()]
    assert not any("snapshot-00000001" in n or "snapshot-00000002" in n for n in names)
    assert sum("snapshot-" in n for n in names) <= 3


def test_timestamp_resign_and_missing_key(publisher: Publisher, tmp_path: Path) -> None:
    before = publisher.repo.timestamp().version
    expires = datetime.now(timezone.utc).replace(microsecond=0) + timedelta(hours=3)
    assert publisher.resign_timestamp(expires) == before + 1
    assert publisher.repo.timestamp().expires == expires
    online_only = tmp_path / "online-keys"
    online_only.mkdir()
    for pem in (tmp_path / "keys").glob("timestamp-*.pem"):
        shutil.copy(pem, online_only)
    online = Publisher(tmp_path / "repo", online_only)
    assert online.resign_timestamp() == before + 2                  # timestamp key suffices
    targets_version = online.repo.targets().version
    with pytest.raises(RegistryError, match="lacks the private key"):
        online.publish(write_export(tmp_path / "e.csv", people(2)))
    assert online.repo.targets().version == targets_version          # nothing half-signed


def test_root_rotation_is_signed_by_old_and_new_keys(publisher: Publisher,
                                                     tmp_path: Path) -> None:
    new_keyid = publisher.rotate("root", tmp_path / "root2.json")
    old, new = root_md(publisher, 1).signed, root_md(publisher, 2)
    assert new.signed.roles["root"].keyids == [new_keyid]
    new.signed.verify_delegate("root", new.signed_bytes, new.signatures)
    old.verify_delegate("root", new.signed_bytes, new.signatures)   # chain holds
    assert json.loads((tmp_path / "root2.json").read_bytes())["signed"]["version"] == 2
    publisher.rotate("snapshot")
    third = root_md(publisher, 3)
    with pytest.raises(UnsignedMetadataError):                      # old root key is out
        old.verify_delegate("root", third.signed_bytes, {
            k: v for k, v in third.signatures.items() if k in old.roles["root"].keyids})


def test_index_parser_refuses_foreign_formats() -> None:
    from appliance.errors import SyncError
    with pytest.raises(SyncError, match="format"):
        Index.from_json(b'{"format": "something-else"}')
    with pytest.raises(SyncError):
        Index.from_json(b"not json")


def test_shipped_demo_root_is_a_valid_root_and_documented_as_demo() -> None:
    firmware = Path(__file__).resolve().parent.parent / "firmware_config"
    root = Metadata[Root].from_file(str(firmware / "registry_root.json"))
    root.signed.verify_delegate("root", root.signed_bytes, root.signatures)
    assert root.signed.consistent_snapshot
    readme = (firmware / "README-registry-keys.md").read_text()
    assert "DEMO root" in readme
    assert root.signed.roles["root"].keyids[0] in readme
