"""Peewee models of ``registry.db``: the schema is defined once, here.

The registry file is written by three parties -- the local importer, the central publisher
(which ships a whole SQLite file as the snapshot) and the unit's sync (which patches it with
deltas) -- so the schema lives in one place and every writer derives its column list from
these models. Readers on the hot path (``lookup.py``) use the ``sqlite3`` connection
directly: a Peewee ``get_or_none`` costs ~250 µs a lookup against ~25 µs for the whole
hot path on a cached ``sqlite3`` statement (1M records, ``scripts/bench_registry.py``).

Design choices, each for a measured or stated reason:

* ``offender`` is a ``WITHOUT ROWID`` table keyed by the 13-digit CNIC text: one B-tree
  probe per lookup and no separate rowid B-tree, ~10 % less file (measured at 20k rows).
* Timestamps are ISO 8601 text in UTC (``2026-01-31T02:30:00+00:00``): Peewee's
  ``DateTimeField`` drops the offset, and a registry signed in one zone and checked in
  another must not drift by five hours (Pakistan is UTC+5).
* The file keeps SQLite's rollback journal (``journal_mode=DELETE``), not WAL: a snapshot
  is swapped in by ``rename()``, and a WAL/SHM pair left beside the old inode would be
  attached to the new file by the next opener (sqlite.org/wal.html "WAL file names").
* ``registry_meta`` has exactly one row (``id = 1``), so "which version is installed" is
  one indexed read and is committed in the same transaction as the rows it describes.
"""

from __future__ import annotations

import sqlite3
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

import peewee as pw

from appliance.registry.record import RELATIONS, STATUSES, OffenderRecord
from appliance.state.migrate import Schema, baseline, upgrade

#: The table layout's version: the number of steps in REGISTRY_SCHEMA (below), which
#: migrates older files forward; a snapshot newer than this is used only when its later
#: steps are compatible (appliance.state.migrate).
SCHEMA_VERSION = 1

registry_db = pw.SqliteDatabase(None)


class UtcDateTimeField(pw.TextField):
    """An aware datetime stored as ISO 8601 text in UTC (see module docstring)."""

    def db_value(self, value: datetime | None) -> str | None:
        return None if value is None else to_iso(value)

    def python_value(self, value: str | None) -> datetime | None:
        return None if value is None else from_iso(value)


class IsoDateField(pw.TextField):
    """A calendar date stored as ``YYYY-MM-DD`` (sorts and compares as text)."""

    def db_value(self, value: date | None) -> str | None:
        return None if value is None else value.isoformat()

    def python_value(self, value: str | None) -> date | None:
        return None if value is None else date.fromisoformat(value)


class _Base(pw.Model):
    class Meta:
        database = registry_db
        legacy_table_names = False


class Offender(_Base):
    """One convicted offender. No victim or offence details: what is not stored cannot leak."""

    cnic = pw.CharField(13, primary_key=True)
    name_ur = pw.TextField()
    name_en = pw.TextField()
    parent_ur = pw.TextField()
    parent_en = pw.TextField()
    relation = pw.CharField(3, constraints=[pw.Check(
        "relation IN (" + ", ".join(f"'{r}'" for r in RELATIONS) + ")")])
    status = pw.CharField(7, constraints=[pw.Check(
        "status IN (" + ", ".join(f"'{s}'" for s in STATUSES) + ")")])
    recorded_on = IsoDateField(null=True)
    updated_on = IsoDateField(null=True)

    class Meta:
        table_name = "offender"
        without_rowid = True


class RegistryMeta(_Base):
    """What this file is: version, provenance and the publisher's signing/expiry times."""

    id = pw.IntegerField(primary_key=True, constraints=[pw.Check("id = 1")])
    schema_version = pw.IntegerField(default=SCHEMA_VERSION)
    version = pw.IntegerField(null=True)
    source = pw.TextField(null=True)
    record_count = pw.IntegerField(default=0)  # active records, kept by every writer
    imported_at = UtcDateTimeField(null=True)
    signed_at = UtcDateTimeField(null=True)
    expires_at = UtcDateTimeField(null=True)
    # The unit's time of its last sync that verified (signed, unexpired TUF metadata) that
    # this version is still the newest: a registry that was current yesterday is fresh
    # even if the publisher signed it a week ago.
    verified_at = UtcDateTimeField(null=True)

    class Meta:
        table_name = "registry_meta"


class OffenderDigest(_Base):
    """The publisher's digest of each offender row (``seal.record_digest``).

    A table of its own, not a column of ``offender``: firmware that predates the digests
    checks ``offender`` and ``registry_meta`` column by column and ignores other tables, so
    a sealed snapshot still installs on a unit that has not been upgraded yet.
    """

    cnic = pw.CharField(13, primary_key=True)
    digest = pw.CharField(32)

    class Meta:
        table_name = "offender_digest"
        without_rowid = True


class RegistrySeal(_Base):
    """What the publisher signed about this version's content (``seal.py``): one row."""

    id = pw.IntegerField(primary_key=True, constraints=[pw.Check("id = 1")])
    scheme = pw.TextField(null=True)
    version = pw.IntegerField(null=True)
    record_count = pw.IntegerField(null=True)   # rows in ``offender`` (active and removed)
    content_digest = pw.TextField(null=True)
    # JSON of the signed mass-removal decision ({"reason", "removed", "previous"}), if any.
    removal = pw.TextField(null=True)

    class Meta:
        table_name = "registry_seal"


MODELS: tuple[type[pw.Model], ...] = (Offender, RegistryMeta, OffenderDigest, RegistrySeal)

#: registry.db's schema versions (appliance.state.migrate; docs/packaging.md, "Schema versions").
#: A change is one more step here, and SCHEMA_VERSION above set to its number. A new
#: column goes at the end of its model (check_schema compares the column order).
REGISTRY_SCHEMA = Schema("registry.db", (
    baseline("offender, registry_meta (the schema before versions)"),
), version_sql="UPDATE registry_meta SET schema_version = ? WHERE id = 1")

#: Column order used by every bulk writer and by the hot-path SELECT.
OFFENDER_COLUMNS: tuple[str, ...] = tuple(
    f.column_name for f in Offender._meta.sorted_fields)
META_COLUMNS: tuple[str, ...] = tuple(
    f.column_name for f in RegistryMeta._meta.sorted_fields)
SEAL_COLUMNS: tuple[str, ...] = tuple(
    f.column_name for f in RegistrySeal._meta.sorted_fields)
DIGEST_COLUMNS: tuple[str, ...] = tuple(
    f.column_name for f in OffenderDigest._meta.sorted_fields)


def to_iso(value: datetime) -> str:
    """UTC ISO 8601 text; a naive datetime is refused rather than guessed."""
    if value.tzinfo is None:
        raise ValueError(f"naive datetime {value!r}: registry times must carry a zone")
    return value.astimezone(timezone.utc).isoformat()


def from_iso(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=timezone.utc)


def create_schema(path: Path) -> None:
    """Create the tables in a (new or empty) database file, with the meta row."""
    db = pw.SqliteDatabase(str(path), pragmas={"journal_mode": "delete"})
    with db.bind_ctx(MODELS), db:
        db.create_tables(MODELS)
        RegistryMeta.insert(id=1, schema_version=SCHEMA_VERSION).on_conflict_ignore().execute()
        RegistrySeal.insert(id=1).on_conflict_ignore().execute()
        upgrade(db, REGISTRY_SCHEMA)  # stamps the version and the steps' ledger
    db.close()


def write_meta(conn: sqlite3.Connection, **values: Any) -> None:
    """Update the meta row inside the caller's transaction (so data and version agree)."""
    unknown = set(values) - set(META_COLUMNS)
    if unknown:
        raise ValueError(f"unknown registry_meta columns: {sorted(unknown)}")
    encoded = {k: (to_iso(v) if isinstance(v, datetime) else v) for k, v in values.items()}
    assignments = ", ".join(f"{k} = ?" for k in encoded)
    conn.execute(f"UPDATE registry_meta SET {assignments} WHERE id = 1",
                 tuple(encoded.values()))


def read_meta(conn: sqlite3.Connection) -> dict[str, Any]:
    """The meta row as a dict with datetimes decoded; empty dict if the row is missing."""
    row = conn.execute(
        f"SELECT {', '.join(META_COLUMNS)} FROM registry_meta WHERE id = 1").fetchone()
    if row is None:
        return {}
    meta = dict(zip(META_COLUMNS, row))
    for key in ("imported_at", "signed_at", "expires_at", "verified_at"):
        if meta[key] is not None:
            meta[key] = from_iso(meta[key])
    return meta


def check_schema(conn: sqlite3.Connection) -> list[str]:
    """Problems that make a file unusable as a registry (empty list when it is fine).

    Used on a downloaded snapshot before it is swapped in: the file is signed, but a
    publisher on another schema version must be refused, not half-read.
    """
    problems: list[str] = []
    # A file on a newer, compatible schema (appliance.state.migrate decided that before this is
    # called) may carry columns after these; at this unit's own version, none may be added.
    newer = user_schema_version(conn) > SCHEMA_VERSION
    for table, expected in (("offender", OFFENDER_COLUMNS), ("registry_meta", META_COLUMNS),
                            ("offender_digest", DIGEST_COLUMNS),
                            ("registry_seal", SEAL_COLUMNS)):
        found = tuple(r[1] for r in conn.execute(f"PRAGMA table_info({table})"))
        if (found[:len(expected)] if newer else found) != expected:
            problems.append(f"table {table} has columns {found or 'none'}, expected {expected}")
    if not problems:
        row = conn.execute("SELECT schema_version FROM registry_meta WHERE id = 1").fetchone()
        if row is None:
            problems.append("registry_meta has no row")
        elif row[0] < SCHEMA_VERSION:  # migrated before it is checked (apply.py)
            problems.append(f"schema_version {row[0]}, this unit reads {SCHEMA_VERSION}")
    return problems


def user_schema_version(conn: sqlite3.Connection) -> int:
    """The schema version appliance.state.migrate keeps in ``PRAGMA user_version``."""
    return int(conn.execute("PRAGMA user_version").fetchone()[0])


def row_to_record(row: tuple[Any, ...]) -> OffenderRecord:
    """Turn a row in :data:`OFFENDER_COLUMNS` order into a validated record."""
    cnic, name_ur, name_en, parent_ur, parent_en, relation, status, rec, upd = row
    return OffenderRecord(
        cnic=cnic, name_ur=name_ur, name_en=name_en, parent_ur=parent_ur,
        parent_en=parent_en, relation=relation, status=status,
        recorded_on=date.fromisoformat(rec) if rec else None,
        updated_on=date.fromisoformat(upd) if upd else None)

