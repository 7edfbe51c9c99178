"""``nsor status`` as text that fits the terminal: 80 columns on a phone's SSH session.

Pure: a snapshot (the service's ``/status.json``, or the files' view when it is stopped)
and a width in, lines of :class:`rich.text.Text` out. One row per modem; a modem's last
error is one short line under it, with its age, and without the port path that the
message repeats; what a gone modem last reported (signal, operator, SIM store) is blanked,
since it is no longer true. ``--wide`` shows every column and whole error texts; ``--json``
shows everything.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Sequence
from typing import Any

from rich.text import Text

from ..rules.wording import plural
from ..version import __version__
from .format import disk_percent, fmt_bytes, fmt_duration, modem_level

_STYLE = {"ok": "green", "warn": "yellow", "bad": "bold red", "dim": "dim"}
#: States in which the last signal, operator and SIM store say nothing true any more.
_NOT_THERE = ("gone", "stopped", "not running", "failed")


def short_age(seconds: float | None) -> str:
    """Compact ages for narrow columns: 45s, 12m, 3h, 2d."""
    if seconds is None or not math.isfinite(seconds):
        return "?"
    s = max(0, int(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{s // size}{unit}"
    return f"{s}s"


_MODEM_PREFIX = re.compile(r"modem ([a-z0-9_-]+) \((?:[^()]|\([^()]*\))*\): ")


def short_alarm(message: str) -> str:
    """An alarm text without the port paths its modem errors repeat."""
    text = _MODEM_PREFIX.sub(lambda m: f"modem {m.group(1)}: ", " ".join(message.split()))
    return re.sub(r"(modem [a-z0-9_-]+: )\1+", r"\1", text)


def short_error(m: dict[str, Any]) -> str:
    """The error without what the row already says: "modem sim0 (/dev/…):" prefixes,
    repeated, become nothing, and the port path becomes "the port"."""
    text = " ".join(str(m.get("last_error") or "").split())
    name, port = re.escape(str(m.get("name", ""))), str(m.get("port") or "")
    prefix = re.compile(rf"^(?:modem {name}(?: \([^)]*\))?: )+")
    text = prefix.sub("", text)
    if port:
        text = text.replace(f"port {port}", "the port").replace(port, "the port")
    return text


def fit(text: str, width: int) -> str:
    """``text`` cut to ``width`` characters, with "…" where it was cut."""
    if width <= 0:
        return ""
    return text if len(text) <= width else text[:max(0, width - 1)] + "…"


def _capped(n: Any, cap: Any) -> str:
    return f"{'?' if n is None else n}/{'?' if cap is None else cap}"


def _money(amount: Any) -> str:
    if amount is None:
        return "?"
    return f"{amount:,.0f}" if amount >= 1000 else f"{amount:.2f}"


def modem_row(m: dict[str, Any], now: float, files: bool) -> list[str]:
    """modem, state, signal, operator, queue, sent 1 h/cap, sent 24 h/cap, balance."""
    state = str(m.get("state") or "?")
    there = state not in _NOT_THERE
    if m.get("since") and not files and state != "ready":
        state += f" {short_age(now - float(m['since']))}"  # how long out of service
    rssi = m.get("rssi")
    signal = f"{m.get('bars', 0)}/5" if there and rssi not in (None, 99) else "-"
    operator = str(m.get("operator") or "-") if there else "-"
    balance = "-"
    if m.get("balance") is not None or m.get("balance_at"):
        age = short_age(now - float(m["balance_at"])) if m.get("balance_at") else "?"
        balance = f"{_money(m.get('balance'))} {age}"
    return [str(m.get("name", "?")), state, signal, operator, str(m.get("queue", 0)),
            _capped(m.get("sent_hour"), m.get("hourly_cap")),
            _capped(m.get("sent_day"), m.get("daily_cap")), balance]


HEADERS = ["modem", "state", "sig", "operator", "queue", "1 h/cap", "24 h/cap", "balance"]
#: Columns that give up width first, in order, and the least each keeps ("no network"
#: and "not running" stay whole longest).
_SHRINK = ((0, 8), (3, 6), (7, 8), (1, 10), (0, 5), (3, 4))
_RIGHT = {4, 5, 6}


def _widths(rows: Sequence[Sequence[str]], width: int) -> list[int]:
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    excess = sum(widths) + 2 * (len(widths) - 1) - width
    for col, least in _SHRINK:
        if excess <= 0:
            break
        give = min(excess, max(0, widths[col] - least))
        widths[col] -= give
        excess -= give
    return widths


def render(snap: dict[str, Any], width: int = 80, now: float | None = None) -> list[Text]:
    """The narrow view: every line at most ``width`` characters."""
    now = time.time() if now is None else now
    files = snap.get("source") == "files"
    out: list[Text] = []
    head = f"unit {snap.get('unit', '?')}"
    if snap.get("version"):
        head += f", version {snap['version']}"
    if snap.get("uptime_s") is not None:
        head += f", up {fmt_duration(snap['uptime_s'])}"
    out.append(Text(fit(head, width), style="bold"))
    text, level = version_line(snap)
    if level != "ok":  # upgraded, not restarted: the old release still answers
        out.append(Text(fit(text, width), style="yellow"))
    modems = snap.get("modems") or []
    rows = [HEADERS] + [modem_row(m, now, files) for m in modems]
    widths = _widths(rows, width)

    def line(cells: Sequence[str], styles: Sequence[str] = ()) -> Text:
        text = Text()
        for i, (cell, w) in enumerate(zip(cells, widths)):
            cell = fit(cell, w)
            cell = cell.rjust(w) if i in _RIGHT else cell.ljust(w)
            text.append(cell, style=styles[i] if i < len(styles) else "")
            if i < len(widths) - 1:
                text.append("  ")
        text.rstrip()
        return text

    out.append(line(HEADERS, ["bold"] * len(HEADERS)))
    for m, row in zip(modems, rows[1:]):
        level = "warn" if files else modem_level(m)
        out.append(line(row, ["", _STYLE[level]]))
        note = _modem_note(m, now)
        if note:
            text, style = note
            out.append(Text(fit("  " + text, width), style=style))
    for label, text, level in summary(snap):
        out.append(Text(fit(f"{label:>8}: {text}", width), style=_STYLE[level]
                        if level != "ok" else ""))
    alarms = snap.get("alarms") or []
    for a in alarms:
        since = f" ({short_age(now - float(a['since']))})" if a.get("since") else ""
        message = short_alarm(str(a.get("message")))
        out.append(Text(fit(f"   ALARM {a.get('kind')}{since}: {message}", width),
                        style="bold red"))
    if not alarms and not files:
        out.append(Text("  alarms: none"))
    return out


def _modem_note(m: dict[str, Any], now: float) -> tuple[str, str] | None:
    """One line under a modem: why it is out of rotation, or its last error with its age
    (dimmed when it came before the modem was last ready: history, not the present)."""
    state = m.get("state")
    if m.get("unavailable") and m.get("unavailable") != f"modem {state}":
        return f"out of rotation: {m['unavailable']}", "yellow"
    error = short_error(m)
    if not error:
        return None
    at = m.get("last_error_at")
    age = f"{short_age(now - float(at))} ago" if at else "earlier"
    if state == "ready" and at and m.get("since") and float(at) < float(m["since"]):
        return f"before it was last ready, {age}: {error}", "dim"
    return f"{age}: {error}", "red" if state != "ready" else "yellow"


def summary(snap: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, text, level): registry, sync, queue, fleet link, disk."""
    lines: list[tuple[str, str, str]] = []
    reg = snap.get("registry") or {}
    state = reg.get("state", "?")
    if reg.get("version") is None:
        text = f"{state}, nothing installed"
    else:
        text = (f"{state}, version {reg['version']}, {reg.get('records')} records, age "
                f"{fmt_duration(reg.get('age_s'))} (limit {fmt_duration(reg.get('max_age_s'))})")
    if reg.get("error"):
        text += f"; {reg['error']}"
    lines.append(("registry", text, "ok" if state == "ok" else "bad"))
    sync = reg.get("sync")
    if sync and sync.get("last_attempt"):
        err = sync.get("last_error") or {}
        failing = int(sync.get("consecutive_failures") or 0)
        last = sync.get("last_success")
        text = f"last success {str(last)[:16].replace('T', ' ') + ' UTC' if last else 'never'}"
        if failing:
            text += (f"; {plural(failing, 'failed attempt', 'failed attempts')}, last: "
                     f"{err.get('message', '?')}")
        lines.append(("sync", text, "bad" if failing else "ok"))
    q = snap.get("queue")
    if q is not None:
        pending, anyone = int(q.get("pending") or 0), int(q.get("unassigned") or 0)
        text = ("no replies waiting" if not pending else
                f"{plural(pending, 'reply', 'replies')} waiting"
                + (f", {anyone} for any modem" if anyone else ""))
        splits = int(snap.get("split_replies") or 0)
        if splits:  # a reply moved to another SIM after a part had left: an orphan part
            text += f"; {plural(splits, 'reply', 'replies')} split across SIMs"
        lines.append(("queue", text, "warn" if splits else "ok"))
    fleet = snap.get("fleet")
    if fleet is not None:
        waiting = int(fleet.get("hits_waiting") or 0)
        if fleet.get("connected"):
            lines.append(("fleet", f"connected; {plural(waiting, 'hit report', 'hit reports')}"
                          " waiting", "ok"))
        else:
            down = fleet.get("down_s")
            text = ("not connected" + (f" for {short_age(down)}" if down else "")
                    + f"; {plural(waiting, 'hit report', 'hit reports')} waiting"
                    + (f"; {fleet['last_error']}" if fleet.get("last_error") else ""))
            lines.append(("fleet", text, "bad"))
    disk = snap.get("disk")
    if disk:
        pct = disk_percent(disk)
        lines.append(("disk", f"{pct:.0f}% used, {fmt_bytes(disk['free'])} free "
                      f"({disk.get('path', '')})", "ok" if pct < 90 else "bad"))
    return lines


def version_line(snap: dict[str, Any]) -> tuple[str, str]:
    """The installed release, and the running one when the service runs another: after an
    upgrade the old code answers SMS until the service restarts."""
    running = snap.get("version")
    if snap.get("source") == "files" or running in (None, __version__):
        return f"nsor-appliance {__version__}", "ok"
    return (f"nsor-appliance {__version__} installed, {running} running: "
            "sudo systemctl restart nsor-appliance", "warn")
