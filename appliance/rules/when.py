"""``--since`` as a technician or an operator writes it, for every command that takes it
(``nsor audit export``, ``nsor fleet hits``): an age (``90m``, ``24h``, ``7d``), a date
(midnight), or an ISO 8601 date-time. A date or date-time without an offset is read in the
given zone: the unit's for its own audit log, UTC for the centre's archive."""

from __future__ import annotations

import re
from datetime import date, datetime
from zoneinfo import ZoneInfo

from ..errors import ConfigError

_AGE = re.compile(r"(\d+(?:\.\d+)?)\s*([smhd])")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(text: str, *, now: float, zone: str = "UTC") -> float:
    """The moment ``text`` names, as Unix seconds (``now`` anchors an age)."""
    text = text.strip()
    age = _AGE.fullmatch(text)
    if age:
        return now - float(age.group(1)) * _UNIT_S[age.group(2)]
    try:
        moment = datetime.fromisoformat(text)
    except ValueError:
        try:
            moment = datetime.combine(date.fromisoformat(text), datetime.min.time())
        except ValueError:
            raise ConfigError(f"--since {text!r}: write a date such as 2026-12-01, a time "
                              "such as 2026-12-01T09:30+05:00, or an age such as 24h or "
                              "7d") from None
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=ZoneInfo(zone))
    return moment.timestamp()
