"""Schema versions and migrations (appliance.state.migrate) on real SQLite files: a file from
before versions existed, a next release that adds a column and a table, a downgrade that
works (compatible changes) and one that is refused without a byte changing, a failing
migration rolled back, and the ``db`` commands the Debian package's scripts run."""

from __future__ import annotations

import hashlib
import re
import sqlite3
import subprocess
import sys
from pathlib import Path

import peewee as pw
import pytest

from appliance.errors import SchemaError
from appliance.state.migrate import Schema, Step, add_column, create_table, open_and_upgrade, sql
from appliance.registry.models import REGISTRY_SCHEMA, SCHEMA_VERSION
from appliance.state.store import PRAGMAS, STATE_SCHEMA, Store
from tests.conftest import ROOT
from appliance.outbox.table import ReplyTable

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened


class OutboundNext(pw.Model):
    """What a next release's Outbound might add: a nullable column at the end."""

    note = pw.TextField(null=True)

    class Meta:
        table_name = "outbound"


class Heartbeat(pw.Model):
    """And a new table."""

    sent_at = pw.FloatField()

    class Meta:
        table_name = "heartbeat"


#: This release's state.db schema version; the "next releases" below add to it.
N = STATE_SCHEMA.current
NEXT = Schema("state.db", STATE_SCHEMA.steps + (
    Step(N + 1, "outbound.note", add_column(OutboundNext.note)),
    Step(N + 2, "table heartbeat", create_table(Heartbeat)),
))
BREAKING = Schema("state.db", STATE_SCHEMA.steps + (
    Step(N + 1, "outbound.text holds templates ids", sql("UPDATE outbound SET kind = kind"),
         compatible=False),
))


def user_version(path: Path) -> int:
    with sqlite3.connect(path) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


def columns(path: Path, table: str) -> list[str]:
    with sqlite3.connect(path) as conn:
        return [r[1] for r in conn.execute(f"PRAGMA table_info({table})")]


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def state_with_a_reply(path: Path) -> int:
    store = Store(path)
    try:
        return replies.queue_reply(recipient="+923001234567", text="سلام", parts=1,
                                 preferred_modem="sim0")
    finally:
        store.close()


def legacy_state_db(path: Path) -> None:
    """A state.db as units wrote it before schema versions: the tables, user_version 0."""
    from appliance.state.store import MODELS
    db = pw.SqliteDatabase(str(path))
    with db.bind_ctx(MODELS), db:
        db.create_tables(MODELS)
        db.execute_sql("INSERT INTO kv (key, value) VALUES ('from', 'before versions')")
    assert user_version(path) == 0


def test_registry_schema_version_is_the_number_of_steps() -> None:
    assert SCHEMA_VERSION == REGISTRY_SCHEMA.current


def test_a_state_db_from_before_versions_is_migrated_and_keeps_its_rows(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    legacy_state_db(path)
    store = Store(path)
    try:
        assert store.kv_get("from") == "before versions"
    finally:
        store.close()
    assert user_version(path) == STATE_SCHEMA.current
    with sqlite3.connect(path) as conn:
        ledger = conn.execute("SELECT version, compatible, release FROM schema_migration").fetchall()
    from appliance import __version__
    assert ledger == [(s.version, int(s.compatible), __version__) for s in STATE_SCHEMA.steps]


def test_next_release_adds_a_column_and_a_table_and_the_rows_stay(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    oid = state_with_a_reply(path)
    applied = open_and_upgrade(path, NEXT, PRAGMAS)
    assert [s.version for s in applied] == [N + 1, N + 2]
    assert user_version(path) == N + 2
    assert columns(path, "outbound")[-1] == "note"
    assert columns(path, "heartbeat") == ["id", "sent_at"]
    assert open_and_upgrade(path, NEXT, PRAGMAS) == []  # idempotent: nothing left to do
    # Rolled back to this release: the later steps are compatible, so the file is used
    # as it is, read and written, and nothing is lost either way.
    store = Store(path)
    try:
        assert store.counts()["outbound"] == {"queued": 1}
        oid2 = replies.queue_reply(recipient="+923001234568", text="x", parts=1,
                                 preferred_modem=None)
    finally:
        store.close()
    assert user_version(path) == N + 2
    with sqlite3.connect(path) as conn:
        assert [r[0] for r in conn.execute("SELECT id FROM outbound ORDER BY id")] == [oid, oid2]


def test_a_downgrade_past_an_incompatible_change_is_refused_without_a_write(
        tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state_with_a_reply(path)
    open_and_upgrade(path, BREAKING, PRAGMAS)
    Path(str(path) + "-wal").unlink(missing_ok=True)
    before = digest(path)
    with pytest.raises(SchemaError) as err:
        Store(path)
    assert (f"state.db: schema {N + 1} needs a release that reads schema {N + 1} or later"
            in str(err.value))
    assert "this release (" in str(err.value) and f"reads up to {N}" in str(err.value)
    assert digest(path) == before
    # The Debian package's preinst asks the same question before it unpacks an older release.
    proc = subprocess.run([sys.executable, "-m", "appliance", "db", "check", "--data-dir",
                           str(tmp_path), "--state-schema", str(N), "--registry-schema", "1"],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert f"needs a release that reads schema {N + 1}" in proc.stdout
    assert digest(path) == before


def test_a_failing_step_changes_nothing(tmp_path: Path) -> None:
    path = tmp_path / "state.db"
    state_with_a_reply(path)
    broken = Schema("state.db", STATE_SCHEMA.steps + (
        Step(N + 1, "outbound.a", sql("ALTER TABLE outbound ADD COLUMN a TEXT")),
        Step(N + 2, "a typo", sql("ALTER TABLE nowhere ADD COLUMN b TEXT")),
    ))
    with pytest.raises(SchemaError,
                       match=f"migrating schema {N} to {N + 2} failed.*nothing was changed"):
        open_and_upgrade(path, broken, PRAGMAS)
    assert user_version(path) == N
    assert "a" not in columns(path, "outbound")


def test_steps_must_be_numbered_in_order() -> None:
    with pytest.raises(ValueError, match="numbered"):
        Schema("x.db", (Step(1, "a", sql()), Step(3, "b", sql())))


def test_a_registry_from_before_versions_is_migrated_on_first_open(
        sample_registry: Path) -> None:
    from appliance.registry.lookup import Registry
    from appliance.registry.importer import demo_cnics

    with sqlite3.connect(sample_registry) as conn:  # as written before this release
        conn.execute("DROP TABLE schema_migration")
        conn.execute("PRAGMA user_version = 0")
    with Registry(sample_registry) as reg:
        assert reg.lookup(demo_cnics().hits[0]) is not None
    assert user_version(sample_registry) == REGISTRY_SCHEMA.current


def test_db_migrate_and_status_commands(tmp_path: Path) -> None:
    legacy_state_db(tmp_path / "state.db")

    def db(*args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-m", "appliance", "db", *args, "--data-dir",
                               str(tmp_path)], cwd=ROOT, capture_output=True, text=True,
                              timeout=60, check=False)

    status = db("status")
    assert status.returncode == 0, status.stderr
    assert re.search(rf"state.db: schema 0, this release \(.*\) migrates it to {N}", status.stdout)
    assert "registry.db: none yet" in status.stdout
    migrate = db("migrate")
    assert migrate.returncode == 0, migrate.stderr
    assert f"state.db: schema {N}, applied 1 (" in migrate.stdout
    assert f"state.db: schema {N} (current)" in db("status").stdout


def test_a_registry_snapshot_from_a_newer_compatible_schema_is_accepted(tmp_path: Path) -> None:
    """A publisher one release ahead added a column (a compatible step): this unit may use
    its snapshot, and only then may a snapshot carry a column this unit does not know."""
    from appliance.registry.models import check_schema, create_schema

    newer = Schema("registry.db", REGISTRY_SCHEMA.steps + (
        Step(REGISTRY_SCHEMA.current + 1, "offender.alias",
             sql("ALTER TABLE offender ADD COLUMN alias TEXT")),
    ), version_sql=REGISTRY_SCHEMA.version_sql)
    path = tmp_path / "registry.db"
    create_schema(path)
    open_and_upgrade(path, newer)
    assert open_and_upgrade(path, REGISTRY_SCHEMA) == []  # used as it is, not refused
    with sqlite3.connect(path) as conn:
        assert check_schema(conn) == []
        conn.execute(f"PRAGMA user_version = {REGISTRY_SCHEMA.current}")  # claims to be ours
        assert "table offender has columns" in check_schema(conn)[0]
