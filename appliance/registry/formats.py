"""The published file formats: the index, the snapshot and the delta (both sides use them).

A published version ``N`` is three kinds of TUF target under ``registry/``:

* ``index.json`` -- which version is current, when it was signed, how many active records
  it holds, which snapshot and which deltas exist. Small; fetched on every sync.
* ``snapshot-N.sqlite.gz`` -- the whole registry as a gzip-compressed ``registry.db``
  (schema of ``models.py``). Chosen over NDJSON for apply speed: a unit only decompresses
  (a stream copy), runs ``PRAGMA quick_check`` and renames; rebuilding 1M rows from NDJSON
  on a Pi means parsing, validating and B-tree inserts for every row: 27 s against 1.9 s
  for 1M records on the dev box (docs/registry.md). gzip rather than xz or bz2: on 100k records xz is 29 %
  and bz2 38 % smaller, but 3x and 7x slower to decompress (and xz 13x slower to build);
  a snapshot is fetched rarely (first install, a unit off for longer than the delta
  window), while its apply time is what a Pi spends with a sync in progress.
* ``delta-A-B.ndjson.gz`` -- the change from version A to B = A+1: a header line, then one
  line per operation (``{"op": "upsert", "record": {...}}`` or ``{"op": "remove", "cnic":
  "..."}``). Deltas are small and a unit must validate every row it writes into a live
  file, so readable, line-oriented NDJSON costs nothing worth saving here.

Every target is signed, hashed and length-checked by TUF before it is read; the parsers
below still refuse anything malformed, because a bug on the publisher side must fail a
sync rather than install a broken registry.
"""

from __future__ import annotations

import gzip
import json
import os
import shutil
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from appliance.errors import SyncError
from appliance.registry.models import SCHEMA_VERSION, from_iso, to_iso

INDEX_TARGET = "registry/index.json"
INDEX_FORMAT = "nsor-registry-index"
DELTA_FORMAT = "nsor-registry-delta"
_COPY_CHUNK = 1 << 20


def snapshot_target(version: int) -> str:
    return f"registry/snapshot-{version:08d}.sqlite.gz"


def delta_target(from_version: int, to_version: int) -> str:
    return f"registry/delta-{from_version:08d}-{to_version:08d}.ndjson.gz"


@dataclass(frozen=True, slots=True)
class DeltaRef:
    """One published delta, as listed in the index."""

    from_version: int
    to_version: int
    path: str
    upserts: int
    removals: int


@dataclass(frozen=True, slots=True)
class Index:
    """The contents of ``registry/index.json``."""

    version: int
    signed_at: datetime
    expires_at: datetime
    record_count: int
    snapshot: str
    deltas: tuple[DeltaRef, ...]
    # The version's content digest (seal.py); None only in an index from before digests.
    content_digest: str | None = None
    # Every signed mass-removal decision so far: {"version", "reason", "removed",
    # "previous"} (removal.py). Kept for ever: they are rare and a few bytes each.
    mass_removals: tuple[dict[str, Any], ...] = ()

    def to_json(self) -> bytes:
        return json.dumps({
            "format": INDEX_FORMAT, "schema": SCHEMA_VERSION, "version": self.version,
            "signed_at": to_iso(self.signed_at), "expires_at": to_iso(self.expires_at),
            "record_count": self.record_count, "snapshot": self.snapshot,
            "deltas": [{"from": d.from_version, "to": d.to_version, "path": d.path,
                        "upserts": d.upserts, "removals": d.removals} for d in self.deltas],
            "content_digest": self.content_digest,
            "mass_removals": list(self.mass_removals),
        }, indent=1, sort_keys=True, ensure_ascii=False).encode()

    def mass_removal_between(self, after: int | None, upto: int) -> dict[str, Any] | None:
        """A signed mass-removal decision for a version in (``after``, ``upto``]."""
        for decision in self.mass_removals:
            version = decision.get("version")
            if isinstance(version, int) and (after is None or after < version) \
                    and version <= upto:
                return decision
        return None

    @classmethod
    def from_json(cls, data: bytes) -> Index:
        try:
            obj = json.loads(data)
            if obj.get("format") != INDEX_FORMAT or obj.get("schema") != SCHEMA_VERSION:
                raise ValueError(f"format {obj.get('format')!r} schema {obj.get('schema')!r}")
            return cls(
                version=_int(obj["version"]), signed_at=from_iso(obj["signed_at"]),
                expires_at=from_iso(obj["expires_at"]),
                record_count=_int(obj["record_count"]), snapshot=str(obj["snapshot"]),
                deltas=tuple(DeltaRef(_int(d["from"]), _int(d["to"]), str(d["path"]),
                                      _int(d["upserts"]), _int(d["removals"]))
                             for d in obj["deltas"]),
                content_digest=_digest_or_none(obj.get("content_digest")),
                mass_removals=tuple(d for d in obj.get("mass_removals") or ()
                                    if isinstance(d, dict)))
        except (ValueError, KeyError, TypeError, AttributeError) as exc:
            raise SyncError(
                f"registry index is not in the format this unit reads ({exc}); "
                "the publisher may be newer than this firmware: update the unit") from exc

    def delta_chain(self, installed: int) -> list[DeltaRef] | None:
        """Deltas leading from ``installed`` to :attr:`version`, or None if a link is
        missing (then the snapshot is the way)."""
        by_from = {d.from_version: d for d in self.deltas}
        chain: list[DeltaRef] = []
        current = installed
        while current < self.version:
            step = by_from.get(current)
            if step is None or step.to_version <= current:
                return None
            chain.append(step)
            current = step.to_version
        return chain if current == self.version else None


def _digest_or_none(value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or len(value) != 64 or value.strip("0123456789abcdef"):
        raise ValueError(f"content_digest {value!r} is not 64 lowercase hex digits")
    return value


def _int(value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise ValueError(f"{value!r} is not a non-negative integer")
    return value


# -- snapshot -------------------------------------------------------------------------------

def compress_file(src: Path, dest: Path) -> None:
    """gzip ``src`` into ``dest`` (publisher side). ``mtime=0`` keeps the bytes, and so the
    TUF hash, identical for identical input."""
    with open(src, "rb") as fin, open(dest, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, compresslevel=6, mtime=0) as fout:
        shutil.copyfileobj(fin, fout, _COPY_CHUNK)


def decompress_file(src: Path, dest: Path,
                    progress: Callable[[int], None] | None = None) -> None:
    """Stream-decompress ``src`` into ``dest`` and fsync it (unit side, bounded memory)."""
    with gzip.open(src, "rb") as fin, open(dest, "wb") as fout:
        while chunk := fin.read(_COPY_CHUNK):
            fout.write(chunk)
            if progress is not None:
                progress(len(chunk))
        fout.flush()
        os.fsync(fout.fileno())


# -- delta ----------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class DeltaHeader:
    from_version: int
    to_version: int
    upserts: int
    removals: int
    record_count: int
    signed_at: datetime
    expires_at: datetime
    content_digest: str | None = None       # of version ``to`` (seal.py)
    removal: dict[str, Any] | None = None   # the signed mass-removal decision, if any


def write_delta(dest: Path, header: DeltaHeader,
                upserts: Iterator[tuple[dict[str, Any], str]],
                removals: Iterator[str]) -> None:
    """Write a delta file; the header's counts must match what the iterators yield."""
    with open(dest, "wb") as raw, \
            gzip.GzipFile(filename="", mode="wb", fileobj=raw, mtime=0) as out:
        out.write(_line({
            "format": DELTA_FORMAT, "schema": SCHEMA_VERSION, "from": header.from_version,
            "to": header.to_version, "upserts": header.upserts, "removals": header.removals,
            "record_count": header.record_count, "signed_at": to_iso(header.signed_at),
            "expires_at": to_iso(header.expires_at),
            "content_digest": header.content_digest, "removal": header.removal}))
        n_up = n_rm = 0
        # The record digest sits beside "record", not in it: firmware from before digests
        # validates "record" field by field and ignores other keys of the line.
        for record, digest in upserts:
            out.write(_line({"op": "upsert", "record": record, "digest": digest}))
            n_up += 1
        for cnic in removals:
            out.write(_line({"op": "remove", "cnic": cnic}))
            n_rm += 1
    if (n_up, n_rm) != (header.upserts, header.removals):
        raise ValueError(f"delta {dest}: header says {header.upserts} upserts and "
                         f"{header.removals} removals, wrote {n_up} and {n_rm}")


def read_delta(src: Path) -> tuple[DeltaHeader, Iterator[dict[str, Any]]]:
    """The header and an iterator over the operations (each a dict with ``op``)."""
    fh = gzip.open(src, "rt", encoding="utf-8")
    try:
        head = json.loads(fh.readline())
        if head.get("format") != DELTA_FORMAT or head.get("schema") != SCHEMA_VERSION:
            raise ValueError(f"format {head.get('format')!r} schema {head.get('schema')!r}")
        header = DeltaHeader(
            from_version=_int(head["from"]), to_version=_int(head["to"]),
            upserts=_int(head["upserts"]), removals=_int(head["removals"]),
            record_count=_int(head["record_count"]), signed_at=from_iso(head["signed_at"]),
            expires_at=from_iso(head["expires_at"]),
            content_digest=_digest_or_none(head.get("content_digest")),
            removal=head.get("removal") if isinstance(head.get("removal"), dict) else None)
    except (ValueError, KeyError, TypeError, AttributeError, OSError, EOFError) as exc:
        fh.close()
        raise SyncError(f"delta {src.name}: unreadable header ({exc})") from exc

    def operations() -> Iterator[dict[str, Any]]:
        with fh:
            for lineno, line in enumerate(fh, 2):
                try:
                    op = json.loads(line)
                except ValueError as exc:
                    raise SyncError(f"delta {src.name}:{lineno}: not JSON ({exc})") from exc
                if not isinstance(op, dict) or op.get("op") not in ("upsert", "remove"):
                    raise SyncError(f"delta {src.name}:{lineno}: unknown operation")
                yield op

    return header, operations()


def _line(obj: dict[str, Any]) -> bytes:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":")).encode() + b"\n"
