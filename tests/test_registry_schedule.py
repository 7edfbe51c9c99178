"""Scheduling: nightly cron with jitter, retry backoff, check skipping, stale alarm.

The scheduler is a real APScheduler BackgroundScheduler; the tests call the job function
(``RegistryScheduler.run``) directly instead of waiting for wall-clock triggers, and read
the jobs and triggers the scheduler holds.
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from zoneinfo import ZoneInfo

import pytest
from apscheduler.schedulers.background import BackgroundScheduler

from appliance.backoff import Backoff
from appliance.errors import ConfigError
from appliance.registry.schedule import (
    CHECK,
    NIGHTLY,
    RETRY,
    STALE,
    RegistryScheduler,
    parse_sync_time,
)
from tests.test_registry_support import Env, env, free_port_url, people

__all__ = ["env"]

KARACHI = ZoneInfo("Asia/Karachi")


def test_backoff_doubles_to_the_cap_and_resets() -> None:
    b = Backoff(60, 3600)
    assert [b.next_delay() for _ in range(8)] == [60, 120, 240, 480, 960, 1920, 3600, 3600]
    b.reset()
    assert b.next_delay() == 60
    with pytest.raises(ValueError):
        Backoff(10, 5)


def test_sync_time_parsing() -> None:
    assert parse_sync_time("02:30") == (2, 30)
    for bad in ("2:3:0", "24:00", "ab", "12:60"):
        with pytest.raises(ConfigError, match="sync_time"):
            parse_sync_time(bad)


def test_nightly_job_fires_in_the_jitter_window_karachi_time(env: Env) -> None:
    sched = BackgroundScheduler(timezone=KARACHI)
    rs = RegistryScheduler(env.unit(), sync_time="02:30", jitter_minutes=60,
                           check_interval_minutes=5, scheduler=sched)
    rs.start()
    try:
        nightly = sched.get_job(NIGHTLY)
        assert nightly is not None and sched.get_job(CHECK) is not None
        assert sched.get_job(STALE) is not None
        trigger = nightly.trigger
        assert trigger.jitter == 3600 and str(trigger.timezone) == "Asia/Karachi"
        now = datetime(2026, 5, 1, 12, 0, tzinfo=KARACHI)
        for _ in range(20):
            fire = trigger.get_next_fire_time(None, now).astimezone(KARACHI)
            assert fire.date() == now.date() + timedelta(days=1)
            assert (2, 30) <= (fire.hour, fire.minute) <= (3, 30)
    finally:
        rs.shutdown()


def test_no_check_job_when_interval_is_zero(env: Env) -> None:
    sched = BackgroundScheduler(timezone=KARACHI)
    rs = RegistryScheduler(env.unit(), check_interval_minutes=0, stale_check_minutes=0,
                           scheduler=sched)
    rs.start()
    assert sched.get_job(CHECK) is None and sched.get_job(STALE) is None
    rs.shutdown()
    assert sched.get_job(NIGHTLY) is None


def test_failures_schedule_retries_with_backoff_until_success(env: Env) -> None:
    env.publish(people(5))
    sched = BackgroundScheduler(timezone=KARACHI)
    sched.start(paused=True)             # jobs are stored (and replaced) but never fire
    clock_now = datetime.now(timezone.utc) + timedelta(days=1)
    down = RegistryScheduler(env.unit(free_port_url()), retry_initial_s=60, retry_max_s=200,
                             scheduler=sched, clock=lambda: clock_now)
    delays = []
    for _ in range(3):
        assert down.run("nightly") is None
        job = sched.get_job(RETRY)
        assert job is not None
        delays.append((job.trigger.run_date - clock_now).total_seconds())
    assert delays == [60, 120, 200]
    assert down.run("check") is None and down.backoff.failures == 3   # checks wait
    assert [kind for kind, _ in env.alarms] == ["registry_sync"] * 3
    up = RegistryScheduler(env.unit(), scheduler=sched)
    up.backoff = down.backoff
    result = up.run("retry")
    assert result is not None and result.to_version == 1
    assert sched.get_job(RETRY) is None and up.backoff.failures == 0
    sched.shutdown(wait=False)


def test_clock_guard_failure_is_retried_not_fatal(env: Env) -> None:
    env.publish(people(5))
    env.unit().sync()
    sched = BackgroundScheduler(timezone=KARACHI)
    rs = RegistryScheduler(env.unit(clock=lambda: datetime(2000, 1, 1, tzinfo=timezone.utc)),
                           scheduler=sched)
    assert rs.run("nightly") is None
    assert sched.get_job(RETRY) is not None
    assert env.alarms[-1][0] == "registry_clock"


def test_stale_registry_raises_an_alarm(env: Env) -> None:
    env.publish(people(5))
    alarms: list[tuple[str, str]] = []
    sched = BackgroundScheduler(timezone=KARACHI)
    now = [datetime.now(timezone.utc)]
    rs = RegistryScheduler(env.unit(), max_age_hours=72, scheduler=sched,
                           on_alarm=lambda k, m: alarms.append((k, m)), clock=lambda: now[0])
    assert rs.check_stale() is True and "no registry" in alarms[-1][1]
    rs.run()
    assert rs.check_stale() is False
    now[0] += timedelta(hours=73)
    assert rs.check_stale() is True
    assert alarms[-1][0] == "registry_stale" and "unavailable" in alarms[-1][1]


def test_from_config_reads_attributes(env: Env) -> None:
    from types import SimpleNamespace
    cfg = SimpleNamespace(sync_time="03:15", timezone="Asia/Karachi", jitter_minutes=0.0,
                          check_interval_minutes=0.0, retry_initial_s=5.0, retry_max_s=50.0,
                          max_age_hours=24.0)
    rs = RegistryScheduler.from_config(cfg, env.unit(),
                                       scheduler=BackgroundScheduler(timezone=KARACHI))
    assert (rs.hour, rs.minute, rs.jitter_s, rs.max_age) == (3, 15, 0, timedelta(hours=24))
    with pytest.raises(ConfigError, match="timezone"):
        RegistryScheduler(env.unit(), timezone_name="Mars/Olympus")
