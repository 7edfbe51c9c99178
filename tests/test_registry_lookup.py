"""Registry file, exact lookup and import: real SQLite files in a temporary directory."""

from __future__ import annotations

import gzip
import json
import os
import sqlite3
import threading
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from appliance.errors import RegistryError
from appliance.registry.importer import SAMPLE_REGISTRY, demo_cnics, import_file
from appliance.registry.lookup import Registry, RegistryInfo, is_stale
from appliance.registry.models import check_schema, create_schema, to_iso
from appliance.registry.seal import record_digest
from tests.test_registry_support import people, person, write_export

UTC = timezone.utc


@pytest.fixture
def sample_db(tmp_path: Path) -> Path:
    db = tmp_path / "registry.db"
    import_file(SAMPLE_REGISTRY, db, version=7)
    return db


def test_sample_registry_answers_hits_removals_and_misses(sample_db: Path) -> None:
    demo = demo_cnics()
    assert len(demo.hits) >= 30 and len(demo.removed) >= 3 and len(demo.misses) >= 3
    assert {c[0] for c in demo.hits} == set("1234567")            # every province digit
    assert any(c.endswith("0") for c in demo.hits)
    with Registry(sample_db) as registry:
        relations = set()
        for cnic in demo.hits:
            record = registry.lookup(cnic)
            assert record is not None and record.cnic == cnic and record.is_active
            assert record.name_ur and record.name_en and "Person" in record.name_en
            relations.add(record.relation)
        assert relations == {"s/o", "d/o", "w/o"}
        for cnic in demo.removed + demo.misses:
            assert registry.lookup(cnic) is None                    # removal honoured
        info = registry.info()
    assert info.exists and info.version == 7 and info.record_count == len(demo.hits)
    assert info.source == "import:sample_registry.csv" and info.signed_at is None
    assert info.imported_at is not None


def test_missing_registry_is_an_error_not_a_miss(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    with Registry(db) as registry:
        with pytest.raises(RegistryError, match="does not exist"):
            registry.lookup("3520212345671")
        info = registry.info()
        assert not info.exists and info.version is None
        assert info.error is not None and "does not exist" in info.error
        assert registry.age(datetime.now(UTC)) is None
        import_file(SAMPLE_REGISTRY, db)                           # appears later
        assert registry.lookup(demo_cnics().hits[0]) is not None


def test_garbage_file_is_an_error(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    db.write_bytes(b"not a database" * 100)
    with Registry(db) as registry:
        with pytest.raises(RegistryError, match="not a readable registry"):
            registry.lookup("3520212345671")
        assert not registry.info().exists


def test_a_file_swapped_in_by_rename_is_picked_up(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    write_export(tmp_path / "a.csv", people(5))
    write_export(tmp_path / "b.csv", [person(i, variant=1) for i in range(5)])
    import_file(tmp_path / "a.csv", db, version=1)
    with Registry(db) as registry:
        before = registry.lookup(person(2)["cnic"])
        assert before is not None and before.name_en == "Test Person 2"
        import_file(tmp_path / "b.csv", db, version=2)             # built aside, renamed
        after = registry.lookup(person(2)["cnic"])
        assert after is not None and after.name_en == "Test Person 2 v1"
        assert registry.info().version == 2


def test_concurrent_lookups_across_swaps(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    exports = [write_export(tmp_path / f"{v}.csv", [person(i, variant=v) for i in range(50)])
               for v in range(3)]
    import_file(exports[0], db, version=0)
    registry = Registry(db)
    errors: list[BaseException] = []
    stop = threading.Event()

    def reader() -> None:
        while not stop.is_set():
            try:
                record = registry.lookup(person(9)["cnic"])
                assert record is not None and record.name_en.startswith("Test Person 9")
            except BaseException as exc:  # noqa: BLE001
                errors.append(exc)
                return

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    for v in (1, 2, 1, 2):
        import_file(exports[v], db, version=v)
    stop.set()
    for t in threads:
        t.join(timeout=10)
    registry.close()
    assert not errors


def test_age_uses_signing_time_then_import_time(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    signed = datetime(2026, 1, 1, 12, tzinfo=UTC)
    import_file(SAMPLE_REGISTRY, db, signed_at=signed, now=signed + timedelta(hours=5))
    with Registry(db) as registry:
        assert registry.age(signed + timedelta(hours=10)) == timedelta(hours=10)
    import_file(SAMPLE_REGISTRY, db, now=signed)
    with Registry(db) as registry:
        assert registry.age(signed + timedelta(hours=1)) == timedelta(hours=1)


def test_is_stale() -> None:
    now = datetime(2026, 3, 1, tzinfo=UTC)
    fresh = RegistryInfo(path=Path("r"), exists=True, signed_at=now - timedelta(hours=1))
    old = RegistryInfo(path=Path("r"), exists=True, signed_at=now - timedelta(hours=73))
    future = RegistryInfo(path=Path("r"), exists=True, signed_at=now + timedelta(days=2))
    unknown = RegistryInfo(path=Path("r"), exists=True)
    missing = RegistryInfo(path=Path("r"), exists=False)
    limit = timedelta(hours=72)
    assert not is_stale(fresh, limit, now)
    assert is_stale(old, limit, now)
    assert is_stale(future, limit, now)           # a clock this far behind cannot judge age
    assert is_stale(unknown, limit, now) and is_stale(missing, limit, now)


def test_import_reports_every_problem_with_line_numbers(tmp_path: Path) -> None:
    db = tmp_path / "registry.db"
    import_file(SAMPLE_REGISTRY, db, version=1)
    rows = people(3)
    rows.append(dict(person(10), cnic="12345"))
    rows.append(dict(person(11), relation="x/o"))
    rows.append(dict(person(12), status="maybe"))
    rows.append(dict(person(13), recorded_on="2020-13-45"))
    rows.append(dict(person(14), name_ur="", name_en=""))
    rows.append(person(1))                                           # duplicate of line 3
    export = write_export(tmp_path / "bad.csv", rows)
    with pytest.raises(RegistryError) as caught:
        import_file(export, db)
    text = str(caught.value)
    assert "6 problem(s)" in text
    for fragment in ("bad.csv:5: cnic '12345' is not 13 digits", "bad.csv:6: relation 'x/o'",
                     "bad.csv:7: status 'maybe'", "bad.csv:8: recorded_on '2020-13-45'",
                     "bad.csv:9: no name", "appears on lines 3, 10"):
        assert fragment in text
    with Registry(db) as registry:                                   # old file untouched
        assert registry.info().version == 1
    assert not list(tmp_path.glob(".registry.db.import-*"))


def test_import_caps_the_report_at_twenty(tmp_path: Path) -> None:
    rows = [dict(person(i), relation="?") for i in range(25)]
    with pytest.raises(RegistryError, match=r"25 problem\(s\)(.|\n)*and 5 more"):
        import_file(write_export(tmp_path / "bad.csv", rows), tmp_path / "r.db")


def test_import_refuses_a_wrong_header_at_once(tmp_path: Path) -> None:
    export = tmp_path / "x.csv"
    export.write_text("cnic,name,relation\n3520212345671,A,s/o\n")
    with pytest.raises(RegistryError, match="missing .*name_ur.* unknown .*name"):
        import_file(export, tmp_path / "r.db")


def test_import_ndjson_gz_with_dashed_cnics_and_removed_rows(tmp_path: Path) -> None:
    rows = people(4)
    rows[0] = dict(rows[0], cnic=f"{rows[0]['cnic'][:5]}-{rows[0]['cnic'][5:12]}-"
                                 f"{rows[0]['cnic'][12]}")
    rows[1] = dict(rows[1], status="removed")
    export = tmp_path / "e.ndjson.gz"
    with gzip.open(export, "wt", encoding="utf-8") as fh:
        for row in rows:
            fh.write(json.dumps(row, ensure_ascii=False) + "\n")
        fh.write("\n{broken\n")
    with pytest.raises(RegistryError, match=r"e.ndjson.gz:6: not JSON"):
        import_file(export, tmp_path / "r.db")
    export.write_bytes(gzip.compress("".join(
        json.dumps(r, ensure_ascii=False) + "\n" for r in rows).encode()))
    assert import_file(export, tmp_path / "r.db") == 4
    assert import_file(export, tmp_path / "s.db", include_removed=False) == 3
    with Registry(tmp_path / "r.db") as registry:
        assert registry.lookup(person(0)["cnic"]) is not None        # dashes normalised
        assert registry.lookup(person(1)["cnic"]) is None
        assert registry.info().record_count == 3


def test_schema_check_and_utc_times(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    create_schema(db)
    conn = sqlite3.connect(db)
    assert check_schema(conn) == []
    conn.execute("ALTER TABLE offender ADD COLUMN victim TEXT")
    assert "offender" in check_schema(conn)[0]
    conn.close()
    with pytest.raises(ValueError, match="naive"):
        to_iso(datetime(2026, 1, 1))
    assert to_iso(datetime(2026, 1, 1, 5, tzinfo=timezone(timedelta(hours=5)))) == \
        "2026-01-01T00:00:00+00:00"


def test_damaged_row_is_refused_at_the_boundary(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    import_file(write_export(tmp_path / "a.csv", people(3)), db)
    conn = sqlite3.connect(db)
    conn.execute("PRAGMA ignore_check_constraints = 1")
    conn.execute("UPDATE offender SET relation = 'xx' WHERE cnic = ?", (person(1)["cnic"],))
    conn.commit()
    conn.close()
    # The record digest (seal.py) notices the change before the record is even decoded,
    # and from then on the whole registry answers "unavailable", not only that row.
    with Registry(db) as registry:
        with pytest.raises(RegistryError, match="does not match its signed digest"):
            registry.lookup(person(1)["cnic"])
        with pytest.raises(RegistryError, match="does not match its signed digest"):
            registry.lookup(person(2)["cnic"])
        assert registry.corrupt is not None
    # A row whose digest was forged to match still cannot carry an unknown relation.
    conn = sqlite3.connect(db)
    row = conn.execute("SELECT * FROM offender WHERE cnic = ?", (person(1)["cnic"],)).fetchone()
    conn.execute("UPDATE offender_digest SET digest = ? WHERE cnic = ?",
                 (record_digest(row), person(1)["cnic"]))
    conn.commit()
    conn.close()
    with Registry(db) as registry, pytest.raises(RegistryError, match="relation"):
        registry.lookup(person(1)["cnic"])
    os.unlink(db)


def test_non_utf8_export_is_one_clear_error(tmp_path: Path) -> None:
    export = tmp_path / "latin1.csv"
    export.write_bytes(",".join(["cnic", "name_ur", "name_en", "parent_ur", "parent_en",
                                 "relation", "status"]).encode() + b"\n3520212345671,\xe9\n")
    with pytest.raises(RegistryError, match="not readable as UTF-8"):
        import_file(export, tmp_path / "r.db")
