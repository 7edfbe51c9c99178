"""The guard: who is never answered, the loop guard, duplicates and per-sender quotas.

Every test runs on a real ``state.db`` (the Store) with a real clock argument, so windows
are crossed by moving ``now`` rather than by waiting.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_dict
from appliance.service.guard import Guard, GuardVerdict
from appliance.registry.record import OffenderRecord
from appliance.rules.responder import Reply, Verdict
from appliance.state.store import Store

T0 = 1_750_000_000.0
OWN = "+923009999999"
A = "+923001234567"
A_NATIONAL = "0300-1234567"
B = "+923451112222"
CNIC1, CNIC2, CNIC3 = "3520212345671", "4210176543212", "6110112345678"
SECRET = bytes(range(32))


def make(tmp_path: Path, **limits: Any) -> tuple[Store, Guard]:
    config = config_from_dict({
        "unit": {"data_dir": str(tmp_path / "data"), "own_numbers": [OWN, "03001110000"]},
        "limits": {"loop_guard_count": 1000, "loop_guard_seconds": 1, **limits},
        "status": {"http_bind": ""},
    }, base_dir=tmp_path)
    store = Store(config.state_path)
    return store, Guard(config, secret=SECRET)


@pytest.fixture
def guard(tmp_path: Path) -> Iterator[Guard]:
    store, g = make(tmp_path, per_sender_hourly=3, per_sender_daily=5)
    yield g
    store.close()


def no_record(*cnics: str) -> Reply:
    return Reply("no record", "no_record", cnics, tuple(Verdict(c, None) for c in cnics))


def hit(cnic: str) -> Reply:
    rec = OffenderRecord(cnic=cnic, name_ur="ٹیسٹ", name_en="Test Person", parent_ur="ولد",
                         parent_en="Parent", relation="s/o", status="active")
    return Reply("Beware!", "hit", (cnic,), (Verdict(cnic, rec),))


HELP = Reply("help text", "help", (), ())
UNAVAILABLE = Reply("unavailable", "unavailable", (CNIC1,), ())


def ask(g: Guard, sender: str, text: str, now: float, reply: Reply | None = None) -> GuardVerdict:
    """check, and record the reply when the service would queue one."""
    v = g.check(sender, "international", text, now=now)
    if v.answer:
        g.record(sender, Reply("limit", "limit", (), ()) if v.limit_reply else
                 (reply or HELP), [], 1, "sim0", now=now)
    return v


# --- never answered -----------------------------------------------------------------------

@pytest.mark.parametrize("sender, sender_type, code", [
    (None, None, "no_sender"),
    ("", "unknown", "no_sender"),
    ("Jazz", "alphanumeric", "alphanumeric"),
    ("Telenor", None, "alphanumeric"),           # a name, whatever the type said
    ("HBL", "unknown", "alphanumeric"),
    ("8558", "short", "short_code"),
    ("123456", "unknown", "short_code"),         # limits.short_code_max_len = 6
    (OWN, "international", "own_number"),
    ("0300-9999999", "unknown", "own_number"),    # the own number written nationally
    ("+923001110000", "international", "own_number"),
])
def test_never_answered(guard: Guard, sender: str | None, sender_type: str | None,
                        code: str) -> None:
    v = guard.check(sender, sender_type, CNIC1, now=T0)
    assert (v.answer, v.code) == (False, code) and v.reason


def test_short_code_length_is_configurable(tmp_path: Path) -> None:
    store, g = make(tmp_path, short_code_max_len=3)
    try:
        assert g.check("8558", "short", CNIC1, now=T0).answer
        assert not g.check("555", "short", CNIC1, now=T0).answer
    finally:
        store.close()


# --- quotas -------------------------------------------------------------------------------

def test_hourly_limit_one_limit_reply_then_silence_until_the_window_has_room(
        tmp_path: Path) -> None:
    store, guard = make(tmp_path, per_sender_hourly=3, per_sender_daily=100)
    try:
        hourly_limit_sequence(guard)
    finally:
        store.close()


def hourly_limit_sequence(guard: Guard) -> None:
    for i in range(3):
        assert ask(guard, A, "help", T0 + i) == GuardVerdict(True)
    v = ask(guard, A, "help", T0 + 10)
    assert v.answer and v.limit_reply and v.code == "limit"
    for t in (T0 + 11, T0 + 1800, T0 + 3599):
        v = ask(guard, A, "help", t)
        assert (v.answer, v.code) == (False, "over_limit") and "already sent" in v.reason
    # The first answer (T0) leaves the sliding hour: room for one more answer.
    assert ask(guard, A, "help", T0 + 3600.5) == GuardVerdict(True)
    # Full again, and the limit reply of T0+10 is still inside the hour: silence.
    assert ask(guard, A, "help", T0 + 3601).code == "over_limit"
    # Another hour on, a new limit reply is allowed once the quota fills again.
    for i in range(3):
        assert ask(guard, A, "help", T0 + 9000 + i).answer
    assert ask(guard, A, "help", T0 + 9010).limit_reply


def test_daily_limit(tmp_path: Path) -> None:
    store, g = make(tmp_path, per_sender_hourly=100, per_sender_daily=4)
    try:
        for i in range(4):
            assert ask(g, A, "help", T0 + i * 7200).answer
        v = ask(g, A, "help", T0 + 30000)
        assert v.limit_reply and "daily" in v.reason
        assert ask(g, A, "help", T0 + 40000).code == "over_limit"
        assert ask(g, A, "help", T0 + 86_400 + 1).answer  # the first left the 24 h window
    finally:
        store.close()


def test_daily_limit_after_an_hourly_one_is_told_once_more(guard: Guard) -> None:
    for i in range(3):
        ask(guard, A, "help", T0 + i)
    assert ask(guard, A, "help", T0 + 10).limit_reply             # hourly quota (3)
    for i in range(2):
        assert ask(guard, A, "help", T0 + 4000 + i).answer
    v = ask(guard, A, "help", T0 + 4010)                           # daily quota (5)
    assert v.limit_reply and "daily" in v.reason
    assert ask(guard, A, "help", T0 + 20000).code == "over_limit"  # once per day


def test_one_sender_however_the_number_is_written(guard: Guard) -> None:
    for sender in (A, A_NATIONAL, "00923001234567"):
        assert ask(guard, sender, "help", T0).answer
    assert ask(guard, "923001234567", "help", T0).limit_reply
    assert ask(guard, B, "help", T0).answer  # another sender has its own quota


def test_one_limit_reply_when_modems_race(tmp_path: Path) -> None:
    """Two modems' owner threads checking one sender at once: BEGIN IMMEDIATE makes the
    read-count-write of check() one step, so exactly one of them sends the limit reply."""
    store, g = make(tmp_path, per_sender_hourly=1)
    try:
        ask(g, A, "help", T0)
        barrier = threading.Barrier(6)
        verdicts: list[GuardVerdict] = []

        def modem_thread() -> None:
            barrier.wait(5)
            verdicts.append(g.check(A, "international", "help", now=T0 + 5))

        threads = [threading.Thread(target=modem_thread) for _ in range(6)]
        for t in threads:
            t.start()
        for t in threads:
            t.join(20)
        assert sorted(v.code for v in verdicts) == ["limit"] + ["over_limit"] * 5
    finally:
        store.close()


def test_limits_survive_a_restart(tmp_path: Path) -> None:
    store, g = make(tmp_path, per_sender_hourly=2)
    for i in range(2):
        ask(g, A, "help", T0 + i)
    store.close()
    store, g = make(tmp_path, per_sender_hourly=2)
    try:
        assert ask(g, A, "help", T0 + 5).limit_reply
        assert ask(g, A, "help", T0 + 6).code == "over_limit"
    finally:
        store.close()


# --- duplicates ---------------------------------------------------------------------------

def test_same_cnic_answered_once_per_window(guard: Guard) -> None:
    assert ask(guard, A, CNIC1, T0, no_record(CNIC1)).answer
    for text in (CNIC1, "35202-1234567-1", "۳۵۲۰۲-۱۲۳۴۵۶۷-۱", f"check {CNIC1} please"):
        v = guard.check(A_NATIONAL, "national", text, now=T0 + 60)
        assert (v.answer, v.code) == (False, "duplicate"), text
    assert CNIC1 not in guard.check(A, "international", CNIC1, now=T0 + 60).reason
    assert guard.check(B, "international", CNIC1, now=T0 + 60).answer  # another sender
    assert guard.check(A, "international", f"{CNIC1} {CNIC2}", now=T0 + 60).answer  # one new
    assert guard.check(A, "international", CNIC1, now=T0 + 24 * 3600 + 1).answer


def test_every_cnic_of_a_multi_cnic_answer_counts(guard: Guard) -> None:
    reply = Reply("mixed", "mixed", (CNIC1, CNIC2),
                  (hit(CNIC1).verdicts[0], Verdict(CNIC2, None)))
    assert ask(guard, A, f"{CNIC1} {CNIC2}", T0, reply).answer
    assert guard.check(A, "international", CNIC2, now=T0 + 1).code == "duplicate"
    assert guard.check(A, "international", f"{CNIC2} {CNIC1}", now=T0 + 1).code == "duplicate"
    assert guard.check(A, "international", CNIC3, now=T0 + 1).answer


def test_unavailable_is_not_an_answer_for_the_duplicate_rule(guard: Guard) -> None:
    assert ask(guard, A, CNIC1, T0, UNAVAILABLE).answer
    assert guard.check(A, "international", CNIC1, now=T0 + 1).answer


def test_duplicate_window_zero_turns_the_rule_off(tmp_path: Path) -> None:
    store, g = make(tmp_path, duplicate_window_hours=0)
    try:
        ask(g, A, CNIC1, T0, no_record(CNIC1))
        assert g.check(A, "international", CNIC1, now=T0 + 1).answer
    finally:
        store.close()


# --- loop guard ---------------------------------------------------------------------------

def test_loop_guard(tmp_path: Path) -> None:
    store, g = make(tmp_path, loop_guard_count=3, loop_guard_seconds=60, per_sender_hourly=100)
    try:
        assert ask(g, A, "ok", T0).answer
        assert ask(g, A, "ok", T0 + 10).answer
        v = ask(g, A, "ok", T0 + 20)
        assert (v.answer, v.code) == (False, "loop") and "3 messages" in v.reason
        assert ask(g, A, "ok", T0 + 50).code == "loop"   # still fast: still refused
        assert ask(g, B, "ok", T0 + 50).answer           # others unaffected
        assert ask(g, A, "ok", T0 + 200).answer          # quiet for a minute: answered
    finally:
        store.close()


def test_loop_guard_counts_refused_messages_too(tmp_path: Path) -> None:
    """An auto-responder sending the same CNIC is stopped by the rate, not let through
    each time a duplicate window or quota would have let it."""
    store, g = make(tmp_path, loop_guard_count=4, loop_guard_seconds=60)
    try:
        ask(g, A, CNIC1, T0, no_record(CNIC1))
        assert [ask(g, A, CNIC1, T0 + i).code for i in (1, 2, 3)] == \
            ["duplicate", "duplicate", "loop"]
    finally:
        store.close()


# --- what is stored -----------------------------------------------------------------------

def test_no_clear_cnic_in_the_guard_or_audit_tables(guard: Guard, tmp_path: Path) -> None:
    ask(guard, A, CNIC1, T0, hit(CNIC1))
    ask(guard, A, f"{CNIC2} {CNIC3}", T0 + 1, no_record(CNIC2, CNIC3))
    guard.record_ignored(A, GuardVerdict(False, "dup", code="duplicate"), [], "sim0", CNIC1,
                         now=T0 + 2)
    conn = sqlite3.connect(tmp_path / "data" / "state.db")
    try:
        for table in ("guard_event", "guard_cnic", "audit_event"):
            rows = conn.execute(f"SELECT * FROM {table}").fetchall()
            assert rows
            flat = " ".join(map(str, rows))
            assert not any(c in flat for c in (CNIC1, CNIC2, CNIC3)), table
    finally:
        conn.close()


def test_guard_purge_keeps_what_windows_still_need(tmp_path: Path) -> None:
    store, g = make(tmp_path, per_sender_hourly=2, duplicate_window_hours=48)
    try:
        ask(g, A, CNIC1, T0, no_record(CNIC1))
        ask(g, A, "help", T0 + 40 * 3600)
        guard_rows, _ = g.purge(now=T0 + 49 * 3600)
        assert guard_rows == 3  # seen + answer + CNIC of T0; the later ones stay
        assert g.check(A, "international", CNIC1, now=T0 + 49 * 3600).answer
    finally:
        store.close()
