"""The one exponential backoff: ``initial``, 2×, 4× … capped at ``maximum`` seconds.

Three loops wait with it: a reply's retry after a temporary send error (the attempt number
comes from the outbox's table, so :meth:`Backoff.delay` is used without state), the registry sync's
retries, and a modem owner reopening a port that failed (both count their own failures
with :meth:`Backoff.next_delay` and :meth:`Backoff.reset`). Doubling keeps a lasting fault
from costing a retry per second while a short one is retried quickly; the cap bounds how
long a recovered link waits to be noticed.

Pure: no clock, no sleeping; the caller waits.
"""

from __future__ import annotations


class Backoff:
    """Delays ``initial``, 2×, 4× … capped at ``maximum`` seconds."""

    def __init__(self, initial: float, maximum: float) -> None:
        if initial <= 0 or maximum < initial:
            raise ValueError(f"backoff needs 0 < initial ({initial}) <= maximum ({maximum})")
        self.initial = initial
        self.maximum = maximum
        #: Failures counted by :meth:`next_delay` since the last :meth:`reset`.
        self.failures = 0

    def delay(self, attempt: int) -> float:
        """The wait before retry number ``attempt`` (1 for the first; below 1 counts as 1).
        The exponent stops at 62: a modem unplugged for a week counts thousands of
        failures, and 2.0 ** 1024 would overflow (the cap is reached long before)."""
        return float(min(self.maximum, self.initial * 2.0 ** min(62, max(0, attempt - 1))))

    def next_delay(self) -> float:
        """Count one more failure and return the wait before the next try."""
        self.failures += 1
        return self.delay(self.failures)

    def reset(self) -> None:
        """A success: the next failure waits ``initial`` again."""
        self.failures = 0
