"""Mass removal needs an explicit, signed decision; names with bidi controls or line
breaks are refused (issue 12, items 4 and 6).

The empty (header-only) export and a 50 % removal: refused by ``registry import`` and
``registry publish`` without ``--allow-mass-removal``, accepted with it, the reason in
the signed metadata; a unit applies such a version only with that signed decision, and
refuses (alarm ``registry_mass_removal``, old registry kept and answering) a version from
a publisher that skipped the check.
"""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.registry.importer import import_file
from appliance.registry.lookup import Registry
from appliance.registry.publish import Publisher
from appliance.errors import MassRemovalRefused, UnsignedMassRemoval
from appliance.registry.seal import read_seal
from tests.test_registry_support import Env, env, people, person, write_export

__all__ = ["env"]

ROOT = Path(__file__).resolve().parent.parent
REASON = "Court order 2026/117: provincial registry withdrawn for review (A. Khan)"


def cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


def seal_reason(db: Path) -> str | None:
    conn = sqlite3.connect(db)
    try:
        seal = read_seal(conn)
    finally:
        conn.close()
    assert seal is not None
    return None if seal.removal is None else seal.removal.get("reason")


def active_hits(db: Path, rows: list[dict[str, str]]) -> int:
    with Registry(db) as registry:
        return sum(registry.lookup(r["cnic"]) is not None for r in rows)


@pytest.mark.parametrize("keep", [0, 50], ids=["empty export", "50 % removal"])
def test_import_refuses_mass_removal_without_the_flag(tmp_path: Path, keep: int) -> None:
    rows = people(100)
    db = tmp_path / "registry.db"
    import_file(write_export(tmp_path / "v1.csv", rows), db)
    export = write_export(tmp_path / "v2.csv", rows[:keep])
    result = cli("registry", "import", str(export), "--db", str(db))
    assert result.returncode == 1
    assert "--allow-mass-removal" in result.stderr and "Traceback" not in result.stderr
    assert active_hits(db, rows) == 100                           # untouched
    result = cli("registry", "import", str(export), "--db", str(db),
                 "--allow-mass-removal", REASON)
    assert result.returncode == 0, result.stderr
    assert active_hits(db, rows) == keep
    assert seal_reason(db) == REASON


def test_an_empty_first_import_is_refused_too(tmp_path: Path) -> None:
    with pytest.raises(MassRemovalRefused, match="no active record"):
        import_file(write_export(tmp_path / "empty.csv", []), tmp_path / "registry.db")
    assert not (tmp_path / "registry.db").exists()


def test_small_removals_need_no_flag(tmp_path: Path) -> None:
    rows = people(100)
    db = tmp_path / "registry.db"
    import_file(write_export(tmp_path / "v1.csv", rows), db)
    import_file(write_export(tmp_path / "v2.csv", rows[5:]), db)   # 5 %: not above it
    assert active_hits(db, rows) == 95 and seal_reason(db) is None


@pytest.mark.parametrize("keep", [0, 50], ids=["empty export", "50 % removal"])
def test_publish_and_unit_with_and_without_the_flag(env: Env, tmp_path: Path,
                                                   keep: int) -> None:
    rows = people(100)
    env.publish(rows)
    unit = env.unit()
    assert unit.sync().action == "snapshot"
    export = write_export(tmp_path / "shrunk.csv", rows[:keep])
    repo, keys = env.publisher.repo_dir, env.tmp / "keys"

    # Refused without the flag: nothing is published, the unit keeps answering.
    result = cli("registry", "publish", str(export), "--repo", str(repo), "--keys", str(keys))
    assert result.returncode == 1 and "--allow-mass-removal" in result.stderr
    assert env.publisher.current_index().version == 1  # type: ignore[union-attr]
    assert unit.sync().action == "current"
    assert active_hits(env.db, rows) == 100 and not env.alarms

    # Accepted with it: the reason is signed into the index and the delta header, and
    # the unit applies the version (its offenders are removed on a signed decision).
    result = cli("registry", "publish", str(export), "--repo", str(repo), "--keys", str(keys),
                 "--allow-mass-removal", REASON)
    assert result.returncode == 0, result.stderr
    index = env.publisher.current_index()
    assert index is not None and index.version == 2
    assert index.mass_removals == ({"version": 2, "reason": REASON, "removed": 100 - keep,
                                    "previous": 100},)
    synced = unit.sync()
    assert (synced.action, synced.to_version, synced.record_count) == ("delta", 2, keep)
    assert active_hits(env.db, rows) == keep and not env.alarms
    assert seal_reason(env.db) == REASON
    # A unit that takes the snapshot instead (first install) accepts it too.
    fresh = env.tmp / "fresh" / "registry.db"
    fresh_unit = type(unit)(fresh, env.server.url, env.root)
    assert fresh_unit.sync().action == "snapshot"
    assert active_hits(fresh, rows) == keep


@pytest.mark.parametrize("via", ["delta", "snapshot"])
def test_unit_refuses_a_mass_removal_without_a_signed_decision(env: Env, via: str) -> None:
    rows = people(100)
    env.publish(rows)
    unit = env.unit()
    unit.sync()
    # A publisher that skips the check (an old or misconfigured one): no decision signed.
    lax = Publisher(env.publisher.repo_dir, env.tmp / "keys", max_removal_percent=100)
    if via == "snapshot":
        lax.keep_deltas = 0
    lax.publish(write_export(env.tmp / "half.csv", rows[:50]))
    with pytest.raises(UnsignedMassRemoval, match="mass-removal decision"):
        unit.sync()
    assert env.alarms[-1][0] == "registry_mass_removal"
    assert active_hits(env.db, rows) == 100                       # the old one answers
    with Registry(env.db) as registry:
        assert registry.info().version == 1 and registry.verify().ok


@pytest.mark.parametrize("name", ["Test\u202ePerson", "Test\u2066Person\u2069",
                                  "Test\nPerson", "Test\u2028Person", "Test\rPerson",
                                  "Test\x1fPerson"])
def test_names_with_bidi_controls_or_line_breaks_are_refused(env: Env, tmp_path: Path,
                                                            name: str) -> None:
    rows = people(10)
    rows[3] = {**rows[3], "name_en": name}
    export = write_export(tmp_path / "bidi.csv", rows)
    result = cli("registry", "import", str(export), "--db", str(tmp_path / "r.db"))
    assert result.returncode == 1 and "name_en contains U+" in result.stderr
    assert "Traceback" not in result.stderr
    with pytest.raises(Exception, match="name_en contains U+"):
        env.publisher.publish(export)
    assert env.publisher.current_index() is None


def test_ndjson_names_are_checked_too(tmp_path: Path) -> None:
    record = {**person(1), "parent_ur": "ٹیسٹ\u202bوالد"}
    export = tmp_path / "x.ndjson"
    export.write_text(json.dumps(record, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(Exception, match="parent_ur contains U\\+202B"):
        import_file(export, tmp_path / "r.db")
