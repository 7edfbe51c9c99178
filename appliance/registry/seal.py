"""Digests that tie every verdict to what the publisher signed (docs/design.md decision 8).

SQLite's ``integrity_check`` sees a broken B-tree, not a changed digit: one flipped bit in
an offender's CNIC leaves a valid file in which an innocent number is a "convict" and the
offender is "no record". Two digests, computed by the publisher and carried inside what
it signs (the snapshot file, the delta lines, ``index.json``), close that gap:

* the **record digest** of one row: ``sha256(b"nsor-record-v1\\x1f" + canonical)``, first
  128 bits as 32 lowercase hex digits, where ``canonical`` is the UTF-8 encoding of the
  row's fields in column order -- ``cnic, name_ur, name_en, parent_ur, parent_en,
  relation, status, recorded_on, updated_on`` (a missing date is the empty string) --
  joined by U+001F. No field may contain a control character (the importer refuses
  them), so the encoding is unambiguous. The unit recomputes it from the row it read
  before a "convict" reply leaves (``lookup.py``).
* the **content digest** of a whole version: ``sha256(b"nsor-content-v1\\x1e" + stream)``
  in full (64 hex digits), where ``stream`` is, for every ``offender`` row in ascending
  CNIC order, ``canonical + U+001F + record digest + U+001E``. It covers every row, every
  stored record digest and the number of rows, so a lost, added or altered row (or
  digest) changes it. The unit recomputes it at start-up, after every apply and on a
  schedule; the cost is one sequential scan (``scripts/bench_registry.py`` measures it).

Both live in ``registry.db`` in tables of their own (``offender_digest``,
``registry_seal``), which firmware older than this scheme ignores. The expected content
digest in ``registry_seal`` is copied from signed material (the snapshot, the delta
header); a bit flip in it fails verification, which is the safe direction.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import time
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from appliance.registry.models import OFFENDER_COLUMNS

SCHEME = "nsor-seal-v1"
RECORD_TAG = b"nsor-record-v1\x1f"
CONTENT_TAG = b"nsor-content-v1\x1e"
FIELD_SEP = "\x1f"
ROW_END = "\x1e"
DIGEST_HEX = 32
_HEX = frozenset("0123456789abcdef")
_BATCH = 4096

# The stream, built by SQLite itself: one string per row (with the CNIC and whether it is
# active, for the verified CNIC list of lookup.py), not one Python object per field.
_FIELDS_SQL = " || x'1f' || ".join(
    f"coalesce(o.{c}, '')" if c in ("recorded_on", "updated_on") else f"o.{c}"
    for c in OFFENDER_COLUMNS)
# A row whose fields are not all text (one flipped bit turns a TEXT serial type into a BLOB
# of the same bytes, which `||` would concatenate unchanged) yields NULL, which no
# publisher's stream contains, so the content digest differs.
_TYPES_OK = " AND ".join(
    [f"typeof(o.{c}) = 'text'" for c in OFFENDER_COLUMNS if c not in ("recorded_on",
                                                                    "updated_on")]
    + [f"typeof(o.{c}) IN ('text', 'null')" for c in ("recorded_on", "updated_on")]
    + ["typeof(d.digest) = 'text'"])
_STREAM = (f"SELECT CASE WHEN {_TYPES_OK} THEN {_FIELDS_SQL} || x'1f' || d.digest || x'1e' "
           "END, o.cnic, o.status = 'active' FROM offender o "
           "LEFT JOIN offender_digest d ON d.cnic = o.cnic ORDER BY o.cnic")


def canonical(values: Sequence[object]) -> bytes | None:
    """The canonical encoding of a row in OFFENDER_COLUMNS order; None when a field is
    not text (only a damaged file has such a row)."""
    parts: list[str] = []
    for index, value in enumerate(values):
        if value is None and OFFENDER_COLUMNS[index] in ("recorded_on", "updated_on"):
            value = ""
        if not isinstance(value, str):
            return None
        parts.append(value)
    try:
        return FIELD_SEP.join(parts).encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: not a publisher's text
        return None


def record_digest(values: Sequence[object]) -> str | None:
    """The record digest of a row (OFFENDER_COLUMNS order), or None if it has none."""
    encoded = canonical(values)
    if encoded is None:
        return None
    return hashlib.sha256(RECORD_TAG + encoded).hexdigest()[:DIGEST_HEX]


def is_digest(value: object, length: int = DIGEST_HEX) -> bool:
    return isinstance(value, str) and len(value) == length and set(value) <= _HEX


@dataclass(frozen=True, slots=True)
class Seal:
    """The ``registry_seal`` row: what was signed about this file's content."""

    scheme: str | None
    version: int | None
    record_count: int | None
    content_digest: str | None
    removal: dict[str, Any] | None


def read_seal(conn: sqlite3.Connection) -> Seal | None:
    """The seal row, or None when there is none (a file from before digests)."""
    try:
        row = conn.execute("SELECT scheme, version, record_count, content_digest, removal "
                           "FROM registry_seal WHERE id = 1").fetchone()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return None
        raise
    if row is None:
        return None
    removal: dict[str, Any] | None = None
    if isinstance(row[4], str):
        try:
            parsed = json.loads(row[4])
            removal = parsed if isinstance(parsed, dict) else None
        except ValueError:
            removal = None
    scheme, version, count, digest = row[:4]
    return Seal(scheme=scheme if isinstance(scheme, str) else None,
                version=version if isinstance(version, int) else None,
                record_count=count if isinstance(count, int) else None,
                content_digest=digest if isinstance(digest, str) else None,
                removal=removal)


def write_seal(conn: sqlite3.Connection, *, version: int | None, record_count: int,
               content_digest: str, removal: dict[str, Any] | None) -> None:
    """Set the seal row inside the caller's transaction."""
    conn.execute("INSERT OR REPLACE INTO registry_seal (id, scheme, version, record_count, "
                 "content_digest, removal) VALUES (1, ?, ?, ?, ?, ?)",
                 (SCHEME, version, record_count, content_digest,
                  None if removal is None else json.dumps(removal, ensure_ascii=False,
                                                          sort_keys=True)))


def content_digest(conn: sqlite3.Connection,
                   active: array[int] | None = None) -> tuple[str, int]:
    """(content digest, rows) of the ``offender`` table as it is now in ``conn``; when
    ``active`` is given, the active CNICs are appended to it as integers, in order.

    Raises sqlite3.Error on an unreadable file; a row without a record digest (or with a
    field that is not text) makes the digest differ instead of raising.
    """
    digest = hashlib.sha256(CONTENT_TAG)
    rows = 0
    saved = conn.text_factory
    conn.text_factory = bytes  # bytes as stored: no decoding, and bad UTF-8 cannot raise
    try:
        cursor = conn.execute(_STREAM)
        while batch := cursor.fetchmany(_BATCH):
            rows += len(batch)
            digest.update(b"".join(r[0] if isinstance(r[0], bytes) else b"\x00" + repr(
                r[0]).encode() for r in batch))
            if active is not None:
                # A damaged CNIC fails the digest anyway; int() just must not stop us.
                active.extend(int(r[1]) for r in batch
                              if r[2] and isinstance(r[1], bytes) and r[1].isdigit())
    finally:
        conn.text_factory = saved
    return digest.hexdigest(), rows


def seal_database(conn: sqlite3.Connection, *, version: int | None,
                  removal: dict[str, Any] | None = None) -> tuple[str, int]:
    """Publisher and importer: compute every row's record digest into
    ``offender_digest``, then the content digest into ``registry_seal``, inside the
    caller's transaction. Returns (content digest, rows)."""
    conn.execute("DELETE FROM offender_digest")
    select = conn.execute(f"SELECT {', '.join(OFFENDER_COLUMNS)} FROM offender ORDER BY cnic")
    insert = conn.cursor()
    while batch := select.fetchmany(_BATCH):
        pairs = []
        for row in batch:
            digest = record_digest(row)
            if digest is None:
                raise ValueError(f"row {row[0]!r} has a field that is not text")
            pairs.append((row[0], digest))
        insert.executemany("INSERT INTO offender_digest (cnic, digest) VALUES (?, ?)", pairs)
    digest, rows = content_digest(conn)
    write_seal(conn, version=version, record_count=rows, content_digest=digest,
               removal=removal)
    return digest, rows


@dataclass(frozen=True, slots=True)
class Verification:
    """The result of checking a whole file against its seal."""

    ok: bool
    problem: str | None
    rows: int
    seconds: float
    version: int | None = None
    content_digest: str | None = None
    #: The verified file's active CNICs as sorted integers (8 bytes each), when asked for.
    active: array[int] | None = field(default=None, repr=False, compare=False)


def verify_content(conn: sqlite3.Connection, expected: str | None = None, *,
                   collect_active: bool = False) -> Verification:
    """Check the content of ``conn``'s registry against its seal (and ``expected``, a
    content digest from signed metadata, when given). Never raises."""
    started = time.monotonic()

    def failed(problem: str, rows: int = 0, version: int | None = None) -> Verification:
        return Verification(False, problem, rows, time.monotonic() - started, version)

    try:
        seal = read_seal(conn)
        if seal is None or seal.scheme != SCHEME:
            return failed("the file carries no content digest (made before digests, or "
                          "its seal is damaged)")
        if not is_digest(seal.content_digest, 64):
            return failed("the signed content digest in registry_seal is damaged")
        if expected is not None and seal.content_digest != expected:
            return failed("registry_seal holds another content digest than the signed "
                          "metadata", version=seal.version)
        meta = conn.execute("SELECT version, record_count FROM registry_meta "
                            "WHERE id = 1").fetchone()
        if meta is None or meta[0] != seal.version:
            return failed(f"registry_meta says version {meta and meta[0]!r}, the seal "
                          f"{seal.version!r}", version=seal.version)
        cnics = array("q") if collect_active else None
        digest, rows = content_digest(conn, cnics)
        if digest != seal.content_digest or rows != seal.record_count:
            return failed(f"content digest of {rows} rows differs from the signed one "
                          f"({seal.record_count} rows)", rows, seal.version)
        active = conn.execute(
            "SELECT count(*) FROM offender WHERE status = 'active'").fetchone()[0]
        if meta[1] != active:
            return failed(f"registry_meta counts {meta[1]!r} active records, the table "
                          f"holds {active}", rows, seal.version)
    except (sqlite3.Error, MemoryError, ValueError, OverflowError) as exc:
        return failed(f"unreadable while verifying ({type(exc).__name__}: {exc})")
    return Verification(True, None, rows, time.monotonic() - started, seal.version, digest,
                        cnics)


def verify_file(path: Path, expected: str | None = None, *,
                collect_active: bool = False) -> Verification:
    """:func:`verify_content` on a fresh connection to ``path`` (read-write open with
    ``query_only``, as in ``lookup.py``: a hot journal must be rolled back, not read)."""
    if not path.is_file():
        return Verification(False, f"{path} does not exist", 0, 0.0)
    try:
        conn = sqlite3.connect(path, isolation_level=None)
    except (sqlite3.Error, ValueError) as exc:
        return Verification(False, f"cannot open {path} ({exc})", 0, 0.0)
    try:
        conn.execute("PRAGMA busy_timeout = 5000")
        conn.execute("PRAGMA query_only = 1")
        return verify_content(conn, expected, collect_active=collect_active)
    except (sqlite3.Error, ValueError) as exc:
        return Verification(False, f"cannot read {path} ({exc})", 0, 0.0)
    finally:
        conn.close()
