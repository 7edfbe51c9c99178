"""Old messages on a SIM are not citizens waiting (pure: values in, a decision out).

A SIM bought second-hand, reused from an office phone or simply left in a drawer holds
messages from before the unit: operator promotions, a short code's notices, a personal SMS
to its previous owner days ago. Answering them texts strangers. The SMS centre stamps every
message (TP-SCTS, TS 23.040 §9.2.3.11), so the unit can tell:

* **history**: stamped clearly (``history_margin_s``) before the unit first started on
  this SIM. Recorded, never answered, whatever it says.
* **late**: stamped long (``late_after_s``) before it reached the unit: the unit was off
  over a weekend, or the network held it. A CNIC in it is still a citizen's question and is
  answered; anything else (a "hello?", a promotion) is recorded, not answered.

The clock of a Pi without an RTC may be wrong before time sync. A stamp in the future is no
evidence of age: such a message is answered as usual (as before this rule existed), never
dropped on a guess.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass


@dataclass(frozen=True)
class AgeRules:
    history_margin_s: float = 600.0
    late_after_s: float = 3600.0


@dataclass(frozen=True)
class AgeVerdict:
    """Why a message is not answered: ``code`` for the audit log, ``reason`` for people."""

    code: str
    reason: str


def _span(seconds: float) -> str:
    if seconds >= 2 * 86400:
        return f"{seconds / 86400:.0f} days"
    if seconds >= 2 * 3600:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 60:.0f} min"


def judge_age(*, sent_at: float | None, received_at: float, first_start: float | None,
              has_cnic: bool | Callable[[], bool], rules: AgeRules) -> AgeVerdict | None:
    """None: answer it as usual; else why not. Times are Unix seconds. ``has_cnic`` may be
    a function, asked only for a late message (parsing every SMS twice costs CPU)."""
    if sent_at is None or sent_at > received_at + 300:
        return None  # no stamp, or a stamp from the future: nothing to judge by
    if first_start is not None and sent_at < first_start - rules.history_margin_s:
        return AgeVerdict("history", "on the SIM from before the unit first started on it "
                          f"(sent {_span(first_start - sent_at)} before that): the SIM's "
                          "history, not a question to this service")
    delay = received_at - sent_at
    if delay > rules.late_after_s and not (has_cnic() if callable(has_cnic) else has_cnic):
        return AgeVerdict("late", f"arrived {_span(delay)} after it was sent and carries no "
                          "CNIC: not answered late")
    return None
