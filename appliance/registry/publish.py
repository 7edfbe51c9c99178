"""Central side: turn the operator's export into a signed, versioned directory of files.

One ``publish`` run makes version N: the export is validated and built into a complete
``registry.db`` (removed records left out, so no unit ever holds the name of a person whose
record was withdrawn), compared with version N-1 to write the delta N-1 -> N, compressed
into the snapshot, described in ``registry/index.json``, and signed into the TUF
repository (targets, then snapshot, then timestamp -- the order that lets a CDN serve the
directory while it is being updated: nothing refers to a file before it exists).

Publish at least daily, even when nothing changed: a unit judges its registry's age by the
signing time of its version (``max_age``, 72 h by default), so a nightly publish with an
empty delta is what keeps a fleet answering.
"""

from __future__ import annotations

import logging
import os
import shutil
import sqlite3
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

from tuf.api.metadata import Metadata, TargetFile, Targets

from appliance.errors import RegistryError
from appliance.registry.formats import (
    INDEX_TARGET,
    DeltaHeader,
    DeltaRef,
    Index,
    compress_file,
    delta_target,
    snapshot_target,
    write_delta,
)
from appliance.registry.importer import import_file
from appliance.registry.models import OFFENDER_COLUMNS, read_meta
from appliance.registry.removal import DEFAULT_MAX_REMOVAL_PERCENT
from appliance.registry.seal import read_seal
from appliance.registry.tufrepo import KeyStore, PublisherRepository

log = logging.getLogger(__name__)

#: Deltas listed in the index. A unit that missed more nights than this takes the
#: snapshot; 30 covers a month of a unit switched off, at ~1 small file a night.
DEFAULT_KEEP_DELTAS = 30

#: Targets metadata versions whose files stay on disk: a unit that fetched the previous
#: targets metadata a moment before a publish can still download what it lists.
_KEEP_TARGET_GENERATIONS = 3

_CHANGED = " OR ".join(f"n.{c} IS NOT o.{c}" for c in OFFENDER_COLUMNS[1:])
_UPSERTS = (f"SELECT {', '.join('n.' + c for c in OFFENDER_COLUMNS)}, d.digest "
            f"FROM main.offender n JOIN main.offender_digest d ON d.cnic = n.cnic "
            f"LEFT JOIN old.offender o ON o.cnic = n.cnic "
            f"WHERE o.cnic IS NULL OR {_CHANGED} ORDER BY n.cnic")
_REMOVALS = ("SELECT o.cnic FROM old.offender o WHERE o.status = 'active' AND NOT EXISTS "
             "(SELECT 1 FROM main.offender n WHERE n.cnic = o.cnic AND n.status = 'active') "
             "ORDER BY o.cnic")


@dataclass(frozen=True, slots=True)
class PublishResult:
    version: int
    record_count: int
    snapshot_bytes: int
    delta: DeltaRef | None
    delta_bytes: int | None


class Publisher:
    """The operator's registry repository at ``repo_dir``, signed with keys in ``keys_dir``."""

    def __init__(self, repo_dir: Path | str, keys_dir: Path | str, *,
                 expiry: dict[str, timedelta] | None = None,
                 keep_deltas: int = DEFAULT_KEEP_DELTAS, now: datetime | None = None,
                 max_removal_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> None:
        self.repo_dir = Path(repo_dir)
        # Units refuse a removal above *their* threshold (5 %) without a signed reason,
        # whatever the publisher's is: raising this only moves the refusal to the units.
        self.max_removal_percent = max_removal_percent
        self.public_dir = self.repo_dir / "public"
        self.state_dir = self.repo_dir / "state"
        self.repo = PublisherRepository(self.public_dir, KeyStore(Path(keys_dir)),
                                        expiry=expiry, now=now)
        self.keep_deltas = max(0, keep_deltas)

    # -- keys ------------------------------------------------------------------------------

    def init(self, export_root: Path | None = None) -> bytes:
        """Create keys and an empty signed repository; return (and optionally write) the
        root metadata that units must be flashed with."""
        self.repo.create()
        root = self.repo.root_bytes()
        if export_root is not None:
            _write_atomic(export_root, root)
        return root

    def rotate(self, role: str, export_root: Path | None = None) -> str:
        keyid = self.repo.rotate(role)
        if export_root is not None:
            _write_atomic(export_root, self.repo.root_bytes())
        return keyid

    def resign_timestamp(self, expires_at: datetime | None = None) -> int:
        self._require_repo()
        return self.repo.resign_timestamp(expires_at)

    # -- publishing ------------------------------------------------------------------------

    def current_index(self) -> Index | None:
        """The index of the version now published, read back from the signed targets."""
        if not self.repo.exists():
            return None
        info = self.repo.targets().targets.get(INDEX_TARGET)
        return None if info is None else Index.from_json(self._local(info).read_bytes())

    def publish(self, export: Path | str, *, version: int | None = None,
                source: str | None = None,
                allow_mass_removal: str | None = None) -> PublishResult:
        """Validate ``export``, build version N, write snapshot, delta and index, sign.

        An export with no active record, or one removing more than 5 % of the published
        active records, is refused unless ``allow_mass_removal`` gives the reason; the
        reason is then signed into the index, the delta header and the snapshot
        (``removal.py``), and units refuse such a version without it.
        """
        self._require_repo()
        self.repo.require_keys(("targets", "snapshot", "timestamp"))
        previous = self.current_index()
        new_version = version if version is not None else (
            previous.version + 1 if previous else 1)
        if previous is not None and new_version <= previous.version:
            raise RegistryError(f"version {new_version} is not above the published "
                                f"version {previous.version}; omit --version to use the next")
        signed_at = self.repo.now
        expires_at = signed_at + self.repo.expiry[Targets.type]
        work = self.state_dir / f"build-{new_version}"
        shutil.rmtree(work, ignore_errors=True)
        work.mkdir(parents=True)
        try:
            new_db = work / "registry.db"
            prev_db = self.state_dir / "registry.db"
            import_file(Path(export), new_db, version=new_version,
                        source=source or f"publisher:{Path(export).name}",
                        signed_at=signed_at, expires_at=expires_at,
                        include_removed=False, now=signed_at,
                        compare_with=prev_db if previous is not None else None,
                        allow_mass_removal=allow_mass_removal,
                        max_removal_percent=self.max_removal_percent)
            record_count = _record_count(new_db)
            content_digest, decision = _seal_of(new_db)
            snapshot_file = work / Path(snapshot_target(new_version)).name
            compress_file(new_db, snapshot_file)
            new_files: dict[str, Path] = {snapshot_target(new_version): snapshot_file}

            delta: DeltaRef | None = None
            if previous is not None and _db_version(prev_db) == previous.version:
                delta_file = work / Path(delta_target(previous.version, new_version)).name
                delta = _write_delta(prev_db, new_db, delta_file, previous.version,
                                     new_version, record_count, signed_at, expires_at,
                                     content_digest, decision)
                new_files[delta.path] = delta_file
            elif previous is not None:
                log.warning("publisher state %s does not hold version %d: version %d gets "
                            "no delta, units will download the snapshot", prev_db,
                            previous.version, new_version)
            kept = [d for d in (previous.deltas if previous else ())
                    if d.to_version > new_version - self.keep_deltas]
            deltas = tuple(([delta] if delta else []) + kept)[: self.keep_deltas]
            mass = tuple(previous.mass_removals if previous else ()) + (
                ({"version": new_version, **decision},) if decision else ())
            index = Index(version=new_version, signed_at=signed_at, expires_at=expires_at,
                          record_count=record_count, snapshot=snapshot_target(new_version),
                          deltas=deltas, content_digest=content_digest, mass_removals=mass)
            index_file = work / "index.json"
            index_file.write_bytes(index.to_json())
            new_files[INDEX_TARGET] = index_file

            self._sign_targets(new_files, deltas)
            os.replace(new_db, prev_db)
        finally:
            shutil.rmtree(work, ignore_errors=True)
        self._prune()
        snapshot_bytes = self.repo.targets().targets[snapshot_target(new_version)].length
        delta_bytes = (self.repo.targets().targets[delta.path].length if delta else None)
        log.info("published registry version %d: %d records, snapshot %d bytes, delta %s",
                 new_version, record_count, snapshot_bytes,
                 f"{delta.upserts} upserts/{delta.removals} removals" if delta else "none")
        return PublishResult(new_version, record_count, snapshot_bytes, delta, delta_bytes)

    # -- internals -------------------------------------------------------------------------

    def _require_repo(self) -> None:
        if not self.repo.exists():
            raise RegistryError(f"no TUF repository in {self.public_dir}; create one with "
                                "`python -m appliance registry keys init`")

    def _local(self, info: TargetFile) -> Path:
        """Where a target is stored under consistent snapshots: ``<sha256>.<name>``."""
        dirname, _, basename = info.path.rpartition("/")
        digest = info.hashes["sha256"]
        return self.repo.targets_dir / dirname / f"{digest}.{basename}"

    def _sign_targets(self, new_files: dict[str, Path], deltas: tuple[DeltaRef, ...]) -> None:
        current = self.repo.targets().targets
        infos: dict[str, TargetFile] = {}
        for target, local in new_files.items():
            info = TargetFile.from_file(target, str(local), ["sha256"])
            dest = self._local(info)
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(local, dest)
            infos[target] = info
        for d in deltas:
            if d.path not in infos:
                if d.path not in current or not self._local(current[d.path]).is_file():
                    raise RegistryError(f"delta {d.path} is listed but missing from "
                                        f"{self.repo.targets_dir}; the repository is damaged")
                infos[d.path] = current[d.path]
        with self.repo.edit_targets() as targets:
            targets.targets = infos
        self.repo.do_snapshot()
        self.repo.do_timestamp()

    def _prune(self) -> None:
        """Delete target files no recent targets metadata refers to."""
        keep: set[Path] = set()
        versions = sorted((int(p.name.split(".")[0]), p) for p in
                          self.repo.metadata_dir.glob("*.targets.json"))
        for _, path in versions[-_KEEP_TARGET_GENERATIONS:]:
            signed = Metadata[Targets].from_file(str(path)).signed
            keep.update(self._local(info) for info in signed.targets.values())
        for path in self.repo.targets_dir.rglob("*"):
            if path.is_file() and path not in keep:
                path.unlink()
                log.info("pruned %s", path)


def _record_count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(read_meta(conn)["record_count"])
    finally:
        conn.close()


def _seal_of(db: Path) -> tuple[str, dict[str, Any] | None]:
    conn = sqlite3.connect(db)
    try:
        seal = read_seal(conn)
    finally:
        conn.close()
    if seal is None or seal.content_digest is None:
        raise RegistryError(f"{db} was built without a content digest; this is a bug")
    return seal.content_digest, seal.removal


def _db_version(db: Path) -> int | None:
    if not db.is_file():
        return None
    conn = sqlite3.connect(db)
    try:
        return read_meta(conn).get("version")
    except sqlite3.Error:
        return None
    finally:
        conn.close()


def _write_delta(prev_db: Path, new_db: Path, dest: Path, from_version: int,
                 to_version: int, record_count: int, signed_at: datetime,
                 expires_at: datetime, content_digest: str,
                 decision: dict[str, Any] | None) -> DeltaRef:
    conn = sqlite3.connect(new_db)
    try:
        conn.execute("ATTACH DATABASE ? AS old", (str(prev_db),))
        n_up = conn.execute(f"SELECT count(*) FROM ({_UPSERTS})").fetchone()[0]
        n_rm = conn.execute(f"SELECT count(*) FROM ({_REMOVALS})").fetchone()[0]

        def upserts() -> Iterator[tuple[dict[str, Any], str]]:
            for row in conn.execute(_UPSERTS):
                yield dict(zip(OFFENDER_COLUMNS, row[:-1])), row[-1]

        def removals() -> Iterator[str]:
            for (cnic,) in conn.execute(_REMOVALS):
                yield cnic

        header = DeltaHeader(from_version, to_version, n_up, n_rm, record_count, signed_at,
                             expires_at, content_digest, decision)
        write_delta(dest, header, upserts(), removals())
    finally:
        conn.close()
    return DeltaRef(from_version, to_version, delta_target(from_version, to_version),
                    n_up, n_rm)


def _write_atomic(path: Path, data: bytes) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)
