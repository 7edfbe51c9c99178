"""The status page's 24-hour history: bounded, per minute, kept across a restart (a real
state.db file)."""

from __future__ import annotations

from pathlib import Path

from appliance.state.history import STEP_S, VERDICTS, WINDOW_S, History, columns, counts_since, sample
from appliance.state.store import Store, run_sql, write_txn

T0 = 1_800_000_000.0  # a minute boundary (divisible by 60)


def rows() -> int:
    return int(run_sql("SELECT count(*) FROM history").fetchone()[0])


def test_two_days_of_minutes_keep_one_day(store: Store) -> None:
    h = History()
    minutes = 2 * WINDOW_S // STEP_S
    with write_txn():
        for i in range(minutes):
            h.record({"queue": 1.0, "rssi.sim0": 15.0, "replies.hit": 1.0}, now=T0 + i * STEP_S)
    # The bound: 3 series × 1,440 minutes, however long the unit runs.
    assert rows() == 3 * WINDOW_S // STEP_S
    w = h.window(now=T0 + (minutes - 1) * STEP_S)
    assert len(w["times"]) == WINDOW_S // STEP_S and w["times"][-1] == T0 + (minutes - 1) * 60
    assert w["replies_24h"]["hit"] == WINDOW_S // STEP_S and w["queue"].count(None) == 0


def test_counts_add_up_within_a_minute_and_gauges_take_the_last(store: Store) -> None:
    h = History()
    h.record({"queue": 5.0, "replies.no_record": 2.0}, now=T0 + 1)
    h.record({"queue": 3.0, "replies.no_record": 1.0, "replies.hit": 1.0}, now=T0 + 59)
    w = h.window(now=T0 + 30)
    assert w["queue"][-1] == 3.0
    assert w["replies"]["no_record"][-1] == 3.0 and w["replies"]["hit"][-1] == 1.0
    assert w["replies"]["invalid"][-1] == 0.0  # running, no such reply: zero, not a gap
    # The window is kept between writes (the page asks at every refresh), never past one.
    assert h.window(now=T0 + 40) is w
    h.record({"queue": 8.0}, now=T0 + 50)
    assert h.window(now=T0 + 50)["queue"][-1] == 8.0
    assert h.window(now=T0 + 60)["queue"][-2:] == [8.0, None]  # a new minute, a new window


def test_history_survives_a_restart(tmp_path: Path) -> None:
    s = Store(tmp_path / "state.db")
    History().record({"queue": 2.0, "balance.sim1": 99.5}, now=T0)
    s.close()
    s = Store(tmp_path / "state.db")
    try:
        w = History().window(now=T0 + 10 * STEP_S)
        assert w["queue"][-11] == 2.0 and w["balance"]["sim1"][-11] == 99.5
        # The ten minutes since are a gap (the unit was off), not zeros.
        assert w["queue"][-10:] == [None] * 10
        assert w["replies"]["hit"][-10:] == [None] * 10
    finally:
        s.close()


def test_columns_is_pure_and_ignores_rows_outside_the_window() -> None:
    first = 100
    w = columns([(99, "queue", 9.0), (100, "queue", 1.0), (101, "rssi.sim0", 20.0),
                 (102, "queue", 0.0), (102, "replies.limit", 2.0), (103, "queue", 7.0),
                 (101, "bogus", 1.0)], first, 102)
    assert w["times"] == [6000, 6060, 6120]
    assert w["queue"] == [1.0, None, 0.0]
    assert w["rssi"] == {"sim0": [None, 20.0, None]}
    assert w["replies"]["limit"] == [0.0, None, 2.0] and list(w["replies"]) == list(VERDICTS)
    assert w["replies_24h"]["limit"] == 2


def test_sample_leaves_out_what_is_not_known() -> None:
    snap = {"queue": {"pending": 4},
            "modems": [{"name": "sim0", "state": "ready", "rssi": 17, "balance": 12.5},
                       {"name": "sim1", "state": "ready", "rssi": 99, "balance": None},
                       {"name": "sim2", "state": "gone", "rssi": 20, "balance": 3.0}]}
    values = sample(snap, counts_since({"hit": 3, "no_record": 5}, {"hit": 3, "no_record": 1}))
    assert values == {"queue": 4.0, "replies.no_record": 4.0, "rssi.sim0": 17.0,
                      "balance.sim0": 12.5, "balance.sim2": 3.0}
    # A counter that restarted (the service restarted) counts from zero, never negative.
    assert counts_since({"hit": 2}, {"hit": 7}) == {}


def test_rows_from_a_wrong_clock_do_not_stay(store: Store) -> None:
    """A Pi without an RTC can run on a wrong (later) time until time sync; what it wrote
    then must not outlive the bound once the clock is right."""
    h = History()
    h.record({"queue": 1.0}, now=T0 + 400 * 86400)  # a clock a year ahead
    h.record({"queue": 2.0}, now=T0)                 # time sync: back to the real time
    assert rows() == 1
    assert h.window(now=T0)["queue"][-1] == 2.0
