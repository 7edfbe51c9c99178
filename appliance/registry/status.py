"""Where a registry's companion files live, and the persistent sync status.

The status file (``registry.status.json`` beside ``registry.db``) survives restarts so a
technician's ``status`` command and the logs can say when the unit last synced and why the
last attempt failed, even after a reboot. It is written atomically (temp file + rename);
failing to write it (disk full) is logged and never hides the sync error itself.
"""

from __future__ import annotations

import json
import logging
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.registry.lookup import Registry
from appliance.registry.models import from_iso

if TYPE_CHECKING:
    from appliance.registry.sync import SyncResult

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RegistryPaths:
    """The files a registry at ``db`` owns, all in its directory (one filesystem, so that
    ``os.replace`` is atomic)."""

    db: Path

    @property
    def status(self) -> Path:
        return self.db.with_suffix(".status.json")

    @property
    def metadata_dir(self) -> Path:
        """ngclient's trusted metadata (root history, last timestamp/snapshot/targets)."""
        return self.db.with_suffix(".tuf")

    @property
    def incoming(self) -> Path:
        return self.db.with_suffix(".incoming")

    @property
    def lock(self) -> Path:
        return self.db.with_name(f".{self.db.name}.lock")


def read_status_file(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text())
        return data if isinstance(data, dict) else {}
    except (OSError, ValueError):
        return {}


def record_attempt(paths: RegistryPaths, now: str, *, result: SyncResult | None = None,
                   error: tuple[str, str] | None = None) -> None:
    """Record one sync attempt: a ``result`` on success, ``(kind, message)`` on failure.

    ``last_error`` is kept after a later success (with its time) so that an intermittent
    problem stays visible; ``consecutive_failures`` says whether it is current.
    """
    status = read_status_file(paths.status)
    status["last_attempt"] = now
    if result is not None:
        status["last_success"] = now
        status["consecutive_failures"] = 0
        status["last_result"] = {"action": result.action, "from": result.from_version,
                                 "to": result.to_version, "seconds": round(result.seconds, 3)}
    elif error is not None:
        status["last_error"] = {"at": now, "kind": error[0], "message": error[1]}
        status["consecutive_failures"] = int(status.get("consecutive_failures", 0) or 0) + 1
    tmp = paths.status.with_name(f".{paths.status.name}.tmp")
    try:
        tmp.write_text(json.dumps(status, indent=1, sort_keys=True))
        os.replace(tmp, paths.status)
    except OSError as exc:
        log.error("cannot write sync status %s: %s", paths.status, exc)


def sync_status(path: Path | str) -> dict[str, Any]:
    """Registry version, record count, signing time, expiry, last sync, last error.

    Times are aware datetimes (or None); ``last_error`` is ``{"at", "kind", "message"}``
    or None; ``healthy`` is False while there is no registry or the latest attempt failed.
    """
    paths = RegistryPaths(Path(path))
    with Registry(paths.db) as registry:
        info = registry.info()
    status = read_status_file(paths.status)

    def when(key: str) -> datetime | None:
        value = status.get(key)
        try:
            return from_iso(value) if isinstance(value, str) else None
        except ValueError:
            return None

    failures = int(status.get("consecutive_failures", 0) or 0)
    return {
        "path": str(paths.db), "exists": info.exists, "error": info.error,
        "version": info.version, "record_count": info.record_count, "source": info.source,
        "signed_at": info.signed_at, "expires_at": info.expires_at,
        "imported_at": info.imported_at, "last_attempt": when("last_attempt"),
        "last_success": when("last_success"), "last_result": status.get("last_result"),
        "last_error": status.get("last_error"), "consecutive_failures": failures,
        "healthy": info.usable and failures == 0,
    }
