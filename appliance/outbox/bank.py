"""Many modems: which one sends the next reply, how fast, and which are out of rotation.

The queue itself lives in ``state.db`` (its queries: :mod:`.table`); each modem's owner
thread asks the outbox, which asks :meth:`Bank.next_job`, when it is free. The policy, as
the service issue states it:

* a reply leaves from the modem that received the request, while that modem is healthy and
  under its caps; otherwise from another healthy modem (it may claim replies whose preferred
  modem is unavailable);
* all parts of one reply go on one modem, back to back (the engine's one transaction);
  once encoded, a reply belongs to its SIM and resumes there after any fault. Another modem
  takes it when that SIM is unavailable and none of its parts has left, or when the SIM
  has been unavailable for ``move_after_s`` (a split reply, counted in ``outbound.splits``);
* pacing: a minimum interval between two replies on one SIM, and rolling hourly/daily caps
  on parts, because operators suspend SIMs that send in bursts (docs/field-notes.md: ~200 SMS in
  15 minutes has cost a SIM);
* a modem on which N replies in a row failed leaves the rotation for a cooldown; the next
  health report after the cooldown re-admits it. The streak is the modem's, not a reply's:
  one reply retried counts once, and any part that leaves ends the streak, so a congested
  cell refusing 30 % of submissions does not rest a working modem. A credit-type failure
  (barring, no SMS bundle) takes it out until a balance check or a technician clears it.
"""

from __future__ import annotations

import logging
import threading
import time
from bisect import bisect_left
from collections import deque
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

from ..modem.contract import ModemState, ModemStatus
from ..modem.ports import Job
from .table import ReplyTable

log = logging.getLogger(__name__)

HOUR, DAY = 3600.0, 86400.0


@dataclass(frozen=True)
class SlotSettings:
    min_interval_s: float = 5.0
    hourly_cap: int = 300
    daily_cap: int = 2000


@dataclass
class Slot:
    """The bank's view of one modem."""

    name: str
    settings: SlotSettings
    status: ModemStatus | None = None
    sent: deque[float] = field(default_factory=deque)   # part times, last 24 h
    last_job_at: float = 0.0
    consecutive_failures: int = 0
    failing: set[int] = field(default_factory=set)   # replies in the current error streak
    down_since: float | None = None
    blocked_until: float = 0.0
    block_reason: str = ""
    credit_blocked: bool = False

    def sent_since(self, t: float) -> int:
        # Asked for every modem on every claim: a binary search, not a walk over the hour
        # (times are appended in order by the one owner thread).
        return len(self.sent) - bisect_left(self.sent, t)

    def over_caps(self, now: float) -> str:
        while self.sent and self.sent[0] < now - DAY:
            self.sent.popleft()
        if len(self.sent) >= self.settings.daily_cap:
            return "daily cap reached"
        if self.sent_since(now - HOUR) >= self.settings.hourly_cap:
            return "hourly cap reached"
        return ""

    def unavailable_reason(self, now: float) -> str:
        if self.status is None or self.status.state != ModemState.READY:
            return f"modem {self.status.state if self.status else 'starting'}"
        if self.credit_blocked:
            return self.block_reason
        if now < self.blocked_until:
            return self.block_reason
        return self.over_caps(now)

    def down_for(self, now: float) -> float:
        """Seconds this modem has been unavailable (0 while it is available)."""
        if not self.unavailable_reason(now):
            self.down_since = None
            return 0.0
        if self.down_since is None:
            self.down_since = now
        return now - self.down_since


class Bank:
    def __init__(self, table: ReplyTable, slots: Iterable[tuple[str, SlotSettings]], *,
                 block_after_failures: int = 5, block_cooldown_s: float = 600.0,
                 move_after_s: float = 120.0,
                 on_alarm: Callable[[str, str], None] | None = None,
                 on_clear: Callable[[str], None] | None = None) -> None:
        self.table = table
        self.slots = {name: Slot(name, s) for name, s in slots}
        self.block_after_failures = block_after_failures
        self.block_cooldown_s = block_cooldown_s
        self.move_after_s = move_after_s
        self._on_alarm = on_alarm or (lambda kind, msg: None)
        self._on_clear = on_clear or (lambda kind: None)
        self._lock = threading.Lock()
        self.pokers: dict[str, Callable[[], None]] = {}
        now = time.time()
        for slot in self.slots.values():
            slot.sent.extend(table.part_times(slot.name, now - DAY))

    # -- policy ----------------------------------------------------------------------------

    def available(self, name: str, now: float | None = None) -> bool:
        with self._lock:
            return not self.slots[name].unavailable_reason(now or time.time())

    def next_job(self, name: str) -> Job | None:
        now = time.time()
        with self._lock:
            slot = self.slots[name]
            if slot.unavailable_reason(now):
                return None
            if now < slot.last_job_at + slot.settings.min_interval_s:
                return None
            down = {n: s.down_for(now) for n, s in self.slots.items() if n != name}
        others = [n for n, t in down.items() if t > 0 or self.slots[n].unavailable_reason(now)]
        long_down = [n for n in others if down[n] >= self.move_after_s]
        job = self.table.claim_next(name, others_unavailable=others, long_down=long_down,
                                    alone=len(others) == len(down))
        if job is not None:
            with self._lock:
                slot.last_job_at = now
        return job

    def poke(self, preferred: str | None) -> None:
        """A reply was queued: wake its preferred modem, or everyone who could take it."""
        if preferred in self.pokers and self.available(preferred):
            self.pokers[preferred]()
            return
        for name, poke in self.pokers.items():
            if self.available(name):
                poke()

    # -- feedback from the engines ---------------------------------------------------------

    def part_sent(self, name: str, at: float) -> None:
        with self._lock:
            slot = self.slots[name]
            slot.sent.append(at)
            slot.consecutive_failures = 0  # a part left: the modem works
            slot.failing.clear()

    def send_succeeded(self, name: str) -> None:
        with self._lock:
            self.slots[name].consecutive_failures = 0
            self.slots[name].failing.clear()

    def send_failed(self, name: str, *, modem_fault: bool, reason: str,
                    reply: int | None = None) -> None:
        """A send failed on ``name``. ``reply`` counts once in the modem's streak however
        often it is retried: its own attempts are the reply's business (the outbox's table)."""
        with self._lock:
            slot = self.slots[name]
            if reply is None or reply not in slot.failing:
                slot.consecutive_failures += 1
            if reply is not None:
                slot.failing.add(reply)
            block = modem_fault or slot.consecutive_failures >= self.block_after_failures
            if block:
                slot.blocked_until = time.time() + self.block_cooldown_s
                slot.block_reason = (f"blocked after {slot.consecutive_failures} failed "
                                     f"replies in a row: {reason}")
                if modem_fault:
                    slot.credit_blocked = True
                    slot.block_reason = f"cannot send ({reason}); check SIM credit and plan"
        if block:
            log.warning("modem %s out of rotation: %s", name, slot.block_reason)
            self._on_alarm(f"modem_blocked:{name}", f"modem {name}: {slot.block_reason}")
            self._redistribute(name)

    def credit_blocked(self, name: str) -> bool:
        """Out of rotation for a credit-type failure, until a balance check clears it."""
        with self._lock:
            slot = self.slots.get(name)
            return slot is not None and slot.credit_blocked

    def readmit(self, name: str) -> None:
        """A technician or a passing balance check clears a block."""
        with self._lock:
            slot = self.slots[name]
            slot.blocked_until, slot.block_reason, slot.credit_blocked = 0.0, "", False
            slot.consecutive_failures = 0
            slot.failing.clear()
        log.info("modem %s back in rotation", name)
        self._on_clear(f"modem_blocked:{name}")

    def on_status(self, status: ModemStatus) -> None:
        with self._lock:
            slot = self.slots.get(status.name)
            if slot is None:
                return
            was_available = not slot.unavailable_reason(time.time())
            slot.status = status
            now = time.time()
            if (slot.blocked_until and not slot.credit_blocked and now >= slot.blocked_until
                    and status.state == ModemState.READY):
                # The health check after the cooldown passed: back into rotation.
                slot.blocked_until, slot.block_reason = 0.0, ""
                slot.consecutive_failures = 0
                slot.failing.clear()
                log.info("modem %s re-admitted after cooldown", status.name)
                readmitted = True
            else:
                readmitted = False
            available = not slot.unavailable_reason(now)
            slot.down_for(now)  # the clock of a move starts when the modem goes down
        if readmitted:
            self._on_clear(f"modem_blocked:{status.name}")
        if was_available and not available:
            self._redistribute(status.name)
        elif available and not was_available and status.name in self.pokers:
            self.pokers[status.name]()

    def _redistribute(self, gone: str) -> None:
        """Wake the healthy modems so they claim what was waiting for ``gone``."""
        for name, poke in self.pokers.items():
            if name != gone and self.available(name):
                poke()

    def snapshot(self) -> dict[str, dict[str, object]]:
        now = time.time()
        with self._lock:
            return {n: {"unavailable": s.unavailable_reason(now),
                        "sent_hour": s.sent_since(now - HOUR), "sent_day": len(s.sent),
                        "hourly_cap": s.settings.hourly_cap, "daily_cap": s.settings.daily_cap,
                        "consecutive_failures": s.consecutive_failures,
                        "credit_blocked": s.credit_blocked}
                    for n, s in self.slots.items()}
