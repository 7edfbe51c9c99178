"""The publisher's TUF repository on disk: keys, metadata signing, rotation.

Built on python-tuf's Metadata API and its ``tuf.repository.Repository`` base (which
implements the snapshot/timestamp bookkeeping of the TUF specification §4); this module
only says where files live and which keys sign what.

Layout of a publisher directory ``REPO``::

    REPO/public/metadata/N.root.json  N.targets.json  N.snapshot.json  timestamp.json
    REPO/public/targets/registry/<sha256>.<name>     (consistent snapshots, TUF §5.5)
    REPO/state/                                      private: the last built registry.db

Only ``REPO/public`` is uploaded; it is plain static files, so any web server or CDN can
serve it. Consistent snapshots make every file but ``timestamp.json`` immutable once
written, so a CDN may cache them forever and a unit never sees a half-updated mix.

Keys are Ed25519 PEM files (PKCS#8, via securesystemslib's ``CryptoSigner``) in a key
directory, one file per key, named ``<role>-<keyid prefix>.pem``. Roles can live in
different directories on different machines: each command needs only the keys of the
roles it signs (``timestamp`` for a re-sign; root keys only to create or rotate).
"""

from __future__ import annotations

import logging
import os
import re
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.serialization import load_pem_private_key
from securesystemslib.signer import CryptoSigner
from tuf.api.exceptions import UnsignedMetadataError
from tuf.api.metadata import (
    Metadata,
    MetaFile,
    Root,
    Signed,
    Snapshot,
    Targets,
    Timestamp,
)
from tuf.api.serialization.json import JSONSerializer
from tuf.repository import Repository

from appliance.errors import RegistryError

log = logging.getLogger(__name__)

ROLES: tuple[str, ...] = (Root.type, Targets.type, Snapshot.type, Timestamp.type)

#: Default validity of each role's metadata. The timestamp is short so that a unit cut off
#: from fresh metadata notices a freeze within two days (TUF §7.3 "freeze attack"); it is
#: re-signed by ``registry keys timestamp`` from cron, and by every publish.
DEFAULT_EXPIRY: dict[str, timedelta] = {
    Root.type: timedelta(days=365),
    Targets.type: timedelta(days=14),
    Snapshot.type: timedelta(days=14),
    Timestamp.type: timedelta(days=2),
}

_VERSIONED = re.compile(r"^(\d+)\.(root|targets|snapshot)\.json$")


class KeyStore:
    """Private keys in a directory, indexed by TUF keyid."""

    def __init__(self, directory: Path) -> None:
        self.directory = Path(directory)
        self.signers: dict[str, CryptoSigner] = {}
        if self.directory.is_dir():
            for pem in sorted(self.directory.glob("*.pem")):
                try:
                    signer = CryptoSigner(load_pem_private_key(pem.read_bytes(), None))
                except (ValueError, TypeError) as exc:
                    raise RegistryError(f"key file {pem} is not a PKCS#8 PEM private key "
                                        f"({exc}); remove or replace it") from exc
                self.signers[signer.public_key.keyid] = signer

    def generate(self, role: str) -> CryptoSigner:
        """Create and store a new Ed25519 key for ``role`` (file mode 0600)."""
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        signer = CryptoSigner.generate_ed25519()
        path = self.directory / f"{role}-{signer.public_key.keyid[:12]}.pem"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(signer.private_bytes)
        self.signers[signer.public_key.keyid] = signer
        log.info("generated %s key %s in %s", role, signer.public_key.keyid[:12], path)
        return signer


class PublisherRepository(Repository):
    """A TUF repository stored as files under ``public_dir``, signed with ``keys``.

    ``expiry`` overrides :data:`DEFAULT_EXPIRY` per role; ``expires_at`` pins an exact
    expiry for the next write of a role (used to test freeze handling).
    """

    def __init__(self, public_dir: Path, keys: KeyStore, *,
                 expiry: dict[str, timedelta] | None = None,
                 now: datetime | None = None) -> None:
        self.public_dir = Path(public_dir)
        self.metadata_dir = self.public_dir / "metadata"
        self.targets_dir = self.public_dir / "targets"
        self.keys = keys
        self.expiry = {**DEFAULT_EXPIRY, **(expiry or {})}
        self.expires_at: dict[str, datetime] = {}
        self._now = now
        self._fresh: set[str] = set()

    @property
    def now(self) -> datetime:
        # TUF metadata carries whole seconds (ISO 8601 "Z"); round so that what is
        # written equals what is read back.
        return (self._now or datetime.now(timezone.utc)).replace(microsecond=0)

    def exists(self) -> bool:
        return (self.metadata_dir / "1.root.json").is_file()

    # -- Repository interface ------------------------------------------------------------

    def open(self, role: str) -> Metadata[Any]:
        path = self._latest_path(role)
        if path is None:
            self._fresh.add(role)
            signed: Signed = {Root.type: Root, Targets.type: Targets,
                              Snapshot.type: Snapshot, Timestamp.type: Timestamp}[role]()
            return Metadata(signed)
        return Metadata.from_file(str(path))

    def close(self, role: str, md: Metadata[Any]) -> None:
        previous_root = self.root() if role == Root.type and not self._is_fresh(role) else None
        if self._is_fresh(role):
            self._fresh.discard(role)
        else:
            md.signed.version += 1
        md.signed.expires = self.expires_at.pop(role, None) or self.now + self.expiry[role]
        self._sign(role, md, previous_root)
        self._write(role, md)

    @property
    def targets_infos(self) -> dict[str, MetaFile]:
        return {f"{Targets.type}.json": MetaFile(self.targets().version)}

    @property
    def snapshot_info(self) -> MetaFile:
        return MetaFile(self.snapshot().version)

    # -- operations ------------------------------------------------------------------------

    def create(self) -> None:
        """Generate one key per role and write version 1 of all four roles."""
        if self.exists():
            raise RegistryError(f"{self.metadata_dir} already holds a TUF repository; "
                                "use `registry keys rotate` to change keys")
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        self.targets_dir.mkdir(parents=True, exist_ok=True)
        with self.edit_root() as root:
            root.consistent_snapshot = True
            for role in ROLES:
                root.add_key(self.keys.generate(role).public_key, role)
        with self.edit_targets():
            pass
        self.do_snapshot(force=True)
        self.do_timestamp(force=True)

    def rotate(self, role: str) -> str:
        """Replace ``role``'s keys by a new key; return the new keyid.

        Writes root version N+1 (signed by the old *and* new root keys when ``role`` is
        root, as TUF §5.3.4 requires of a client-verifiable rotation), then re-signs the
        role's own metadata with the new key and refreshes snapshot and timestamp.
        """
        if role not in ROLES:
            raise RegistryError(f"unknown role {role!r}; choose one of {', '.join(ROLES)}")
        new = self.keys.generate(role)
        with self.edit_root() as root:
            for keyid in list(root.roles[role].keyids):
                root.revoke_key(keyid, role)
            root.add_key(new.public_key, role)
        if role == Targets.type:
            with self.edit_targets():
                pass
        self.do_snapshot(force=True)
        self.do_timestamp(force=True)
        return new.public_key.keyid

    def resign_timestamp(self, expires_at: datetime | None = None) -> int:
        """Write a new timestamp version (fresh expiry); return its version."""
        if expires_at is not None:
            self.expires_at[Timestamp.type] = expires_at
        self.do_timestamp(force=True)
        return self.timestamp().version

    def require_keys(self, roles: tuple[str, ...]) -> None:
        """Fail before anything is written if a role's private key is not at hand (a
        half-signed publish would leave targets that no timestamp points to)."""
        root = self.root()
        missing = [role for role in roles
                   if not set(root.roles[role].keyids) & set(self.keys.signers)]
        if missing:
            raise RegistryError(
                f"the key directory {self.keys.directory} lacks the private key(s) of "
                f"{', '.join(missing)}; run the command where those keys are kept")

    def root_bytes(self) -> bytes:
        """The current root metadata (what a unit is flashed with as its trusted root)."""
        path = self._latest_path(Root.type)
        if path is None:
            raise RegistryError(f"{self.metadata_dir} has no root metadata; run "
                                "`registry keys init` first")
        return path.read_bytes()

    # -- internals -------------------------------------------------------------------------

    def _is_fresh(self, role: str) -> bool:
        return role in self._fresh

    def _sign(self, role: str, md: Metadata[Any], previous_root: Root | None) -> None:
        root = md.signed if role == Root.type else self.root()
        assert isinstance(root, Root)
        wanted = set(root.roles[role].keyids)
        if previous_root is not None:
            wanted |= set(previous_root.roles[Root.type].keyids)
        md.signatures.clear()
        for keyid in sorted(wanted):
            signer = self.keys.signers.get(keyid)
            if signer is not None:
                md.sign(signer, append=True)
        try:
            root.verify_delegate(role, md.signed_bytes, md.signatures)
            if previous_root is not None:
                previous_root.verify_delegate(role, md.signed_bytes, md.signatures)
        except UnsignedMetadataError as exc:
            raise RegistryError(
                f"cannot sign {role} metadata: the key directory {self.keys.directory} "
                f"lacks the private key(s) {sorted(wanted - set(self.keys.signers))}; "
                "run the command where those keys are kept") from exc

    def _write(self, role: str, md: Metadata[Any]) -> None:
        self.metadata_dir.mkdir(parents=True, exist_ok=True)
        if role == Timestamp.type:
            name = "timestamp.json"
        else:
            name = f"{md.signed.version}.{role}.json"
        path = self.metadata_dir / name
        tmp = path.with_name(f".{name}.tmp")
        md.to_file(str(tmp), JSONSerializer(compact=False))
        os.replace(tmp, path)
        log.info("wrote %s (expires %s)", path, md.signed.expires.isoformat())

    def _latest_path(self, role: str) -> Path | None:
        if role == Timestamp.type:
            path = self.metadata_dir / "timestamp.json"
            return path if path.is_file() else None
        best: tuple[int, Path] | None = None
        if self.metadata_dir.is_dir():
            for entry in self.metadata_dir.iterdir():
                m = _VERSIONED.match(entry.name)
                if m and m.group(2) == role and (best is None or int(m.group(1)) > best[0]):
                    best = (int(m.group(1)), entry)
        return None if best is None else best[1]
