"""The digest scheme as docs/registry.md writes it, recomputed here from the export alone
(hashlib and the documented encoding, none of seal.py's code), against what the importer
and the publisher sealed. A third party can check a registry the same way."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

from appliance.registry.importer import import_file
from appliance.registry.seal import read_seal
from tests.test_registry_support import FIELDS, Env, env, people, person, write_export

__all__ = ["env"]


def documented(rows: list[dict[str, str]]) -> tuple[dict[str, str], str]:
    """(record digest by CNIC, content digest) per docs/registry.md, "Digests"."""
    records: dict[str, str] = {}
    stream = b""
    for row in sorted(rows, key=lambda r: r["cnic"]):
        canonical = "\x1f".join(row.get(f) or "" for f in FIELDS).encode("utf-8")
        digest = hashlib.sha256(b"nsor-record-v1\x1f" + canonical).hexdigest()[:32]
        records[row["cnic"]] = digest
        stream += canonical + b"\x1f" + digest.encode() + b"\x1e"
    return records, hashlib.sha256(b"nsor-content-v1\x1e" + stream).hexdigest()


def sealed(db: Path) -> tuple[dict[str, str], str | None]:
    conn = sqlite3.connect(db)
    try:
        records = dict(conn.execute("SELECT cnic, digest FROM offender_digest"))
        seal = read_seal(conn)
    finally:
        conn.close()
    assert seal is not None
    return records, seal.content_digest


def test_import_seals_as_documented(tmp_path: Path) -> None:
    rows = people(25) + [person(77, status="removed")]
    db = tmp_path / "registry.db"
    import_file(write_export(tmp_path / "a.csv", rows), db)
    assert sealed(db) == documented(rows)


def test_publisher_signs_the_documented_digests(env: Env) -> None:
    rows = people(20)
    env.publish(rows)
    index = env.publisher.current_index()
    assert index is not None
    records, content = documented(rows)
    assert index.content_digest == content
    env.unit().sync()
    assert sealed(env.db) == (records, content)
    # After a delta (5 removed, 1 renamed), the unit holds the next version's digests.
    changed = [person(i, variant=1) if i == 3 else r for i, r in enumerate(rows[5:], 5)]
    changed[0] = person(5, variant=2)
    env.publish(changed)
    assert env.unit().sync().action == "delta"
    assert sealed(env.db) == documented(changed)
