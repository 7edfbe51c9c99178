"""When the unit syncs: nightly with jitter, optional cheap checks, retries with backoff.

Jobs on an APScheduler 3.x scheduler (the service's own ``BackgroundScheduler`` when it
passes one, so that all periodic work shares one thread pool):

* ``registry-nightly`` -- ``CronTrigger`` at ``sync_time`` in ``timezone`` (Asia/Karachi,
  UTC+5, no DST) with up to ``jitter_minutes`` of random delay, so a national fleet does
  not reach the CDN in the same second;
* ``registry-check`` -- every ``check_interval_minutes`` (0 = off): a sync that costs one
  small ``timestamp.json`` request when nothing changed, for urgent removals;
* ``registry-retry`` -- after a failure, a one-off retry ``retry_initial_s`` later,
  doubling up to ``retry_max_s``, until a sync succeeds;
* ``registry-stale`` -- every few minutes, an alarm while the installed registry is
  beyond ``max_age`` (the responder already answers "unavailable" then).

The clock guard (no sync while the clock reads earlier than the installed registry's
signing time: a Pi without RTC before NTP) lives in :class:`RegistrySync`, so that an
on-demand sync obeys it too; here it is just another failure that is retried.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any
from zoneinfo import ZoneInfo

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.cron import CronTrigger
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from appliance.errors import ConfigError, RegistryError, SyncBusy
from appliance.registry.lookup import Registry, is_stale
from appliance.registry.sync import AlarmCallback, RegistrySync, SyncResult
from appliance.backoff import Backoff

log = logging.getLogger(__name__)

NIGHTLY, CHECK, RETRY, STALE = ("registry-nightly", "registry-check", "registry-retry",
                                "registry-stale")


def parse_sync_time(text: str) -> tuple[int, int]:
    """``"02:30"`` -> (2, 30); ConfigError naming the key otherwise."""
    try:
        hour, minute = (int(part) for part in text.split(":"))
        if not (0 <= hour < 24 and 0 <= minute < 60):
            raise ValueError
    except ValueError:
        raise ConfigError(f"registry.sync_time {text!r} is not HH:MM (00:00-23:59)") from None
    return hour, minute


class RegistryScheduler:
    """Owns the registry jobs on ``scheduler`` (or on its own BackgroundScheduler)."""

    def __init__(self, sync: RegistrySync, *, sync_time: str = "02:30",
                 timezone_name: str = "Asia/Karachi", jitter_minutes: int = 60,
                 check_interval_minutes: float = 5, retry_initial_s: float = 60,
                 retry_max_s: float = 3600, max_age_hours: float = 72,
                 on_alarm: AlarmCallback | None = None,
                 stale_check_minutes: float = 10,
                 scheduler: BaseScheduler | None = None,
                 clock: Callable[[], datetime] | None = None) -> None:
        self.sync = sync
        self.hour, self.minute = parse_sync_time(sync_time)
        try:
            self.tz = ZoneInfo(timezone_name)
        except (KeyError, ValueError) as exc:
            raise ConfigError(f"registry.timezone {timezone_name!r} is not a known zone "
                              "(e.g. Asia/Karachi)") from exc
        self.jitter_s = max(0, int(jitter_minutes * 60))
        self.check_minutes = check_interval_minutes
        self.backoff = Backoff(retry_initial_s, retry_max_s)
        self.max_age = timedelta(hours=max_age_hours)
        self.on_alarm = on_alarm
        self.stale_minutes = stale_check_minutes
        self.clock = clock or (lambda: datetime.now(timezone.utc))
        self._own = scheduler is None
        self.scheduler: BaseScheduler = scheduler or BackgroundScheduler(timezone=self.tz)
        self._lock = threading.Lock()
        self.last_result: SyncResult | None = None

    @classmethod
    def from_config(cls, cfg: Any, sync: RegistrySync, **kwargs: Any) -> RegistryScheduler:
        """Build from a ``RegistryConfig``-like object (read by attribute)."""
        return cls(sync, sync_time=cfg.sync_time, timezone_name=cfg.timezone,
                   jitter_minutes=cfg.jitter_minutes,
                   check_interval_minutes=cfg.check_interval_minutes,
                   retry_initial_s=cfg.retry_initial_s, retry_max_s=cfg.retry_max_s,
                   max_age_hours=cfg.max_age_hours, **kwargs)

    def start(self) -> None:
        common: dict[str, Any] = {"replace_existing": True, "max_instances": 1,
                                  "coalesce": True}
        self.scheduler.add_job(
            self.run, CronTrigger(hour=self.hour, minute=self.minute, timezone=self.tz,
                                  jitter=self.jitter_s or None),
            id=NIGHTLY, args=("nightly",), misfire_grace_time=3600, **common)
        if self.check_minutes > 0:
            # Up to a tenth of the interval (30 s at 5 min) of jitter: units started
            # together by a power cut do not keep checking in the same second.
            self.scheduler.add_job(
                self.run, IntervalTrigger(minutes=self.check_minutes, timezone=self.tz,
                                          jitter=max(1, int(self.check_minutes * 6))),
                id=CHECK, args=("check",), misfire_grace_time=60, **common)
        if self.stale_minutes > 0:
            self.scheduler.add_job(
                self.check_stale, IntervalTrigger(minutes=self.stale_minutes, timezone=self.tz),
                id=STALE, misfire_grace_time=60, **common)
        if self._own and not self.scheduler.running:
            self.scheduler.start()
        job = self.scheduler.get_job(NIGHTLY)
        log.info("registry sync scheduled daily at %02d:%02d %s (+ up to %d min jitter)%s",
                 self.hour, self.minute, self.tz.key, self.jitter_s // 60,
                 f", checks every {self.check_minutes} min" if self.check_minutes else "")
        if job is not None and getattr(job, "next_run_time", None):
            log.info("next nightly registry sync: %s", job.next_run_time)

    def shutdown(self) -> None:
        for job_id in (NIGHTLY, CHECK, RETRY, STALE):
            if self.scheduler.get_job(job_id) is not None:
                self.scheduler.remove_job(job_id)
        if self._own and self.scheduler.running:
            self.scheduler.shutdown(wait=False)

    def run(self, reason: str = "manual") -> SyncResult | None:
        """One sync attempt; on failure schedule the next retry. Never raises (it runs on
        a scheduler thread, where an exception would only be logged by APScheduler)."""
        if reason == "check" and self.backoff.failures:
            log.debug("registry check skipped: a retry is already scheduled")
            return None
        with self._lock:
            try:
                result = self.sync.sync()
            except SyncBusy as exc:  # a technician's sync is doing the job right now
                log.info("registry sync (%s) skipped: %s", reason, exc)
                return None
            except RegistryError as exc:  # already logged, recorded and alarmed by sync
                delay = self.backoff.next_delay()
                when = self.clock() + timedelta(seconds=delay)
                self.scheduler.add_job(self.run, DateTrigger(run_date=when), id=RETRY,
                                       args=("retry",), replace_existing=True,
                                       misfire_grace_time=None)
                log.warning("registry sync (%s) failed: %s; retry %d in %.0f s (at %s)",
                            reason, type(exc).__name__, self.backoff.failures, delay,
                            when.isoformat())
                return None
            self.backoff.reset()
            if self.scheduler.get_job(RETRY) is not None:
                self.scheduler.remove_job(RETRY)
            self.last_result = result
            return result

    def check_stale(self) -> bool:
        """Raise the ``registry_stale`` alarm while the registry is too old; True if so."""
        with Registry(self.sync.paths.db) as registry:
            info = registry.info()
        now = self.clock()
        if not is_stale(info, self.max_age, now):
            return False
        age = info.age(now)
        message = (f"registry {info.path} is stale (age {age}, limit {self.max_age}): every "
                   "query is answered 'service temporarily unavailable' until a sync "
                   "succeeds" if info.exists else
                   f"no registry at {info.path}: every query is answered 'unavailable'; "
                   "run `python -m appliance sync`")
        log.error("%s", message)
        if self.on_alarm is not None:
            try:
                self.on_alarm("registry_stale", message)
            except Exception:
                log.exception("on_alarm callback failed for registry_stale")
        return True
