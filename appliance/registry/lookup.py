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
unavailable" (docs/design.md decision 6). :func:`is_stale` applies the same rule to age.

Every row a lookup reads is checked against its signed record digest (``seal.py``) before
it can become a verdict, and :meth:`Registry.verify` checks the whole content against the
signed content digest. A verification that passes also keeps the file's active CNICs as
sorted 64-bit integers (8 MB at 1M records): a lookup that finds nothing, in the same
file at the same signed content, asks them, so a row lost since (a CNIC digit flipped
on the card, a page gone) is "unavailable" at once instead of "no record" until the next
verification. It costs a no-record lookup one point query on ``registry_seal``.

Either failure makes the registry *corrupt*: every later lookup raises
:class:`RegistryCorrupt` (so the citizen is told "service temporarily unavailable") until
a verification of the file at ``path`` passes again, which is what the repair (a fresh
snapshot) brings. ``on_corrupt(message)`` is told once per transition.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from array import array
from bisect import bisect_left
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from appliance.errors import RegistryCorrupt, RegistryError, SchemaError
from appliance.registry.models import (
    OFFENDER_COLUMNS, REGISTRY_SCHEMA, SCHEMA_VERSION, from_iso, row_to_record,
)
from appliance.registry.record import OffenderRecord
from appliance.registry.seal import Verification, record_digest, verify_file
from appliance.state.migrate import open_and_upgrade

log = logging.getLogger(__name__)

_SELECT = (f"SELECT {', '.join('o.' + c for c in OFFENDER_COLUMNS)}, d.digest "
           "FROM offender o LEFT JOIN offender_digest d ON d.cnic = o.cnic "
           "WHERE o.cnic = ?")
_META = ("SELECT schema_version, version, source, record_count, imported_at, signed_at, "
         "expires_at, verified_at FROM registry_meta WHERE id = 1")
_TIMES = ("imported_at", "signed_at", "expires_at", "verified_at")


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
    def usable(self) -> bool:
        """A file is there and its metadata could be read (it may still be stale)."""
        return self.exists and self.error is None

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
    if not info.usable:
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

    def __init__(self, path: Path | str, *,
                 on_corrupt: Callable[[str], None] | None = None) -> None:
        self.path = Path(path)
        self.on_corrupt = on_corrupt
        self._lock = threading.Lock()
        self._conn: sqlite3.Connection | None = None
        self._identity: tuple[int, int] | None = None
        self._corrupt: str | None = None
        # Corrupt marks made so far: a verification clears the mark only if none was made
        # while it scanned (a lookup that met a bad row mid-scan, after the scan read it).
        self._marks = 0
        self._verified_mono = 0.0
        self._verified: tuple[tuple[object, ...] | None, Verification] | None = None
        self._active: tuple[tuple[object, ...] | None, array[int]] | None = None

    # -- public API -----------------------------------------------------------------------

    def lookup(self, cnic: str) -> OffenderRecord | None:
        """The *active* record for a 13-digit ``cnic``, or ``None`` (absent or removed).

        Raises :class:`RegistryError` when there is no usable registry file, and
        :class:`RegistryCorrupt` when the row read does not match its signed digest or
        the last verification of the file failed.
        """
        with self._lock:
            if self._corrupt is not None:
                raise RegistryCorrupt(self._corrupt)
            conn = self._current()
            failure: Exception | None = None
            lost = False
            try:
                row = conn.execute(_SELECT, (cnic,)).fetchone()
                lost = row is None and self._verified_holds(conn, cnic)
            except (sqlite3.Error, ValueError) as exc:  # ValueError: undecodable UTF-8
                self._close()
                failure = exc
        if failure is not None:
            message = (f"registry {self.path}: lookup failed ({failure}); run "
                       "`python -m appliance sync` to fetch a fresh copy")
            text = str(failure).lower()
            if not ("locked" in text or "busy" in text):
                # A malformed page, undecodable text, a missing table: the file is damaged.
                self._mark_corrupt(message)
            raise RegistryError(message) from failure
        if lost:
            self._mark_corrupt(f"registry {self.path}: an active record the last "
                               "verification saw is gone; every query is answered 'service "
                               "temporarily unavailable' until a fresh snapshot is installed")
            assert self._corrupt is not None
            raise RegistryCorrupt(self._corrupt)
        if row is None:
            return None
        record = self._checked(cnic, row)
        return record if record.is_active else None

    def _verified_holds(self, conn: sqlite3.Connection, cnic: str) -> bool:
        """True when the last passed verification of this very file (same inode, same
        signed content digest) saw ``cnic`` active. Called under the lock."""
        kept = self._active
        if kept is None or self._identity is None or not cnic.isdigit():
            return False
        seal = conn.execute("SELECT content_digest FROM registry_seal WHERE id = 1").fetchone()
        if (*self._identity, None if seal is None else seal[0]) != kept[0]:
            return False  # another file or version: nothing to compare with yet
        number = int(cnic)
        index = bisect_left(kept[1], number)
        return index < len(kept[1]) and kept[1][index] == number

    def _checked(self, cnic: str, row: tuple[Any, ...]) -> OffenderRecord:
        """The record of ``row`` if it is exactly what the publisher signed."""
        values, digest = row[:-1], row[-1]
        problem: str | None = None
        if values[0] != cnic:
            problem = "returned another CNIC than the one asked for"
        elif not isinstance(digest, str) or record_digest(values) != digest:
            problem = ("a record does not match its signed digest" if digest is not None
                       else "a record has no signed digest")
        else:
            try:
                return row_to_record(values)
            except (RegistryError, ValueError, TypeError) as exc:
                problem = f"a record matching its digest is not valid ({exc})"
        self._mark_corrupt(f"registry {self.path}: {problem}; every query is answered "
                           "'service temporarily unavailable' until a fresh snapshot is "
                           "installed (python -m appliance sync)")
        assert self._corrupt is not None
        raise RegistryCorrupt(self._corrupt)

    # -- whole-content verification ---------------------------------------------------------

    @property
    def corrupt(self) -> str | None:
        """Why no verdict may be given from this file, or None."""
        return self._corrupt

    def verify(self, expected: str | None = None) -> Verification:
        """Check the whole file against its signed content digest (``seal.py``; and
        against ``expected`` when given); a failure makes the registry corrupt, a success
        on the file now at ``path`` clears that. Runs on its own connection: lookups go
        on meanwhile."""
        with self._lock:
            marks = self._marks
        before = self._file_identity()
        result = verify_file(self.path, expected, collect_active=True)
        after = self._file_identity()
        if before != after:  # swapped or patched during the scan: judge the new file
            result = verify_file(self.path, expected, collect_active=True)
        if result.ok:
            # The content digest does not cover the times in registry_meta.
            info = self.info()
            if not info.usable:
                result = Verification(False, info.error, result.rows, result.seconds,
                                      result.version)
        with self._lock:
            self._verified = (after, result)
            self._verified_mono = time.monotonic()
            self._active = (after, result.active) if result.ok and result.active is not None \
                else None
            if result.ok and self._marks != marks:
                # A lookup found damage while this scan ran (bytes that changed after the
                # scan read them): the scan does not vouch for them. Forgotten, so that
                # the change check verifies again within seconds (integrity.py).
                self._verified = None
                log.warning("registry %s: verified, but a lookup found it damaged during "
                            "the scan; still corrupt until the next verification", self.path)
            elif result.ok:
                if self._corrupt is not None:
                    log.warning("registry %s verified again (%d rows): verdicts resume",
                                self.path, result.rows)
                self._corrupt = None
        if not result.ok:
            self._mark_corrupt(f"registry {self.path} failed verification: {result.problem};"
                               " every query is answered 'service temporarily unavailable' "
                               "until a fresh snapshot is installed")
        return result

    def verify_recent(self, expected: str | None, max_age_s: float) -> Verification:
        """The last verification if it judged the file now at ``path``, passed, matched
        ``expected`` and is younger than ``max_age_s``; otherwise a new one. What the
        service gives its sync as ``verifier``: an urgent check then costs no scan."""
        with self._lock:
            verified, at = self._verified, self._verified_mono
        if (verified is not None and verified[1].ok and time.monotonic() - at < max_age_s
                and (expected is None or verified[1].content_digest == expected)
                and verified[0] == self._file_identity()):
            return verified[1]
        return self.verify(expected)

    def last_verification(self) -> Verification | None:
        with self._lock:
            return None if self._verified is None else self._verified[1]

    def needs_verification(self) -> bool:
        """True when the file at ``path`` is not the one last verified (a sync, possibly
        by another process, replaced or patched it), or none was verified yet."""
        with self._lock:
            verified = self._verified
        return verified is None or verified[0] != self._file_identity()

    def _file_identity(self) -> tuple[object, ...] | None:
        """Which file, at which signed content, is at ``path``: its inode and the content
        digest in its seal. A sync's ``verified_at`` write does not change it; a delta
        (new digest) or a snapshot (new inode) does. Never raises."""
        try:
            st = os.stat(self.path)
        except OSError:
            return None
        try:
            conn = sqlite3.connect(self.path, isolation_level=None)
            try:
                conn.execute("PRAGMA query_only = 1")
                row = conn.execute("SELECT content_digest FROM registry_seal "
                                   "WHERE id = 1").fetchone()
            finally:
                conn.close()
        except (sqlite3.Error, ValueError):  # ValueError: a damaged, undecodable digest
            row = ("unreadable",)
        return (st.st_dev, st.st_ino, None if row is None else row[0])

    def _mark_corrupt(self, message: str) -> None:
        with self._lock:
            first = self._corrupt is None
            self._corrupt = message
            self._marks += 1
        if first:
            log.error("%s", message)
            if self.on_corrupt is not None:
                try:
                    self.on_corrupt(message)
                except Exception:  # the alarm sink's bug must not turn into a verdict
                    log.exception("on_corrupt callback failed")

    # -- metadata ---------------------------------------------------------------------------

    def info(self) -> RegistryInfo:
        """Version, counts and times of the installed file; never raises.

        Unreadable or implausible metadata (a date that is not one, a count that is not a
        number) gives ``exists=True`` with ``error`` set: the file is there, but no
        verdict may come from it (:attr:`RegistryInfo.usable` is False).
        """
        try:
            with self._lock:
                try:
                    conn = self._current()
                    row = conn.execute(_META).fetchone()
                    # O(1): an emptied offender table under metadata that counts records
                    # would answer "no record" to everyone until the next verification.
                    empty = not conn.execute("SELECT EXISTS (SELECT 1 FROM offender)"
                                             ).fetchone()[0]
                except (RegistryError, sqlite3.Error, ValueError) as exc:
                    self._close()  # ValueError: undecodable UTF-8 in the meta row
                    return RegistryInfo(path=self.path, exists=False, error=str(exc))
            info = _info_from_row(self.path, row)
            if empty and info.usable and info.record_count:
                return RegistryInfo(path=self.path, exists=True, error=(
                    f"registry {self.path}: the offender table is empty but the metadata "
                    f"counts {info.record_count} records; every query is answered "
                    "'unavailable' until `python -m appliance sync` installs a fresh copy"))
            return info
        except Exception as exc:  # noqa: BLE001 - documented as never raising
            return RegistryInfo(path=self.path, exists=False,
                                error=f"registry {self.path}: unreadable ({exc!r})")

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

    def _open(self, identity: tuple[int, int]) -> sqlite3.Connection:  # noqa: ARG002
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
        except (sqlite3.Error, ValueError) as exc:  # ValueError: an undecodable message
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


def _info_from_row(path: Path, row: tuple[Any, ...] | None) -> RegistryInfo:
    """Decode the meta row, refusing what is not plausible instead of raising."""
    damaged = f"registry {path}: metadata (registry_meta) is damaged"
    if row is None:
        return RegistryInfo(path=path, exists=True,
                            error=f"{damaged}: no row; run `python -m appliance sync`")
    schema, version, source, count = row[:4]
    problems: list[str] = []
    # A newer, compatible schema is allowed (appliance.state.migrate decided so when it opened
    # the file); anything else is damage.
    if not (isinstance(schema, int) and SCHEMA_VERSION <= schema < 2**16):
        problems.append(f"schema_version {schema!r}")
    if not _count(version, allow_none=True):
        problems.append(f"version {version!r}")
    if not _count(count):
        problems.append(f"record_count {count!r}")
    if source is not None and not isinstance(source, str):
        problems.append("source is not text")
    times: dict[str, datetime | None] = {}
    for key, value in zip(_TIMES, row[4:]):
        times[key] = None
        if value is None:
            continue
        try:
            if not isinstance(value, str):
                raise TypeError(type(value).__name__)
            times[key] = from_iso(value)
        except (ValueError, TypeError, OverflowError):
            problems.append(f"{key} {value!r:.40}")
    if problems:
        return RegistryInfo(path=path, exists=True,
                            error=f"{damaged} ({'; '.join(problems)}); every query is "
                                  "answered 'unavailable' until `python -m appliance sync` "
                                  "installs a fresh copy")
    return RegistryInfo(path=path, exists=True, version=version, record_count=count,
                        source=source, imported_at=times["imported_at"],
                        signed_at=times["signed_at"], expires_at=times["expires_at"],
                        verified_at=times["verified_at"])


def _count(value: object, *, allow_none: bool = False) -> bool:
    if value is None:
        return allow_none
    return isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 2**62


def _migrate(path: Path) -> None:
    """Migrate an installed registry.db forward; a file this release cannot use is no
    registry (the unit answers "unavailable" until a sync replaces it)."""
    try:
        open_and_upgrade(path, REGISTRY_SCHEMA)
    except SchemaError as exc:
        raise RegistryError(f"registry {path}: {exc}") from exc
