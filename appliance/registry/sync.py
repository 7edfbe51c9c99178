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

Every download has an overall deadline, not only a gap timeout between bytes (a server
sending one byte every two seconds never trips a 30 s gap timeout): each file gets
``file_deadline_s`` plus its signed maximum length at ``min_rate`` bytes a second, and
the whole sync ``sync_deadline_s``. A blocked read is cut by shutting its socket down.

"Current" is only said about content that verifies: at the installed version the whole
content is checked against the signed content digest (``verifier``), and a failure
installs the snapshot again instead of vouching for the damaged file.

One sync at a time per registry: a second one (a technician's ``sync`` while the nightly
runs) is told at once which process has held the lock since when (:class:`SyncBusy`).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import sqlite3
import tempfile
import threading
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

from appliance.config.credentials import redact_credentials
from appliance.errors import (
    ClockNotTrusted, ConfigError, DeltaUnusable, FreezeError, RegistryError, RollbackError,
    SignatureError, SyncBusy, SyncDeadline, SyncError, UnsignedMassRemoval,
)
from appliance.registry.apply import (
    PAUSE_ENV, apply_delta, install_snapshot, installed_meta, recover,
)
from appliance.registry.formats import INDEX_TARGET, Index
from appliance.registry.models import to_iso, write_meta
from appliance.registry.removal import DEFAULT_MAX_REMOVAL_PERCENT
from appliance.registry.seal import Verification, verify_file
from appliance.registry.status import RegistryPaths, record_attempt, sync_status

log = logging.getLogger(__name__)

__all__ = ["ALARM_KINDS", "PAUSE_ENV", "RegistryPaths", "RegistrySync", "SyncResult",
           "alarm_kind", "sync_status"]

AlarmCallback = Callable[[str, str], None]
#: The alarm kinds a sync raises; all are cleared (``on_clear``) by a successful sync.
ALARM_KINDS = ("registry_sync", "registry_signature", "registry_rollback", "registry_freeze",
               "registry_clock", "registry_deadline", "registry_mass_removal")
#: progress(label, bytes_done, bytes_total) during downloads.
ProgressCallback = Callable[[str, int, int], None]
#: verifier(expected content digest or None) -> the verification of the installed file.
Verifier = Callable[[str | None], Verification]

#: Deadlines (issue 12, item 5). A file may take FILE_DEADLINE_S plus its signed maximum
#: length at MIN_RATE (32 KB/s, a poor EDGE link: a 71 MB snapshot of 1M records gets
#: 37 min); a whole sync SYNC_DEADLINE_S. The gap timeout between bytes stays
#: ``socket_timeout``.
FILE_DEADLINE_S = 60.0
MIN_RATE = 32 * 1024
SYNC_DEADLINE_S = 45 * 60.0


class _DeadlineHit(tuf_exc.SlowRetrievalError):
    """Raised inside the fetcher; translated into :class:`SyncDeadline`."""


def alarm_kind(exc: BaseException) -> str:
    """The alarm name for a failed sync, most specific first."""
    for cls, kind in ((ClockNotTrusted, "registry_clock"), (FreezeError, "registry_freeze"),
                      (RollbackError, "registry_rollback"),
                      (SignatureError, "registry_signature"),
                      (SyncDeadline, "registry_deadline"),
                      (UnsignedMassRemoval, "registry_mass_removal")):
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
                 socket_timeout: int, *, sync_deadline: float, file_deadline_s: float,
                 min_rate: float) -> None:
        super().__init__(socket_timeout=socket_timeout, chunk_size=256 * 1024,
                         app_user_agent="nsor-appliance")
        self.tmp_dir = tmp_dir
        self.progress = progress
        self.label: str | None = None
        self.total = 0
        self.sync_deadline = sync_deadline      # time.monotonic() value
        self.file_deadline_s = file_deadline_s
        self.min_rate = min_rate
        self._max_length: int | None = None

    def download_bytes(self, url: str, max_length: int) -> bytes:
        self._max_length = max_length
        try:
            return super().download_bytes(url, max_length)
        finally:
            self._max_length = None

    def _deadline(self, url: str) -> float:
        allowance = self.file_deadline_s + (self._max_length or 0) / self.min_rate
        deadline = min(time.monotonic() + allowance, self.sync_deadline)
        if deadline <= time.monotonic():
            raise _DeadlineHit(f"{url}: the sync's overall deadline has passed")
        return deadline

    def _fetch(self, url: str) -> Iterator[bytes]:
        deadline = self._deadline(url)
        remaining = deadline - time.monotonic()
        gap = max(0.1, min(float(self.socket_timeout), remaining))
        try:
            # No retries: each would restart the connect and header waits. The next
            # scheduled attempt is the retry.
            response = self._proxy_env.request(
                "GET", url, preload_content=False, retries=urllib3.Retry(0, redirect=3),
                timeout=urllib3.Timeout(connect=gap, read=gap))
        except urllib3.exceptions.MaxRetryError as exc:
            if isinstance(exc.reason, urllib3.exceptions.TimeoutError):
                if time.monotonic() >= deadline - 0.05:
                    raise _DeadlineHit(f"{url}: no answer by its deadline") from exc
                raise tuf_exc.SlowRetrievalError from exc
            raise
        if response.status >= 400:
            response.close()
            raise tuf_exc.DownloadHTTPError(f"HTTP error occurred with status "
                                            f"{response.status}", response.status)
        chunks = self._until(response, deadline, url)
        if self.progress is None or self.label is None:
            return chunks
        return self._reporting(chunks, self.label, self.total, self.progress)

    def _until(self, response: Any, deadline: float, url: str) -> Iterator[bytes]:
        """The body in chunks, cut at ``deadline``: a timer shuts the socket down under a
        blocked read, and ``read1`` returns after one receive so the deadline is checked
        between them."""
        timer = threading.Timer(max(0.0, deadline - time.monotonic()), response.shutdown)
        timer.daemon = True
        timer.start()
        try:
            while True:
                if time.monotonic() >= deadline:
                    raise _DeadlineHit(f"{url}: not received by its deadline")
                try:
                    chunk = response.read1(self.chunk_size)
                except (urllib3.exceptions.HTTPError, OSError) as exc:
                    if time.monotonic() >= deadline - 0.05:
                        raise _DeadlineHit(f"{url}: not received by its deadline") from exc
                    if isinstance(exc, urllib3.exceptions.TimeoutError):
                        raise tuf_exc.SlowRetrievalError from exc
                    raise
                if not chunk:
                    return
                yield chunk
        finally:
            timer.cancel()
            response.release_conn()

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
                 socket_timeout: int = 30, file_deadline_s: float = FILE_DEADLINE_S,
                 min_rate: float = MIN_RATE, sync_deadline_s: float = SYNC_DEADLINE_S,
                 verifier: Verifier | None = None,
                 max_removal_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> None:
        self.paths = RegistryPaths(Path(path))
        self.file_deadline_s = file_deadline_s
        self.min_rate = min_rate
        self.sync_deadline_s = sync_deadline_s
        self.verifier: Verifier = verifier or (
            lambda expected: verify_file(self.paths.db, expected))
        self.max_removal_percent = max_removal_percent
        self._deadline = 0.0
        self.url = repository_url.rstrip("/")
        # What messages, the status file and registry_meta.source say: a password in the
        # URL's user-info never leaves the fetcher.
        self.shown_url = redact_credentials(self.url)
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
        with self._exclusive():
            started = time.monotonic()
            self._deadline = started + self.sync_deadline_s
            try:
                result = self._run(started)
                self._mark_verified()
            except RegistryError as exc:
                self._failed(exc)
                raise
            except Exception as exc:  # an unforeseen failure must not skip the alarm
                wrapped = SyncError(f"registry sync from {self.shown_url} failed unexpectedly: "
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
        # Metadata read from a damaged file is no ground to refuse its repair: the clock
        # and rollback guards below trust the installed version and signing time only
        # if the content verifies (TUF's own metadata still refuses a rollback).
        verification: Verification | None = None
        if signed_at is not None and now < signed_at:
            verification = self.verifier(None)
            if verification.ok:
                raise ClockNotTrusted(
                    f"clock reads {now.isoformat()}, before the installed registry's "
                    f"signing time {signed_at.isoformat()}: not syncing until the time is "
                    "set (NTP, or the modem's AT+CCLK)")
            log.error("installed registry fails verification (%s): its signing time is "
                      "not trusted", verification.problem)
            from_version = None
        updater = self._updater()
        with self._translated("refreshing the signed metadata"):
            updater.refresh()
            info = updater.get_targetinfo(INDEX_TARGET)
        if info is None:
            raise SyncError(f"{self.shown_url} lists no {INDEX_TARGET}: is repository_url the "
                            "publisher's `public` directory?")
        index = Index.from_json(self._download(updater, info, "index").read_bytes())

        if from_version is not None and index.version <= from_version:
            # Never vouch again for content that fails verification: re-install instead.
            verification = verification or self.verifier(
                index.content_digest if index.version == from_version else None)
            if not verification.ok:
                log.error("installed registry v%s fails verification (%s): installing the "
                          "snapshot again", from_version, verification.problem)
                from_version = None
        if from_version is not None and index.version < from_version:
            raise RollbackError(
                f"{self.shown_url} offers registry version {index.version}, older than the "
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
                            count = apply_delta(
                                db, path, ref, source=self.shown_url, now=self.clock(),
                                max_removal_percent=self.max_removal_percent)
                    return SyncResult("delta", from_version, index.version, count,
                                      time.monotonic() - started)
                except DeltaUnusable as exc:
                    log.warning("registry delta unusable (%s); falling back to the snapshot",
                                exc)
        path = self._download(updater, snapshot_info, f"snapshot v{index.version}")
        with self._translated(f"installing {index.snapshot}"):
            count = install_snapshot(db, path, index, source=self.shown_url, now=self.clock(),
                                     installed_version=installed.get("version"),
                                     max_removal_percent=self.max_removal_percent)
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
        fetcher = _Fetcher(incoming, self.progress, self.socket_timeout,
                           sync_deadline=self._deadline,
                           file_deadline_s=self.file_deadline_s, min_rate=self.min_rate)
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
            raise SyncError(f"{self.shown_url}: the index names {path}, which the signed targets "
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
        where = f"registry sync from {self.shown_url}: {action}"
        keep = "; the current registry is kept"
        try:
            yield
        except RegistryError:
            raise
        except _DeadlineHit as exc:
            raise SyncDeadline(f"{where}: {exc} (per file {self.file_deadline_s:g} s + "
                               f"{self.min_rate / 1024:g} KB/s of its size, per sync "
                               f"{self.sync_deadline_s:g} s); the server or the link is too "
                               f"slow{keep}") from exc
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
        and a technician's ``python -m appliance sync``). The second does not wait: it
        raises :class:`SyncBusy` naming the holder and since when (written into the lock
        file by the holder), so a technician is not left looking at a silent terminal."""
        with open(self.paths.lock, "a+") as fh:
            try:
                fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                fh.seek(0)
                holder = fh.read(200).strip() or "unknown process, since unknown"
                raise SyncBusy(f"another registry sync is running ({holder}); it ends by "
                               f"its deadline ({self.sync_deadline_s / 60:g} min at most). "
                               "Try again later, or see `python -m appliance registry "
                               "status`") from None
            try:
                fh.seek(0)
                fh.truncate()
                fh.write(f"pid {os.getpid()}, since {to_iso(self.clock())}\n")
                fh.flush()
                yield
            finally:
                fh.seek(0)
                fh.truncate()
                fcntl.flock(fh, fcntl.LOCK_UN)

    # -- status and alarms -----------------------------------------------------------------

    def _failed(self, exc: RegistryError) -> None:
        kind = alarm_kind(exc)
        # A library's message (urllib3, python-tuf) may quote the full URL.
        message = redact_credentials(str(exc))
        log.error("%s: %s", kind, message)
        record_attempt(self.paths, to_iso(self.clock()), error=(kind, message))
        if self.on_alarm is not None:
            try:
                self.on_alarm(kind, message)
            except Exception:  # an alarm sink's bug must not hide the sync failure
                log.exception("on_alarm callback failed for %s", kind)


def _clear_dir(directory: Path) -> None:
    """Drop downloaded files once applied (a snapshot is as large as the registry), but
    keep the index: when unchanged, the next check then costs one timestamp request."""
    if directory.is_dir():
        for entry in directory.iterdir():
            if entry.is_file() and entry.name != Path(INDEX_TARGET).name:
                entry.unlink(missing_ok=True)
