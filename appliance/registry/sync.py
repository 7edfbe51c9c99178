"""Unit side: pull the signed registry, verify it, apply it atomically, or keep the old one.

Trust comes only from TUF (python-tuf ``ngclient.Updater``): signatures, versions (no
rollback), expiry (no freeze), and the length and hash of every file, checked against the
root the unit was flashed with (``firmware_config/registry_root.json``, copied into the
unit's metadata directory on first use; later roots are accepted only through the signed
rotation chain, TUF §5.3).

Apply, chosen for a unit that keeps answering SMS throughout:

* from the installed version, the chain of deltas when the index lists every link and
  their total size is below the snapshot's; each delta is one SQLite transaction that
  also moves the version, so a crash leaves version A or version B, never a mix;
* otherwise (first install, a missing or unusable delta) the snapshot, decompressed into
  a new file beside ``registry.db``, checked (``PRAGMA quick_check``, schema, version,
  record count), fsynced, and moved over it with ``os.replace``, then the directory is
  fsynced so the rename survives power loss.

On any failure the installed registry stays as it is; the error is logged, written to the
status file (``registry.status.json`` beside the registry) and reported through
``on_alarm(kind, message)``. Retrying with backoff is the scheduler's job (schedule.py).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import sqlite3
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import IO, Any

import urllib3
from tuf.api import exceptions as tuf_exc
from tuf.api.metadata import Metadata, TargetFile
from tuf.ngclient import Updater, Urllib3Fetcher

from appliance.errors import (
    ConfigError,
    FreezeError,
    RegistryError,
    RollbackError,
    SignatureError,
    SyncError,
)
from appliance.registry.apply import (
    PAUSE_ENV,
    DeltaUnusable,
    apply_delta,
    install_snapshot,
    installed_meta,
    recover,
)
from appliance.registry.formats import INDEX_TARGET, Index
from appliance.registry.models import to_iso, write_meta
from appliance.registry.status import RegistryPaths, record_attempt, sync_status

log = logging.getLogger(__name__)

__all__ = ["ALARM_KINDS", "PAUSE_ENV", "RegistryPaths", "RegistrySync", "SyncResult",
           "alarm_kind", "sync_status"]

AlarmCallback = Callable[[str, str], None]
#: The alarm kinds a sync raises; all are cleared (``on_clear``) by a successful sync.
ALARM_KINDS = ("registry_sync", "registry_signature", "registry_rollback", "registry_freeze",
               "registry_clock")
#: progress(label, bytes_done, bytes_total) during downloads.
ProgressCallback = Callable[[str, int, int], None]


class ClockNotTrusted(SyncError):
    """The clock reads earlier than the installed registry's signing time."""


def alarm_kind(exc: BaseException) -> str:
    """The alarm name for a failed sync, most specific first."""
    for cls, kind in ((ClockNotTrusted, "registry_clock"), (FreezeError, "registry_freeze"),
                      (RollbackError, "registry_rollback"),
                      (SignatureError, "registry_signature")):
        if isinstance(exc, cls):
            return kind
    return "registry_sync"


@dataclass(frozen=True, slots=True)
class SyncResult:
    """What one successful sync did: ``action`` is "current", "delta" or "snapshot"."""

    action: str
    from_version: int | None
    to_version: int
    record_count: int
    seconds: float


class _Fetcher(Urllib3Fetcher):
    """ngclient's urllib3 fetcher with progress reports and temporary files kept beside
    the registry (the default goes to ``/tmp``, a RAM-backed tmpfs on some images)."""

    def __init__(self, tmp_dir: Path, progress: ProgressCallback | None,
                 socket_timeout: int) -> None:
        super().__init__(socket_timeout=socket_timeout, chunk_size=256 * 1024,
                         app_user_agent="nsor-appliance")
        self.tmp_dir = tmp_dir
        self.progress = progress
        self.label: str | None = None
        self.total = 0

    def _fetch(self, url: str) -> Iterator[bytes]:
        chunks = super()._fetch(url)
        if self.progress is None or self.label is None:
            return chunks
        return self._reporting(chunks, self.label, self.total, self.progress)

    @staticmethod
    def _reporting(chunks: Iterator[bytes], label: str, total: int,
                   progress: ProgressCallback) -> Iterator[bytes]:
        done = 0
        progress(label, 0, total)
        for chunk in chunks:
            done += len(chunk)
            progress(label, done, total)
            yield chunk

    @contextmanager
    def download_file(self, url: str, max_length: int) -> Iterator[IO[bytes]]:
        received = 0
        with tempfile.TemporaryFile(dir=self.tmp_dir) as tmp:
            for chunk in self.fetch(url):
                received += len(chunk)
                if received > max_length:
                    raise tuf_exc.DownloadLengthMismatchError(
                        f"{url}: more than the {max_length} bytes signed for it")
                tmp.write(chunk)
            tmp.seek(0)
            yield tmp


class RegistrySync:
    """Sync the registry at ``path`` from the TUF repository at ``repository_url``.

    ``clock`` returns the current aware time (tests set it to check the clock guard);
    ``progress`` receives download progress; ``on_alarm(kind, message)`` receives one call
    per failure and ``on_clear(kind)`` one call per kind in :data:`ALARM_KINDS` after a
    success (e.g. ``Alarms.raise_`` and ``Alarms.clear``).
    """

    def __init__(self, path: Path | str, repository_url: str, trusted_root: Path | str, *,
                 on_alarm: AlarmCallback | None = None,
                 on_clear: Callable[[str], None] | None = None,
                 progress: ProgressCallback | None = None,
                 clock: Callable[[], datetime] | None = None,
                 socket_timeout: int = 30) -> None:
        self.paths = RegistryPaths(Path(path))
        self.url = repository_url.rstrip("/")
        self.trusted_root = Path(trusted_root)
        self.on_alarm = on_alarm
        self.on_clear = on_clear
        self.progress = progress
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self.socket_timeout = socket_timeout

    @classmethod
    def from_config(cls, cfg: Any, *, path: Path | str | None = None,
                    **kwargs: Any) -> RegistrySync:
        """Build from a ``RegistryConfig``-like object (``repository_url``, ``trusted_root``
        and, unless ``path`` is given -- e.g. ``Config.registry_path`` -- ``path``)."""
        path = path if path is not None else getattr(cfg, "path", None)
        if path is None:
            raise ConfigError("registry.path is not set; pass the resolved registry path "
                              "(Config.registry_path)")
        return cls(path, cfg.repository_url, cfg.trusted_root, **kwargs)

    # -- public ----------------------------------------------------------------------------

    def sync(self) -> SyncResult:
        """One attempt. Raises a RegistryError subclass after recording and alarming."""
        if not self.url:
            raise SyncError("registry.repository_url is empty in the configuration; set it "
                            "to the publisher's URL to enable syncing")
        self.paths.db.parent.mkdir(parents=True, exist_ok=True)
        started = time.monotonic()
        with self._exclusive():
            try:
                result = self._run(started)
                self._mark_verified()
            except RegistryError as exc:
                self._failed(exc)
                raise
            except Exception as exc:  # an unforeseen failure must not skip the alarm
                wrapped = SyncError(f"registry sync from {self.url} failed unexpectedly: "
                                    f"{exc!r}; the current registry is kept")
                self._failed(wrapped)
                raise wrapped from exc
        record_attempt(self.paths, to_iso(self.clock()), result=result)
        _clear_dir(self.paths.incoming)
        if self.on_clear is not None:
            for kind in ALARM_KINDS:
                try:
                    self.on_clear(kind)
                except Exception:
                    log.exception("on_clear callback failed for %s", kind)
        log.info("registry sync: %s v%s -> v%d (%d records) in %.1f s", result.action,
                 result.from_version, result.to_version, result.record_count, result.seconds)
        return result

    # -- the steps -------------------------------------------------------------------------

    def _run(self, started: float) -> SyncResult:
        db = self.paths.db
        with self._translated("recovering from an interrupted sync"):
            recover(db)
        installed = installed_meta(db)
        from_version = installed.get("version")
        signed_at = installed.get("signed_at")
        now = self.clock()
        if signed_at is not None and now < signed_at:
            raise ClockNotTrusted(
                f"clock reads {now.isoformat()}, before the installed registry's signing "
                f"time {signed_at.isoformat()}: not syncing until the time is set (NTP, "
                "or the modem's AT+CCLK)")
        updater = self._updater()
        with self._translated("refreshing the signed metadata"):
            updater.refresh()
            info = updater.get_targetinfo(INDEX_TARGET)
        if info is None:
            raise SyncError(f"{self.url} lists no {INDEX_TARGET}: is repository_url the "
                            "publisher's `public` directory?")
        index = Index.from_json(self._download(updater, info, "index").read_bytes())

        if from_version is not None and index.version < from_version:
            raise RollbackError(
                f"{self.url} offers registry version {index.version}, older than the "
                f"installed {from_version}: refusing (rollback); keeping version "
                f"{from_version}")
        if from_version == index.version:
            return SyncResult("current", from_version, index.version,
                              int(installed.get("record_count") or 0),
                              time.monotonic() - started)

        chain = index.delta_chain(from_version) if from_version is not None else None
        snapshot_info = self._targetinfo(updater, index.snapshot)
        if chain:
            with self._translated("looking up the deltas"):
                infos = [updater.get_targetinfo(d.path) for d in chain]
            if any(i is None for i in infos):
                log.warning("index lists deltas the signed targets do not; using snapshot")
            elif sum(i.length for i in infos if i) >= snapshot_info.length:
                log.info("delta chain v%d -> v%d is larger than the snapshot; taking the "
                         "snapshot", from_version, index.version)
            else:
                try:
                    for ref, delta_info in zip(chain, infos):
                        assert delta_info is not None
                        path = self._download_optional(
                            updater, delta_info,
                            f"delta v{ref.from_version}->v{ref.to_version}", missing_ok=True)
                        if path is None:
                            raise DeltaUnusable(f"{ref.path} is missing on the server")
                        with self._translated(f"applying {ref.path}"):
                            count = apply_delta(db, path, ref, source=self.url,
                                                now=self.clock())
                    return SyncResult("delta", from_version, index.version, count,
                                      time.monotonic() - started)
                except DeltaUnusable as exc:
                    log.warning("registry delta unusable (%s); falling back to the snapshot",
                                exc)
        path = self._download(updater, snapshot_info, f"snapshot v{index.version}")
        with self._translated(f"installing {index.snapshot}"):
            count = install_snapshot(db, path, index, source=self.url, now=self.clock())
        return SyncResult("snapshot", from_version, index.version, count,
                          time.monotonic() - started)

    def _mark_verified(self) -> None:
        """Record that signed, unexpired metadata has just shown the installed version to
        be the newest: the registry's freshness runs from here (see RegistryInfo)."""
        with self._translated("recording the verification time"):
            conn = sqlite3.connect(self.paths.db, timeout=30)
            try:
                with conn:
                    write_meta(conn, verified_at=self.clock())
            finally:
                conn.close()

    def _updater(self) -> Updater:
        meta_dir = self.paths.metadata_dir
        incoming = self.paths.incoming
        meta_dir.mkdir(parents=True, exist_ok=True)
        incoming.mkdir(parents=True, exist_ok=True)
        bootstrap = self._bootstrap_root()
        fetcher = _Fetcher(incoming, self.progress, self.socket_timeout)
        with self._translated("loading the trusted root"):
            return Updater(str(meta_dir), f"{self.url}/metadata/", str(incoming),
                           f"{self.url}/targets/", fetcher=fetcher, bootstrap=bootstrap)

    def _bootstrap_root(self) -> bytes | None:
        """The flashed root on first use (or when the flashed one is newer than what was
        learnt since); otherwise None, so that ngclient trusts its cached, rotated root."""
        try:
            flashed = self.trusted_root.read_bytes()
            flashed_version = Metadata.from_bytes(flashed).signed.version
        except (OSError, ValueError, tuf_exc.RepositoryError) as exc:
            raise SignatureError(
                f"trusted root {self.trusted_root} is missing or unreadable ({exc}); "
                "reflash firmware_config/registry_root.json from the operator") from exc
        cached = self.paths.metadata_dir / "root.json"
        try:
            cached_version = Metadata.from_bytes(cached.read_bytes()).signed.version
        except (OSError, ValueError, tuf_exc.RepositoryError):
            return flashed
        return flashed if flashed_version > cached_version else None

    def _targetinfo(self, updater: Updater, path: str) -> TargetFile:
        with self._translated(f"looking up {path}"):
            info = updater.get_targetinfo(path)
        if info is None:
            raise SyncError(f"{self.url}: the index names {path}, which the signed targets "
                            "do not list; the publisher's repository is inconsistent")
        return info

    def _download(self, updater: Updater, info: TargetFile, label: str) -> Path:
        path = self._download_optional(updater, info, label, missing_ok=False)
        assert path is not None
        return path

    def _download_optional(self, updater: Updater, info: TargetFile, label: str, *,
                           missing_ok: bool) -> Path | None:
        """Download (or reuse a verified earlier download of) a target into incoming/.
        With ``missing_ok``, a 403/404 answers None instead of failing the sync."""
        dest = self.paths.incoming / Path(info.path).name
        if updater.find_cached_target(info, str(dest)):
            return dest
        fetcher = updater._fetcher  # noqa: SLF001 - our own _Fetcher, set in _updater()
        assert isinstance(fetcher, _Fetcher)
        fetcher.label, fetcher.total = label, info.length
        try:
            with self._translated(f"downloading {info.path}"):
                try:
                    updater.download_target(info, str(dest))
                except tuf_exc.DownloadHTTPError as exc:
                    if missing_ok and exc.status_code in (403, 404):
                        return None
                    raise
        finally:
            fetcher.label = None
        return dest

    @contextmanager
    def _translated(self, action: str) -> Iterator[None]:
        """python-tuf, urllib3 and OS errors -> the appliance's error tree."""
        where = f"registry sync from {self.url}: {action}"
        keep = "; the current registry is kept"
        try:
            yield
        except RegistryError:
            raise
        except tuf_exc.ExpiredMetadataError as exc:
            raise FreezeError(f"{where}: signed metadata has expired ({exc}); the publisher "
                              f"must re-sign (registry keys timestamp){keep}") from exc
        except tuf_exc.BadVersionNumberError as exc:
            raise RollbackError(f"{where}: the server offers older metadata than this unit "
                                f"already trusts ({exc}){keep}") from exc
        except (tuf_exc.RepositoryError, tuf_exc.DownloadLengthMismatchError) as exc:
            raise SignatureError(f"{where}: verification failed "
                                 f"({type(exc).__name__}: {exc}){keep}") from exc
        except (tuf_exc.DownloadError, urllib3.exceptions.HTTPError) as exc:
            cause = exc.__cause__ or exc.__context__
            detail = "; ".join(str(e) for e in (exc, cause) if e and str(e))
            raise SyncError(f"{where}: network failure ({detail or type(exc).__name__}); "
                            f"check the unit's network and registry.repository_url"
                            f"{keep}") from exc
        except OSError as exc:
            if exc.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG):
                raise SyncError(f"{where}: disk full ({exc}); free space in "
                                f"{self.paths.db.parent}{keep}") from exc
            raise SyncError(f"{where}: {exc}{keep}") from exc
        except sqlite3.Error as exc:
            raise SyncError(f"{where}: database error ({exc}){keep}") from exc

    @contextmanager
    def _exclusive(self) -> Iterator[None]:
        """One sync at a time per registry, across processes (the service's scheduler
        and a technician's ``python -m appliance sync``): the second waits its turn."""
        with open(self.paths.lock, "a+") as fh:
            fcntl.flock(fh, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- status and alarms -----------------------------------------------------------------

    def _failed(self, exc: RegistryError) -> None:
        kind = alarm_kind(exc)
        log.error("%s: %s", kind, exc)
        record_attempt(self.paths, to_iso(self.clock()), error=(kind, str(exc)))
        if self.on_alarm is not None:
            try:
                self.on_alarm(kind, str(exc))
            except Exception:  # an alarm sink's bug must not hide the sync failure
                log.exception("on_alarm callback failed for %s", kind)


def _clear_dir(directory: Path) -> None:
    """Drop downloaded files once applied (a snapshot is as large as the registry), but
    keep the index: when unchanged, the next check then costs one timestamp request."""
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_file() and entry.name != Path(INDEX_TARGET).name:
                entry.unlink(missing_ok=True)
