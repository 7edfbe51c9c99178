"""Schema versions and forward migrations for the unit's SQLite files.

Each file (``state.db``, ``registry.db``) has a :class:`Schema`: an ordered list of
:class:`Step`\\ s, numbered 1, 2, 3 … The number of the last step applied is the file's
schema version, kept in SQLite's own slot for it (``PRAGMA user_version``), and every step
applied is also recorded in a ``schema_migration`` table (version, what, by which release,
when, and whether older releases may still use the file).

Opening a file runs :func:`upgrade`: the missing steps, in order, in one ``BEGIN IMMEDIATE``
transaction together with the new version, so that a crash or an error in the middle
leaves the file exactly as it was (SQLite's DDL is transactional).

Downgrades. A file newer than the running release is opened only when every step it has
beyond the release's own is marked ``compatible`` (added tables and nullable or defaulted
columns: older code names its columns and never sees them). Otherwise :func:`upgrade`
raises :class:`~appliance.errors.SchemaError` naming both versions *before* writing
anything, so a rollback can refuse, but can never corrupt. The Debian package's preinst
asks the same question (``python -m appliance db check``) before it unpacks an older release.

Adding to a schema later is one small, obvious step (``docs/packaging.md``, "Schema
versions"):

* a table: add its model (to ``MODELS``) and ``Step(n, "table x", create_table(X))``;
* a column: add the field at the end of its model, ``null=True`` or with a default, and
  ``Step(n, "x.y", add_column(X.y))``;
* anything else (a rename, a changed meaning): ``Step(n, "…", sql("…"), compatible=False)``.

Steps are idempotent (a column or table already there is skipped), because a file created
by this release already has every table and column from its models.
"""

from __future__ import annotations

import sqlite3
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import peewee as pw
from playhouse.migrate import SqliteMigrator, migrate

from ..errors import SchemaError
from ..version import __version__

Apply = Callable[[pw.SqliteDatabase], None]

LEDGER = "schema_migration"


@dataclass(frozen=True)
class Step:
    """One change to a schema. ``compatible``: older releases may keep using the file."""

    version: int
    description: str
    apply: Apply
    compatible: bool = True


@dataclass(frozen=True)
class Schema:
    """``version_sql``: run with the new version after the steps, for a file that also
    states its version in a table of its own (registry.db's ``registry_meta``)."""

    name: str
    steps: tuple[Step, ...]
    version_sql: str | None = None

    def __post_init__(self) -> None:
        numbers = [s.version for s in self.steps]
        if numbers != list(range(1, len(numbers) + 1)):
            raise ValueError(f"{self.name}: steps must be numbered 1, 2, 3 …, not {numbers}")

    @property
    def current(self) -> int:
        return len(self.steps)


@dataclass(frozen=True)
class Status:
    """Where a file stands against the running release's schema."""

    name: str
    version: int          # the file's
    current: int          # the running release's
    oldest_reader: int    # the oldest schema version that may still use the file
    readable: bool        # this release may use it (after upgrade, if older)

    @property
    def pending(self) -> int:
        return max(0, self.current - self.version)

    def describe(self, reader: str = "") -> str:
        """One line for a technician; ``reader`` names the release asked about (default:
        this one)."""
        reader = reader or f"this release ({__version__})"
        if self.version == self.current:
            return f"{self.name}: schema {self.version} (current)"
        if self.version < self.current:
            return (f"{self.name}: schema {self.version}, {reader} migrates it to "
                    f"{self.current}")
        if self.readable:
            return (f"{self.name}: schema {self.version}, newer than {reader} reads "
                    f"({self.current}); its later changes are compatible, so it is used as is")
        return (f"{self.name}: schema {self.version} needs a release that reads schema "
                f"{self.oldest_reader} or later; {reader} reads up to "
                f"{self.current}. Reinstall the newer release (apt install "
                f"nsor-appliance=VERSION), or restore the file from before the upgrade")


# -- step helpers ---------------------------------------------------------------------------

def create_table(model: type[pw.Model]) -> Apply:
    """A new table (and its indexes), from its peewee model."""
    def apply(db: pw.SqliteDatabase) -> None:
        with db.bind_ctx([model]):
            model.create_table(safe=True)
    return apply


def add_column(field: pw.Field) -> Apply:
    """A new column on an existing table, from its peewee field (``null=True`` or with a
    default). Skipped where the column exists, or the table does not (yet): a file made by
    this release gets both from the model."""
    def apply(db: pw.SqliteDatabase) -> None:
        table = field.model._meta.table_name
        if not db.table_exists(table):
            return
        if field.column_name in {c.name for c in db.get_columns(table)}:
            return
        migrate(SqliteMigrator(db).add_column(table, field.column_name, field))
    return apply


def sql(*statements: str) -> Apply:
    """Plain SQL, for what the helpers above do not cover."""
    def apply(db: pw.SqliteDatabase) -> None:
        for statement in statements:
            _exec(db, statement)
    return apply


def baseline(description: str) -> Step:
    """Step 1 of a schema that existed before versions did: nothing to change, the tables
    are the models' (files from then have ``user_version`` 0)."""
    return Step(1, description, lambda db: None)


# -- running --------------------------------------------------------------------------------

def _exec(db: pw.SqliteDatabase, statement: str,
          params: tuple[object, ...] = ()) -> sqlite3.Cursor:
    """One statement on ``db`` (peewee's execute_sql carries no type hints)."""
    cursor: sqlite3.Cursor = db.execute_sql(statement, params)
    return cursor


def _version(db: pw.SqliteDatabase) -> int:
    return int(_exec(db, "PRAGMA user_version").fetchone()[0])


def _oldest_reader(db: pw.SqliteDatabase, schema: Schema, version: int) -> int:
    """The highest incompatible step the file has (1 when there is none). Steps this release
    knows are taken from its own list; newer ones from the file's ledger, and a newer step
    the ledger does not describe counts as incompatible."""
    known = {s.version: s.compatible for s in schema.steps}
    recorded: dict[int, bool] = {}
    if db.table_exists(LEDGER):
        rows = _exec(db, f"SELECT version, compatible FROM {LEDGER}").fetchall()
        recorded = {int(v): bool(c) for v, c in rows}
    oldest = 1
    for v in range(1, version + 1):
        compatible = known.get(v, recorded.get(v, False))
        if not compatible:
            oldest = v
    return oldest


def status(db: pw.SqliteDatabase, schema: Schema) -> Status:
    version = _version(db)
    oldest = _oldest_reader(db, schema, version) if version > schema.current else 1
    return Status(schema.name, version, schema.current, oldest,
                  readable=version <= schema.current or oldest <= schema.current)


def _ledger(db: pw.SqliteDatabase) -> None:
    _exec(db, f"CREATE TABLE IF NOT EXISTS {LEDGER} (version INTEGER PRIMARY KEY, "
          "description TEXT NOT NULL, compatible INTEGER NOT NULL, "
          "release TEXT NOT NULL, applied_at REAL NOT NULL)")


def upgrade(db: pw.SqliteDatabase, schema: Schema) -> list[Step]:
    """Apply the steps the file lacks, in one transaction; return them.

    Raises SchemaError, before any write, for a newer file with an incompatible change, and
    after a rollback when a step fails.
    """
    st = status(db, schema)
    if not st.readable:
        raise SchemaError(st.describe())
    if st.version >= schema.current:
        return []
    todo = [s for s in schema.steps if s.version > st.version]
    try:
        with db.transaction("IMMEDIATE"):
            if _version(db) != st.version:  # another process migrated it meanwhile
                return []
            _ledger(db)
            for step in todo:
                step.apply(db)
                _exec(db, f"INSERT OR REPLACE INTO {LEDGER} (version, description, "
                      "compatible, release, applied_at) VALUES (?, ?, ?, ?, ?)",
                      (step.version, step.description, int(step.compatible), __version__,
                       time.time()))
            if schema.version_sql:
                _exec(db, schema.version_sql, (schema.current,))
            _exec(db, f"PRAGMA user_version = {schema.current:d}")
    except SchemaError:
        raise
    except Exception as exc:
        raise SchemaError(f"{schema.name}: migrating schema {st.version} to {schema.current} "
                          f"failed ({exc}); nothing was changed") from exc
    return todo


def open_and_upgrade(path: Path, schema: Schema,
                     pragmas: dict[str, object] | None = None) -> list[Step]:
    """:func:`upgrade` on the file at ``path`` through a connection of its own."""
    db = pw.SqliteDatabase(str(path), pragmas=pragmas or {})
    try:
        db.connect()
        return upgrade(db, schema)
    finally:
        db.close()


def check_file(path: Path, schema: Schema) -> Status:
    """Where the file at ``path`` stands, read-only (no file is created)."""
    db = pw.SqliteDatabase(f"file:{path}?mode=ro", uri=True)
    try:
        db.connect()
        return status(db, schema)
    finally:
        db.close()
