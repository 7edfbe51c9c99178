"""Writing a verified snapshot or delta into ``registry.db`` without ever exposing a mix.

Separated from ``sync.py`` (which decides *what* to apply and handles the network) so that
the crash-consistency argument lives in one short file:

* a **snapshot** is written to a new file in the same directory, checked, fsynced, renamed
  over ``registry.db`` (``rename(2)`` is atomic), and the directory is fsynced; a crash
  before the rename leaves the old file, after it the new one; leftovers are removed by
  :func:`recover` on the next sync;
* a **delta** is one SQLite transaction (rollback journal, ``synchronous=FULL``) that also
  moves ``registry_meta.version``; a crash mid-way leaves a hot journal that SQLite rolls
  back on the next open (sqlite.org/atomiccommit.html §4), so the file is version A.

:func:`recover` must run before a snapshot is renamed in: a hot journal left by a killed
delta names no file identity, and would otherwise be "rolled back" into the new file.
"""

from __future__ import annotations

import logging
import os
import signal
import sqlite3
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.errors import DeltaUnusable, SchemaError, SyncError, UnsignedMassRemoval
from appliance.registry.formats import DeltaRef, Index, decompress_file, read_delta
from appliance.registry.importer import _fsync, validate_row
from appliance.registry.lookup import BUSY_TIMEOUT_MS
from appliance.registry.models import (
    OFFENDER_COLUMNS, REGISTRY_SCHEMA, check_schema, read_meta, write_meta,
)
from appliance.registry.removal import DEFAULT_MAX_REMOVAL_PERCENT, Removal, compare, signed_reason
from appliance.registry.seal import (
    content_digest, is_digest, record_digest, verify_content, write_seal,
)
from appliance.rules.cnic import normalise_cnic
from appliance.state.migrate import open_and_upgrade

log = logging.getLogger(__name__)

_BATCH = 2000
_UPSERT = (f"INSERT OR REPLACE INTO offender ({', '.join(OFFENDER_COLUMNS)}) "
           f"VALUES ({', '.join('?' * len(OFFENDER_COLUMNS))})")
_DELETE = "DELETE FROM offender WHERE cnic = ?"
_UPSERT_DIGEST = "INSERT OR REPLACE INTO offender_digest (cnic, digest) VALUES (?, ?)"
_DELETE_DIGEST = "DELETE FROM offender_digest WHERE cnic = ?"
_ACTIVE = "SELECT count(*) FROM offender WHERE status = 'active'"

#: Crash-consistency test hook: when this variable names a point, the process announces it
#: on stderr and waits there to be killed. Unset in service, it costs one dict lookup.
PAUSE_ENV = "NSOR_REGISTRY_PAUSE_AT"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_ENV) == name:
        sys.stderr.write(f"PAUSED {name}\n")
        sys.stderr.flush()
        while True:
            signal.pause()


def recover(db: Path) -> None:
    """Undo what a killed sync left: delete half-built files, roll back a hot journal."""
    for leftover in db.parent.glob(f".{db.name}.new-*"):
        log.warning("removing %s left by an interrupted snapshot install", leftover)
        leftover.unlink(missing_ok=True)
    _roll_back_hot_journal(db)


def _roll_back_hot_journal(db: Path) -> None:
    """Let SQLite roll back a hot journal (any reader does), then drop a journal that was
    not hot -- one whose header never reached the disk before the kill. SQLite ignores
    such a file, but it must not lie beside a snapshot renamed into place. Runs under the
    sync lock, so no other writer can own the journal."""
    journal = db.with_name(db.name + "-journal")
    if not (journal.exists() and db.exists()):
        return
    conn = sqlite3.connect(db)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    except (sqlite3.DatabaseError, ValueError) as exc:
        if isinstance(exc, sqlite3.OperationalError) and "locked" in str(exc):
            raise
        # A damaged file cannot be rolled back; the snapshot replaces it, and the journal
        # must not outlive it (it would be "rolled back" into the new file).
        log.warning("%s is damaged (%s): dropping its journal %s", db, exc, journal)
    finally:
        conn.close()
    if journal.exists():
        log.warning("removing %s: not a hot journal (an interrupted delta never wrote its "
                    "header); the database was not touched", journal)
        journal.unlink(missing_ok=True)
    else:
        log.warning("rolled back an interrupted delta (%s)", journal)


def installed_meta(db: Path) -> dict[str, Any]:
    """The installed file's meta row; empty when there is none, or it is unreadable or
    implausible (then a snapshot replaces it)."""
    if not db.is_file():
        return {}
    try:
        conn = sqlite3.connect(db)
        try:
            meta = read_meta(conn)
        finally:
            conn.close()
    except (sqlite3.Error, ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
        # Damaged metadata (a bad date, undecodable text) must not stop the sync that
        # repairs it: an unknown version means "take the snapshot".
        log.warning("installed registry %s: metadata unreadable (%s); a snapshot will "
                    "replace it", db, exc)
        return {}
    for key in ("version", "record_count"):
        value = meta.get(key)
        if value is not None and (not isinstance(value, int) or isinstance(value, bool)
                                  or value < 0):
            log.warning("installed registry %s: metadata %s is %r; a snapshot will "
                        "replace it", db, key, value)
            return {}
    return meta


def install_snapshot(db: Path, gz: Path, index: Index, *, source: str, now: datetime,
                     installed_version: int | None = None,
                     max_removal_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> int:
    """Decompress, check and swap in the snapshot ``gz``; return its record count.

    Checked before the swap: page structure, schema, version and count, the content
    digest against the signed index (``seal.py``), and, against the installed file, that
    a mass removal carries a signed decision (``removal.py``).
    """
    tmp = db.with_name(f".{db.name}.new-{os.getpid()}")
    try:
        decompress_file(gz, tmp)
        # A snapshot from a publisher on an older release is migrated forward; one with an
        # incompatible newer schema is refused here, and the current registry kept.
        try:
            open_and_upgrade(tmp, REGISTRY_SCHEMA)
        except SchemaError as exc:
            raise SyncError(f"snapshot {gz.name}: {exc}; the current registry is kept") from exc
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            problems = _check_snapshot(conn, index)
            if problems:
                raise SyncError(f"snapshot {gz.name} failed its checks: {'; '.join(problems)};"
                                " the current registry is kept, report this to the publisher")
            removal = compare(conn, db)
            reason = signed_reason(index.mass_removal_between(installed_version,
                                                              index.version))
            if removal.is_mass(max_removal_percent) and reason is not None:
                log.warning("snapshot v%d %s: installed on the publisher's signed decision "
                            "(%s)", index.version, removal.describe(), reason)
            elif removal.is_mass(max_removal_percent):
                raise UnsignedMassRemoval(
                    f"snapshot v{index.version} {removal.describe()} and the signed index "
                    "carries no mass-removal decision for it: refused, the current "
                    "registry is kept; report this to the publisher")
            conn.execute("PRAGMA journal_mode = DELETE")
            conn.execute("BEGIN")
            write_meta(conn, source=source, imported_at=now, signed_at=index.signed_at,
                       expires_at=index.expires_at)
            conn.execute("COMMIT")
        finally:
            conn.close()
        _fsync(tmp)
        pause_point("snapshot-ready")
        _roll_back_hot_journal(db)
        os.replace(tmp, db)
        pause_point("snapshot-swapped")
        _fsync(db.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return index.record_count


def _check_snapshot(conn: sqlite3.Connection, index: Index) -> list[str]:
    # quick_check verifies every page and record format; integrity_check also cross-checks
    # indexes, which this schema does not have (the table is its own primary-key index).
    result = [r[0] for r in conn.execute("PRAGMA quick_check")]
    if result != ["ok"]:
        return [f"quick_check: {'; '.join(result[:5])}"]
    problems = check_schema(conn)
    if problems:
        return problems
    meta = read_meta(conn)
    if meta.get("version") != index.version:
        problems.append(f"file says version {meta.get('version')}, index {index.version}")
    active = conn.execute(_ACTIVE).fetchone()[0]
    if active != index.record_count or meta.get("record_count") != active:
        problems.append(f"{active} active records, meta says {meta.get('record_count')}, "
                        f"index {index.record_count}")
    if index.content_digest is None:
        problems.append("the signed index carries no content digest (a publisher from "
                        "before digests: upgrade the publisher first)")
    elif not problems:
        verification = verify_content(conn, index.content_digest)
        if not verification.ok:
            problems.append(f"content: {verification.problem}")
    return problems


def apply_delta(db: Path, path: Path, ref: DeltaRef, *, source: str, now: datetime,
                max_removal_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> int:
    """Apply one delta file in one transaction; return the resulting active count.

    Before the commit the whole content is verified against the delta's signed content
    digest (a base that was damaged, or a wrong apply, falls back to the snapshot), and a
    mass removal must carry the signed decision in the delta header.
    """
    header, operations = read_delta(path)
    if (header.from_version, header.to_version) != (ref.from_version, ref.to_version):
        raise DeltaUnusable(f"{path.name} holds v{header.from_version}->v{header.to_version}, "
                            f"the index says v{ref.from_version}->v{ref.to_version}")
    if header.content_digest is None:
        raise DeltaUnusable(f"{path.name} carries no content digest (publisher from before "
                            "digests)")
    conn = sqlite3.connect(db, isolation_level=None)
    try:
        conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
        conn.execute("PRAGMA synchronous = FULL")
        conn.execute("BEGIN IMMEDIATE")
        try:
            try:
                installed = read_meta(conn).get("version")
            except (ValueError, TypeError, UnicodeDecodeError, OverflowError) as exc:
                raise DeltaUnusable(f"installed metadata unreadable ({exc})") from exc
            if installed != header.from_version:
                raise DeltaUnusable(f"{path.name} applies to v{header.from_version}, "
                                    f"the registry is v{installed}")
            before = conn.execute(_ACTIVE).fetchone()[0]
            _write_operations(conn, operations, path.name)
            pause_point("delta-applied")
            active = conn.execute(_ACTIVE).fetchone()[0]
            if active != header.record_count:
                raise DeltaUnusable(f"{path.name} left {active} active records, "
                                    f"expected {header.record_count}")
            removal = Removal(int(before), header.removals, int(active))
            reason = signed_reason(header.removal)
            if removal.is_mass(max_removal_percent) and reason is not None:
                log.warning("%s %s: applied on the publisher's signed decision (%s)",
                            path.name, removal.describe(), reason)
            elif removal.is_mass(max_removal_percent):
                raise UnsignedMassRemoval(
                    f"{path.name} {removal.describe()} and its signed header carries no "
                    "mass-removal decision: refused, the current registry is kept; report "
                    "this to the publisher")
            digest, rows = content_digest(conn)
            if digest != header.content_digest:
                raise DeltaUnusable(f"after {path.name} the content digest differs from the "
                                    "signed one (the installed copy was damaged, or the "
                                    "delta does not fit it)")
            write_meta(conn, version=header.to_version, record_count=active,
                       signed_at=header.signed_at, expires_at=header.expires_at,
                       source=source, imported_at=now)
            write_seal(conn, version=header.to_version, record_count=rows,
                       content_digest=digest, removal=header.removal)
            conn.execute("COMMIT")
        except BaseException:
            if conn.in_transaction:
                conn.execute("ROLLBACK")
            raise
    finally:
        conn.close()
    log.info("applied %s (%d upserts, %d removals)", path.name, header.upserts,
             header.removals)
    return int(active)


def _write_operations(conn: sqlite3.Connection, operations: Any, name: str) -> None:
    """Upserts and removals in file order, batched while the kind stays the same."""
    batch: list[tuple[Any, ...]] = []
    kind = ""
    for op in operations:
        if op["op"] != kind:
            _flush(conn, kind, batch)
            kind = op["op"]
        if kind == "upsert":
            record = op.get("record")
            row, problems = validate_row(record if isinstance(record, dict) else {})
            if row is None:
                raise SyncError(f"delta {name}: bad record {problems}; the current registry "
                                "is kept, report this to the publisher")
            digest = op.get("digest")
            if not is_digest(digest) or digest != record_digest(row):
                raise SyncError(f"delta {name}: record {row[0]} does not match its signed "
                                "digest; the current registry is kept, report this to the "
                                "publisher")
            batch.append((*row, digest))
        else:
            cnic = normalise_cnic(str(op.get("cnic", "")))
            if cnic is None:
                raise SyncError(f"delta {name}: removal of a malformed CNIC")
            batch.append((cnic,))
        if len(batch) >= _BATCH:
            _flush(conn, kind, batch)
    _flush(conn, kind, batch)


def _flush(conn: sqlite3.Connection, kind: str, batch: list[tuple[Any, ...]]) -> None:
    if batch:
        if kind == "upsert":
            conn.executemany(_UPSERT, [row[:-1] for row in batch])
            conn.executemany(_UPSERT_DIGEST, [(row[0], row[-1]) for row in batch])
        else:
            conn.executemany(_DELETE, batch)
            conn.executemany(_DELETE_DIGEST, batch)
        batch.clear()
