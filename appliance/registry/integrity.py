"""Finding a damaged registry on its own, and having it repaired (issue 12, item 2).

SD cards in the field corrupt. A lookup already refuses a row that does not match its
signed record digest, and a row that vanished from a file the unit had verified (the
verified CNIC list, ``lookup.py``); what no lookup meets, and a file the unit has not
verified yet, only a scan of the whole content against the signed content digest finds.
:class:`IntegrityWatch` runs that scan (``Registry.verify``):

* at start-up: the service verifies before its first answer (2.4 s at 1M records on the
  dev box), and this watch then alarms and repairs a failure; without that, as the
  scheduler's first job;
* whenever the file at the registry path is not the one last verified (a sync, perhaps a
  technician's in another process, replaced or patched it), checked every
  ``change_check_s`` seconds at the cost of one ``stat()`` and one small query;
* every ``interval_minutes`` (:data:`DEFAULT_VERIFY_MINUTES`): the bound on how long
  damage no lookup meets stays unrepaired; docs/registry.md gives the measured cost that
  chose it.

A failure makes the registry corrupt (every query "service temporarily unavailable"),
raises the ``registry_corrupt`` alarm and asks for a repair: a sync that finds the
installed content failing verification installs the snapshot again. A later verification
that passes clears the alarm. A lookup that meets a row not matching its digest
(``Registry(on_corrupt=...)``) leads to the same alarm and repair.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from typing import Any

from apscheduler.schedulers.base import BaseScheduler
from apscheduler.triggers.date import DateTrigger
from apscheduler.triggers.interval import IntervalTrigger

from appliance.registry.lookup import Registry
from appliance.registry.seal import Verification

log = logging.getLogger(__name__)

#: Full verification interval. At 1,000,000 records one verification costs ~2.4 s of one
#: core on the dev box (scripts/bench_registry.py); a Raspberry Pi 4 is taken as ~5x
#: slower, so every 15 minutes is about 1.3 % of one core.
DEFAULT_VERIFY_MINUTES = 15.0
ALARM = "registry_corrupt"
VERIFY, VERIFY_CHANGED, REPAIR = ("registry-verify", "registry-verify-changed",
                                  "registry-repair")


class IntegrityWatch:
    """Verification jobs for ``registry`` on ``scheduler``; ``repair()`` re-fetches."""

    def __init__(self, registry: Registry, scheduler: BaseScheduler, *,
                 on_alarm: Callable[[str, str], None],
                 on_clear: Callable[[str], None],
                 repair: Callable[[], Any] | None = None,
                 interval_minutes: float = DEFAULT_VERIFY_MINUTES,
                 change_check_s: float = 15.0) -> None:
        self.registry = registry
        self.scheduler = scheduler
        self.on_alarm = on_alarm
        self.on_clear = on_clear
        self.repair = repair
        self.interval_minutes = interval_minutes
        self.change_check_s = change_check_s
        self.verifications = 0
        self.failures = 0
        self.repairs_requested = 0
        self.repairs_done = 0
        self._verifying = False
        registry.on_corrupt = self._corrupt_seen

    def start(self) -> None:
        common: dict[str, Any] = {"replace_existing": True, "max_instances": 1,
                                  "coalesce": True, "misfire_grace_time": 60}
        now = datetime.now(timezone.utc)
        if self.interval_minutes > 0:
            # Right away, unless the owner verified at start-up already (the service does,
            # before its first answer).
            first = now if self.registry.last_verification() is None else \
                now + timedelta(minutes=self.interval_minutes)
            self.scheduler.add_job(self.verify, IntervalTrigger(minutes=self.interval_minutes),
                                   id=VERIFY, next_run_time=first, **common)
        if self.change_check_s > 0:
            self.scheduler.add_job(self.verify_if_changed,
                                   IntervalTrigger(seconds=self.change_check_s),
                                   id=VERIFY_CHANGED, **common)
        if self.registry.corrupt is not None:  # found before this watch existed
            self._corrupt_seen(self.registry.corrupt)
        log.info("registry verification every %g min (and after every change)",
                 self.interval_minutes)

    def verify_if_changed(self) -> Verification | None:
        if self.registry.needs_verification():
            return self.verify()
        return None

    def verify(self) -> Verification:
        """One whole-content verification; never raises (it runs on a scheduler thread)."""
        self._verifying = True  # the transition to corrupt is handled here, not scheduled
        try:
            result = self.registry.verify()
        except Exception as exc:  # verify_file does not raise; a bug here must not either
            log.exception("registry verification failed unexpectedly")
            result = Verification(False, f"verification failed: {exc!r}", 0, 0.0)
        finally:
            self._verifying = False
        self.verifications += 1
        if result.ok:
            log.info("registry verified: %d rows in %.2f s", result.rows, result.seconds)
            self.on_clear(ALARM)
        else:
            self.failures += 1
            # Alarmed again at every failed verification (Alarms rate-limits the SMS), and
            # repaired again: the last repair may have met a network failure.
            self._alarm_and_repair(str(self.registry.corrupt or result.problem))
        return result

    def _corrupt_seen(self, message: str) -> None:
        """From Registry, on the transition to corrupt (maybe on a modem thread inside an
        SMS transaction): hand the alarm and the repair to the scheduler at once."""
        if self._verifying:
            return
        try:
            self.scheduler.add_job(self._alarm_and_repair, DateTrigger(), args=(message,),
                                   id=REPAIR, replace_existing=True, misfire_grace_time=None)
        except Exception:  # a stopped scheduler: still say so
            log.exception("could not schedule the registry repair")

    def _alarm_and_repair(self, message: str) -> None:
        self.on_alarm(ALARM, message)
        if self.repair is None:
            log.error("no registry.repository_url: repair the registry by hand "
                      "(python -m appliance registry import, or sync)")
            return
        self.repairs_requested += 1
        try:
            self.repair()
        except Exception:
            log.exception("registry repair failed; the next verification tries again")
        if self.registry.needs_verification():  # a new file came: judge it now
            result = self.registry.verify()
            self.verifications += 1
            if result.ok:
                self.repairs_done += 1
                log.warning("registry repaired: %d rows verified", result.rows)
                self.on_clear(ALARM)
