"""The status's shared wording: durations, sizes, a modem's level and its table row, as
the status page, ``nsor status``, ``doctor`` and the alarms all print them. Pure: the
service imports it without loading the HTTP server."""

from __future__ import annotations

import math
from typing import Any

def fmt_duration(seconds: float | None) -> str:
    if seconds is None or not math.isfinite(seconds):
        return "unknown"
    if seconds < 0:
        return f"{fmt_duration(-seconds)} in the future (clock wrong?)"
    s = int(seconds)
    for size, unit, sub, subunit in ((86400, "d", 3600, "h"), (3600, "h", 60, "min"),
                                     (60, "min", 1, "s")):
        if s >= size:
            return f"{s // size} {unit} {(s % size) // sub} {subunit}"
    return f"{s} s"


def fmt_bytes(n: float | None) -> str:
    if n is None:
        return "?"
    for unit in ("B", "kB", "MB", "GB"):
        if abs(n) < 1000:
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1000
    return f"{n:.1f} TB"


def disk_percent(disk: dict[str, Any]) -> float:
    """Use% as ``df`` prints it: used / (used + available to unprivileged users)."""
    denom = disk["used"] + disk["free"]
    return 100.0 * disk["used"] / denom if denom else 0.0


def modem_level(m: dict[str, Any]) -> str:
    """ok / warn / bad: in service, out of rotation for a reason, or not working."""
    if m.get("state") != "ready":
        return "bad"
    return "warn" if m.get("unavailable") else "ok"


def modem_cells(m: dict[str, Any]) -> list[str]:
    """One table row: modem, state, signal, operator, queue, sent 1 h, sent 24 h, SIM,
    last error (the same columns on the page and in ``status``)."""
    state = str(m.get("state", "?"))
    if m.get("unavailable") and m.get("unavailable") != f"modem {state}":
        state += f" ({m['unavailable']})"
    rssi = m.get("rssi")
    signal = "?" if rssi is None else f"{m.get('bars', 0)}/5 (rssi {rssi})"
    sim = "?" if m.get("sim_total") in (None, 0) else f"{m.get('sim_used')}/{m['sim_total']}"

    def capped(n: Any, cap: Any) -> str:
        return f"{n if n is not None else '?'} / {cap if cap is not None else '?'}"
    return [str(m.get("name", "?")), state, signal, str(m.get("operator") or "-"),
            str(m.get("queue", 0)), capped(m.get("sent_hour"), m.get("hourly_cap")),
            capped(m.get("sent_day"), m.get("daily_cap")), sim, str(m.get("last_error") or "")]


MODEM_COLUMNS = ["modem", "state", "signal", "operator", "queue", "sent 1 h / cap",
                 "sent 24 h / cap", "SIM store", "last error"]
