"""Alarms: one place that knows what is wrong with the unit right now.

An alarm is raised with a kind (``modem_blocked``, ``registry_stale``, ``queue_growing`` …)
and a message. It goes to the log at WARNING, stays listed as active until cleared (for the
status command, the status page and metrics), and optionally reaches the technicians by SMS,
at most once per kind per ``min_interval`` so that a flapping modem does not flood them.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

from ..config.credentials import redact_credentials
from ..status.format import disk_percent, fmt_bytes

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Alarm:
    kind: str
    message: str
    since: float
    last: float
    count: int


class Alarms:
    def __init__(self, *, sms_numbers: Sequence[str] = (), min_interval_s: float = 3600.0,
                 send_sms: Callable[[str, str], None] | None = None,
                 header: str = "NSOR") -> None:
        # The SMS header names the unit and its release: a technician who looks after many
        # units must know which one is calling, and whether it already runs the fixed release.
        self.header = header
        self.sms_numbers = tuple(sms_numbers)
        self.min_interval_s = min_interval_s
        self._send_sms = send_sms
        self._active: dict[str, Alarm] = {}
        self._last_sms: dict[str, float] = {}
        self._lock = threading.Lock()
        self.raised_total: dict[str, int] = {}

    def raise_(self, kind: str, message: str) -> None:
        message = redact_credentials(message)  # it reaches logs, status and SMS
        now = time.time()
        with self._lock:
            old = self._active.get(kind)
            self._active[kind] = Alarm(kind, message, old.since if old else now, now,
                                       (old.count if old else 0) + 1)
            self.raised_total[kind] = self.raised_total.get(kind, 0) + 1
            due = now - self._last_sms.get(kind, 0.0) >= self.min_interval_s
            if due and self.sms_numbers and self._send_sms is not None:
                self._last_sms[kind] = now
            else:
                due = False
        log.warning("ALARM %s: %s", kind, message)
        if due and self._send_sms is not None:
            for number in self.sms_numbers:
                try:
                    self._send_sms(number, f"{self.header} alarm {kind}: {message}"[:300])
                except Exception:
                    log.exception("could not queue the alarm SMS to a technician")

    def clear(self, kind: str) -> None:
        with self._lock:
            gone = self._active.pop(kind, None)
        if gone is not None:
            log.info("alarm %s cleared", kind)

    def active(self) -> list[Alarm]:
        with self._lock:
            return sorted(self._active.values(), key=lambda a: a.since)


class DiskUsage(NamedTuple):
    """The shape of :func:`shutil.disk_usage`'s result."""

    total: int
    used: int
    free: int


def disk_alarm(usage: Any, warn_percent: float, path: str = "") -> str | None:
    """The alarm text when the data disk is at least ``warn_percent`` full, else None.

    ``usage`` is what :func:`shutil.disk_usage` returns; the percentage is ``df``'s Use%
    (blocks reserved for root count as neither used nor free), so the two agree.
    """
    pct = disk_percent({"used": usage.used, "free": usage.free})
    if pct < warn_percent:
        return None
    where = f"data disk {path}" if path else "data disk"
    return (f"{where} is {pct:.0f}% full ({fmt_bytes(usage.free)} free, alarm at "
            f"{warn_percent:g}%); free space: `sudo journalctl --vacuum-size=100M`, "
            "remove old files, or move the data to a larger NSOR-DATA disk")
