"""The reply state table and the classes of send errors."""

from __future__ import annotations

import pytest

from appliance.errors import IllegalMove, ModemCommandError, ModemGone, ModemTimeout
from appliance.backoff import Backoff
from appliance.outbox.states import MOVES, ErrorClass, State, check_move, classify


@pytest.mark.parametrize("cur,new", [(a.value, b.value) for a in State for b in State
                                     if b not in MOVES[a]])
def test_every_move_outside_the_table_raises(cur: str, new: str) -> None:
    with pytest.raises(IllegalMove):
        check_move(cur, new)


def test_the_life_of_a_reply() -> None:
    path = ["queued", "sending", "retry", "sending", "sent", "delivered"]
    for cur, new in zip(path, path[1:]):
        check_move(cur, new)
    assert not MOVES[State.DELIVERED] and not MOVES[State.FAILED]  # final states


@pytest.mark.parametrize("exc,cls", [
    (ModemCommandError("x", kind="CMS", code=500), ErrorClass.TEMPORARY),
    (ModemCommandError("x", kind="CMS", code=38), ErrorClass.TEMPORARY),
    (ModemCommandError("x", kind="CMS", code=331), ErrorClass.TEMPORARY),
    (ModemCommandError("x", kind="CMS", code=1), ErrorClass.PERMANENT),
    (ModemCommandError("x", kind="CMS", code=304), ErrorClass.PERMANENT),
    (ModemCommandError("x", kind="CMS", code=21), ErrorClass.MODEM),   # credit out
    (ModemCommandError("x", kind="CMS", code=8), ErrorClass.MODEM),    # barred
    (ModemCommandError("x", kind="CME", code=10), ErrorClass.MODEM),   # no SIM
    (ModemCommandError("x", kind="CMS", code=9999), ErrorClass.TEMPORARY),  # unknown
    (ModemCommandError("x"), ErrorClass.TEMPORARY),
    (ModemTimeout("x"), ErrorClass.LINK),
    (ModemGone("x"), ErrorClass.LINK),
])
def test_error_classes(exc: Exception, cls: ErrorClass) -> None:
    assert classify(exc) is cls


def test_backoff_doubles_to_a_cap() -> None:
    b = Backoff(30, 100)
    assert [b.delay(n) for n in (1, 2, 3, 4)] == [30, 60, 100, 100]


def test_backoff_survives_a_week_of_failures() -> None:
    """A modem unplugged for days counts tens of thousands of reopen failures: the delay
    stays at the cap (2 ** 1024 would overflow and kill the owner thread)."""
    b = Backoff(1.0, 30.0)
    assert b.delay(1025) == b.delay(10**6) == 30.0
    for _ in range(5000):
        assert b.next_delay() <= 30.0
