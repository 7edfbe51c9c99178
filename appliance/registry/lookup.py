"""Exact CNIC lookup in the installed ``registry.db``, safe while the file is replaced.

A sync replaces the whole file by ``rename()`` (snapshot) or patches it in one transaction
(delta), possibly from another process (``python -m appliance sync``). :class:`Registry`
therefore compares the path's ``(st_dev, st_ino)`` with the open file's before each
lookup -- one ``stat()``, about 1 µs -- and reopens when a new file was swapped in. Deltas
need nothing special: SQLite readers see a committed transaction on their next statement.

Removed records are honoured at lookup: a row whose status is ``removed`` answers ``None``
exactly like an absent CNIC, so no code path can turn it into a "convict" reply.

A missing or unreadable registry is *not* "no record": :meth:`Registry.lookup` raises
:class:`~appliance.errors.RegistryError`, and the responder answers "service temporarily
unavailable" (DESIGN.md decision 6). :func:`is_stale` applies the same rule to age.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path

from appliance.errors import RegistryError, SchemaError
from appliance.migrate import open_and_upgrade
from appliance.registry.models import OFFENDER_COLUMNS, REGISTRY_SCHEMA, read_meta, row_to_record
from appliance.registry.record import OffenderRecord

log = logging.getLogger(__name__)

_SELECT = f"SELECT {', '.join(OFFENDER_COLUMNS)} FROM offender WHERE cnic = ?"

#: How long a lookup waits for a delta's commit (which holds SQLite's EXCLUSIVE lock for
#: the few milliseconds of writing its pages) before giving up.
BUSY_TIMEOUT_MS = 2000

#: A clock this far *behind* the registry's signing time is not trusted to judge age (a
#: Pi without RTC boots in 1970 or at its last shutdown); beyond it the registry is stale.
CLOCK_SKEW = timedelta(minutes=10)


@dataclass(frozen=True, slots=True)
class RegistryInfo:
    """What is installed. Every field is ``None`` when unknown; ``exists`` is False when
    there is no usable file at ``path`` (then ``error`` says why)."""

    path: Path
    exists: bool
    version: int | None = None
    record_count: int | None = None
    source: str | None = None
    imported_at: datetime | None = None
    signed_at: datetime | None = None
    expires_at: datetime | None = None
    verified_at: datetime | None = None
    error: str | None = None

    @property
    def reference_time(self) -> datetime | None:
        """The time the data is last vouched for: the later of the publisher's signature
        and the last sync that verified this version is still the newest; for a registry
        that was imported by hand, the import."""
        vouched = [t for t in (self.signed_at, self.verified_at) if t is not None]
        return max(vouched) if vouched else self.imported_at

    def age(self, now: datetime) -> timedelta | None:
        ref = self.reference_time
        return None if ref is None else now - ref


def is_stale(info: RegistryInfo, max_age: timedelta, now: datetime) -> bool:
    """True when no verdict may be given from this registry.

    Stale means: no file, no known reference time, older than ``max_age``, or a clock so
    far behind the signing time that age cannot be judged (see :data:`CLOCK_SKEW`). The
    service answers "service temporarily unavailable" -- never "no record", and no hit
    either, since a stale record may since have been removed (issue 4, point 4).
    """
    if not info.exists:
        return True
    age = info.age(now)
    if age is None:
        return True
    return age > max_age or age < -CLOCK_SKEW


class Registry:
    """Thread-safe, read-only access to ``registry.db`` at ``path``.

    One ``sqlite3`` connection, guarded by a lock: a lookup is a single B-tree probe
    (microseconds), far shorter than any contention it could cause at SMS rates, and one
    connection keeps the reopen-on-swap logic in one place.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None

    # -- public API -----------------------------------------------------------------------

    def lookup(self, cnic: str) -> OffenderRecord | None:
        """The *active* record for a 13-digit ``cnic``, or ``None`` (absent or removed).

        Raises :class:`RegistryError` when there is no usable registry file.
        """
        with self._lock:
            conn = self._current()
            try:
                row = conn.execute(_SELECT, (cnic,)).fetchone()
            except sqlite3.Error as exc:
                self._close()
                raise RegistryError(
                    f"registry {self.path}: lookup failed ({exc}); "
                    "run `python -m appliance sync` to fetch a fresh copy") from exc
        if row is None:
            return None
        record = row_to_record(row)
        return record if record.is_active else None

    def info(self) -> RegistryInfo:
        """Version, counts and times of the installed file; never raises."""
        with self._lock:
            try:
                conn = self._current()
                meta = read_meta(conn)
            except (RegistryError, sqlite3.Error) as exc:
                self._close()
                return RegistryInfo(path=self.path, exists=False, error=str(exc))
        return RegistryInfo(
            path=self.path, exists=True, version=meta.get("version"),
            record_count=meta.get("record_count"), source=meta.get("source"),
            imported_at=meta.get("imported_at"), signed_at=meta.get("signed_at"),
            expires_at=meta.get("expires_at"), verified_at=meta.get("verified_at"))

    def age(self, now: datetime) -> timedelta | None:
        """``now`` minus the signing time (else the import time); ``None`` when unknown."""
        return self.info().age(now)

    def close(self) -> None:
        with self._lock:
            self._close()

    def __enter__(self) -> Registry:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # -- internals ------------------------------------------------------------------------

    def _current(self) -> sqlite3.Connection:
        """The connection to the file now at ``path``, reopened if it was swapped."""
        try:
            st = os.stat(self.path)
        except FileNotFoundError:
            self._close()
            raise RegistryError(
                f"registry {self.path} does not exist; run `python -m appliance sync` "
                "or `python -m appliance registry import FILE`") from None
        identity = (st.st_dev, st.st_ino)
        if self._conn is None or identity != self._identity:
            self._close()
            self._conn = self._open(identity)
            self._identity = identity
        return self._conn

    def _open(self, identity: tuple[int, int]) -> sqlite3.Connection:
        try:
            # Read-write open (query_only on): a hot journal left by a killed delta must
            # be rolled back by the first reader, which a mode=ro connection cannot do.
            conn = sqlite3.connect(self.path, check_same_thread=False,
                                   isolation_level=None, cached_statements=16)
            conn.execute(f"PRAGMA busy_timeout = {BUSY_TIMEOUT_MS}")
            if conn.execute("PRAGMA user_version").fetchone()[0] != REGISTRY_SCHEMA.current:
                _migrate(self.path)  # older: migrated; newer: used only if compatible
            conn.execute("PRAGMA query_only = 1")
            conn.execute("SELECT 1 FROM registry_meta LIMIT 1").fetchall()
        except sqlite3.Error as exc:
            raise RegistryError(
                f"registry {self.path} is not a readable registry ({exc}); "
                "run `python -m appliance sync` to replace it") from exc
        log.debug("registry %s opened (inode %d)", self.path, identity[1])
        return conn

    def _close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
            self._identity = None


def _migrate(path: Path) -> None:
    """Migrate an installed registry.db forward; a file this release cannot use is no
    registry (the unit answers "unavailable" until a sync replaces it)."""
    try:
        open_and_upgrade(path, REGISTRY_SCHEMA)
    except SchemaError as exc:
        raise RegistryError(f"registry {path}: {exc}") from exc
