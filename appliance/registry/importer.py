"""Turn an operator's export (CSV or NDJSON) into a complete ``registry.db`` file.

Used by ``python -m appliance registry import`` on a unit (demo, bench, offline install)
and by the publisher, which ships the resulting file as the signed snapshot. Every row is
validated and *all* problems are reported at once with their line numbers, so an operator
fixes an export in one pass rather than one error per run.

The database is built in a new file next to ``db_path`` and moved over it with
``os.replace`` only once it is complete, so a live unit keeps answering from the old file
and a crash mid-import leaves the old file untouched.

Export columns (CSV header or NDJSON keys): ``cnic, name_ur, name_en, parent_ur,
parent_en, relation, status`` and optionally ``recorded_on, updated_on`` (``YYYY-MM-DD``).
CSV lines starting with ``#`` are comments. A CNIC may be written with dashes or spaces.
"""

from __future__ import annotations

import csv
import gzip
import json
import logging
import os
import sqlite3
import unicodedata
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import date, datetime, timezone
from pathlib import Path
from typing import Any

from appliance.errors import RegistryError
from appliance.registry.models import OFFENDER_COLUMNS, create_schema, write_meta
from appliance.registry.record import RELATIONS, STATUSES
from appliance.registry.removal import DEFAULT_MAX_REMOVAL_PERCENT, compare, decide
from appliance.registry.seal import seal_database
from appliance.rules.cnic import normalise_cnic

log = logging.getLogger(__name__)

#: The fictional sample registry shipped for the demo, the simulator and tests.
SAMPLE_REGISTRY = Path(__file__).resolve().parent.parent / "data" / "sample_registry.csv"

REQUIRED = ("cnic", "name_ur", "name_en", "parent_ur", "parent_en", "relation", "status")
OPTIONAL = ("recorded_on", "updated_on")
MAX_REPORTED = 20
_BATCH = 5000

#: Characters no name may contain. Bidi embeddings, overrides and isolates (U+202A-U+202E,
#: U+2066-U+2069) can make an SMS show another name, or another CNIC, than the one sent;
#: a line break splits a reply's line into two. Control characters (including U+001F and
#: U+001E, the separators of the record digest, seal.py) have no place in a name either.
_FORBIDDEN = frozenset("\u202a\u202b\u202c\u202d\u202e\u2066\u2067\u2068\u2069"
                       "\u2028\u2029\u0085")


def forbidden_characters(text: str) -> list[str]:
    """Code points of ``text`` a registry field may not contain, as ``U+XXXX``."""
    return sorted({f"U+{ord(ch):04X}" for ch in text
                   if ch in _FORBIDDEN or unicodedata.category(ch) == "Cc"})


def validate_row(raw: dict[str, Any]) -> tuple[tuple[Any, ...] | None, list[str]]:
    """One export row -> (row in OFFENDER_COLUMNS order, problems). Row is None on problems."""
    problems: list[str] = []
    unknown = set(raw) - set(REQUIRED) - set(OPTIONAL)
    if unknown:
        problems.append(f"unknown field(s) {', '.join(sorted(unknown))}")
    values: dict[str, Any] = {}
    for key in REQUIRED + OPTIONAL:
        value = raw.get(key)
        if value is None:
            value = ""
        if not isinstance(value, str):
            problems.append(f"{key} must be text, got {type(value).__name__}")
            value = ""
        # NFC so that the same name typed on two keyboards compares equal in a delta.
        values[key] = unicodedata.normalize("NFC", value.strip())
        bad = forbidden_characters(values[key])
        if bad:
            problems.append(f"{key} contains {', '.join(bad)} (bidi control, line break or "
                            "control character); remove it from the export")
    missing = [k for k in REQUIRED if k not in raw]
    if missing:
        problems.append(f"missing field(s) {', '.join(missing)}")
    cnic = normalise_cnic(values["cnic"])
    if cnic is None:
        problems.append(f"cnic {values['cnic']!r} is not 13 digits")
    relation = values["relation"].lower()
    if relation not in RELATIONS:
        problems.append(f"relation {values['relation']!r} is not one of {', '.join(RELATIONS)}")
    status = values["status"].lower()
    if status not in STATUSES:
        problems.append(f"status {values['status']!r} is not one of {', '.join(STATUSES)}")
    if not (values["name_ur"] or values["name_en"]):
        problems.append("no name in either script (name_ur, name_en)")
    if not (values["parent_ur"] or values["parent_en"]):
        problems.append("no parent's name in either script (parent_ur, parent_en)")
    dates: list[str | None] = []
    for key in OPTIONAL:
        text = values[key]
        if not text:
            dates.append(None)
            continue
        try:
            dates.append(date.fromisoformat(text).isoformat())
        except ValueError:
            problems.append(f"{key} {text!r} is not a YYYY-MM-DD date")
            dates.append(None)
    if problems:
        return None, problems
    return (cnic, values["name_ur"], values["name_en"], values["parent_ur"],
            values["parent_en"], relation, status, *dates), []


def read_export(src: Path) -> Iterator[tuple[int, dict[str, Any] | str]]:
    """(line number, row dict) per record, or (line number, problem text) for a bad line.

    The format is taken from the suffix: ``.ndjson``/``.jsonl`` (optionally ``.gz``),
    anything else is CSV.
    """
    name = src.name.lower().removesuffix(".gz")
    opener = _open_text(src)
    if name.endswith((".ndjson", ".jsonl")):
        with opener as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as exc:
                    yield lineno, f"not JSON ({exc.msg})"
                    continue
                yield lineno, obj if isinstance(obj, dict) else "not a JSON object"
        return
    with opener as fh:
        position = {"line": 0}

        def lines() -> Iterator[str]:
            for lineno, line in enumerate(fh, 1):
                position["line"] = lineno
                if not line.lstrip().startswith("#"):
                    yield line

        reader = csv.DictReader(lines())
        header = list(reader.fieldnames or ())
        missing = [c for c in REQUIRED if c not in header]
        unknown = [c for c in header if c not in REQUIRED + OPTIONAL]
        if missing or unknown or len(set(header)) != len(header):
            raise RegistryError(
                f"export {src}: header line {position['line']} has columns {header}; "
                f"missing {missing or 'none'}, unknown {unknown or 'none'}. Expected "
                f"{', '.join(REQUIRED)} and optionally {', '.join(OPTIONAL)}")
        for row in reader:
            if None in row:
                yield position["line"], f"more cells than the {len(header)} header columns"
            else:
                yield position["line"], {k: v for k, v in row.items() if v is not None}


def _open_text(src: Path) -> Any:
    if src.name.lower().endswith(".gz"):
        return gzip.open(src, "rt", encoding="utf-8-sig", newline="")
    return open(src, encoding="utf-8-sig", newline="")


def import_file(src: Path | str, db_path: Path | str, *, version: int | None = None,
                source: str | None = None, signed_at: datetime | None = None,
                expires_at: datetime | None = None, include_removed: bool = True,
                now: datetime | None = None, compare_with: Path | None = None,
                allow_mass_removal: str | None = None,
                max_removal_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> int:
    """Build ``db_path`` from the export ``src``; return the number of records stored.

    ``include_removed=False`` drops rows whose status is ``removed`` (the publisher does
    this, so a unit never holds the name of a person whose record was withdrawn).
    Raises :class:`RegistryError` listing the first 20 problems and their total count;
    ``db_path`` is then left as it was.

    The result is compared with the registry before it (``compare_with``, by default the
    file at ``db_path``): an export with no active record, or one that removes more than
    ``max_removal_percent`` of the active records, raises
    :class:`~appliance.errors.MassRemovalRefused` unless
    ``allow_mass_removal`` gives the reason, which is then recorded in the seal.
    Every row gets its record digest and the file its content digest (``seal.py``).
    """
    src, db_path = Path(src), Path(db_path)
    if not src.is_file():
        raise RegistryError(f"export {src} does not exist or is not a file")
    db_path.parent.mkdir(parents=True, exist_ok=True)
    tmp = db_path.with_name(f".{db_path.name}.import-{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        try:
            stored = _build(src, tmp, include_removed)
        except (UnicodeDecodeError, csv.Error, EOFError, gzip.BadGzipFile) as exc:
            raise RegistryError(f"export {src} is not readable as UTF-8 CSV/NDJSON ({exc}); "
                                "re-export it as UTF-8") from exc
        conn = sqlite3.connect(tmp, isolation_level=None)
        try:
            removal = compare(conn, compare_with if compare_with is not None else db_path)
            decision = decide(removal, allow_mass_removal, what=f"export {src}",
                              max_percent=max_removal_percent)
            if decision is not None:
                log.warning("export %s %s: accepted by the operator (%s)", src,
                            removal.describe(), decision["reason"])
            conn.execute("BEGIN")
            write_meta(conn, version=version, source=source or f"import:{src.name}",
                       record_count=stored[1], imported_at=now or datetime.now(timezone.utc),
                       signed_at=signed_at, expires_at=expires_at)
            seal_database(conn, version=version, removal=decision)
            conn.execute("COMMIT")
        finally:
            conn.close()
        _fsync(tmp)
        os.replace(tmp, db_path)
        _fsync(db_path.parent)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    log.info("imported %d records (%d active) from %s into %s", stored[0], stored[1], src,
             db_path)
    return stored[0]


def _build(src: Path, tmp: Path, include_removed: bool) -> tuple[int, int]:
    """Fill a fresh database at ``tmp``; return (rows stored, active rows)."""
    create_schema(tmp)
    conn = sqlite3.connect(tmp, isolation_level=None)
    errors: list[str] = []
    error_count = 0
    try:
        # A fresh file that is fsynced and renamed only when complete needs no journal.
        conn.execute("PRAGMA journal_mode = OFF")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA cache_size = -32000")
        # Rows land in a temporary table first (keyed by line number) so that duplicate
        # CNICs can be reported with both line numbers, and the final table is filled in
        # CNIC order, which builds its B-tree by appends instead of random page splits.
        conn.execute("PRAGMA temp_store = FILE")
        conn.execute("CREATE TEMP TABLE staging (line INTEGER PRIMARY KEY, "
                     + ", ".join(OFFENDER_COLUMNS) + ")")
        insert = (f"INSERT INTO staging VALUES (?{', ?' * len(OFFENDER_COLUMNS)})")
        conn.execute("BEGIN")
        batch: list[tuple[Any, ...]] = []
        for lineno, item in read_export(src):
            if isinstance(item, str):
                problems = [item]
                row = None
            else:
                row, problems = validate_row(item)
            if problems:
                error_count += 1
                if len(errors) < MAX_REPORTED:
                    errors.append(f"{src.name}:{lineno}: {'; '.join(problems)}")
                continue
            assert row is not None
            if not include_removed and row[6] == "removed":
                continue
            batch.append((lineno, *row))
            if len(batch) >= _BATCH:
                conn.executemany(insert, batch)
                batch.clear()
        conn.executemany(insert, batch)
        for cnic, lines in conn.execute(
                "SELECT cnic, group_concat(line, ', ') FROM staging GROUP BY cnic "
                "HAVING count(*) > 1 ORDER BY min(line)"):
            error_count += 1
            if len(errors) < MAX_REPORTED:
                errors.append(f"{src.name}: cnic {cnic} appears on lines {lines}")
        if error_count:
            more = f"\n... and {error_count - len(errors)} more" if error_count > len(
                errors) else ""
            raise RegistryError(
                f"export {src}: {error_count} problem(s); fix them and import again:\n"
                + "\n".join(errors) + more)
        cols = ", ".join(OFFENDER_COLUMNS)
        conn.execute(f"INSERT INTO offender ({cols}) SELECT {cols} FROM staging ORDER BY cnic")
        conn.execute("DROP TABLE staging")
        conn.execute("COMMIT")
        total = conn.execute("SELECT count(*) FROM offender").fetchone()[0]
        active = conn.execute(
            "SELECT count(*) FROM offender WHERE status = 'active'").fetchone()[0]
        conn.execute("PRAGMA journal_mode = DELETE")
        return total, active
    finally:
        conn.close()


def _fsync(path: Path) -> None:
    """fsync a file or directory: a rename is durable only once both are on disk."""
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class DemoCnics:
    """Known answers in :data:`SAMPLE_REGISTRY` for the demo and end-to-end tests."""

    hits: tuple[str, ...]      # active records: a "convict" reply
    removed: tuple[str, ...]   # present but removed: must answer as no record
    misses: tuple[str, ...]    # absent: "no record"


#: Well-formed CNICs (one per province digit) that the sample registry does not contain.
_SAMPLE_MISSES = ("1000000000001", "3520200000002", "4210100000003", "6110100000000")


def demo_cnics(path: Path = SAMPLE_REGISTRY) -> DemoCnics:
    """Hits, removed records and misses of the sample registry, read from the file itself
    so that the demo can never drift from the data."""
    hits: list[str] = []
    removed: list[str] = []
    for _, item in read_export(path):
        if isinstance(item, str):
            continue
        row, problems = validate_row(item)
        if row is None:
            continue
        (hits if row[6] == "active" else removed).append(row[0])
    present = set(hits) | set(removed)
    return DemoCnics(hits=tuple(hits), removed=tuple(removed),
                     misses=tuple(c for c in _SAMPLE_MISSES if c not in present))
