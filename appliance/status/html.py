"""The status page's HTML, in English or Urdu: pure, from a snapshot and the 24-hour totals.

The page works without JavaScript (every figure is in the HTML, and ``<meta refresh>``
reloads it); with it, ``static/status.js`` draws the last 24 hours from ``/history.json``
with uPlot, served by the unit (no internet on site). Every value from the snapshot passes
through :func:`html.escape`, and texts that come from modems or from the software (error
messages, operator names, ports) keep their own direction inside Urdu text (``<bdi>``).

Urdu is right to left (``dir="rtl"``) in Noto Nastaliq Urdu, the script Urdu readers
expect, served from the unit. The charts stay left to right: their axes carry Latin digits
and clock times, which read left to right, and a mirrored axis would run against its own
labels.
"""

from __future__ import annotations

import functools
import hashlib
import html
import json
import math
import os
import time
from collections.abc import Mapping
from datetime import datetime
from importlib import resources
from pathlib import Path
from typing import Any

from .. import __version__
from ..state.history import VERDICTS
from .words import REFRESH_S, TEXTS, VERDICT_COLOURS, WORDS

LANGS = ("en", "ur")


@functools.cache
def static_url(name: str) -> str:
    """``/static/name?v=<digest>``: the server lets browsers keep these files for a week,
    so the URL changes whenever the file does (a new release, or a developer's edit)."""
    data = resources.files("appliance").joinpath("data", "static", name).read_bytes()
    return f"/static/{name}?v={hashlib.sha256(data).hexdigest()[:12]}"


def choose_lang(query_lang: str | None, accept_language: str | None) -> str:
    """``?lang=`` first, then the browser's first preference, then English."""
    if query_lang in LANGS:
        return str(query_lang)
    first = (accept_language or "").split(",")[0].strip().lower()
    return "ur" if first.startswith("ur") else "en"


def local_zone() -> tuple[str | None, int, str]:
    """This unit's zone: (IANA name or None, UTC offset in seconds, "PKT, UTC+05:00").

    The name lets the browser label the charts in the unit's time, whatever the laptop's
    own zone; it comes from ``TZ``, the ``/etc/localtime`` link (what ``timedatectl
    set-timezone`` changes) or ``/etc/timezone``.
    """
    now = datetime.now().astimezone()
    offset = now.utcoffset()
    secs = int(offset.total_seconds()) if offset is not None else 0
    sign = "+" if secs >= 0 else "-"
    utc = f"UTC{sign}{abs(secs) // 3600:02d}:{abs(secs) % 3600 // 60:02d}"
    abbrev = now.tzname() or ""
    label = utc if not abbrev or abbrev[0] in "+-" or abbrev == "UTC" else f"{abbrev}, {utc}"
    name = os.environ.get("TZ", "").lstrip(":") or None
    if name is None:
        link = os.path.realpath("/etc/localtime")
        name = link.split("zoneinfo/", 1)[1] if "zoneinfo/" in link else None
    if name is None:
        try:
            name = Path("/etc/timezone").read_text(encoding="utf-8").strip() or None
        except OSError:
            pass
    return name, secs, label


def fmt_time(ts: float | None) -> str:
    """``2026-12-04 13:40:05 (PKT, UTC+05:00)``: local time, always with its zone."""
    if ts is None or not math.isfinite(ts):
        return "?"
    when = datetime.fromtimestamp(ts).astimezone()
    return f"{when:%Y-%m-%d %H:%M:%S} ({local_zone()[2]})"


def duration(lang: str, seconds: float | None) -> str:
    t = TEXTS[lang]
    if seconds is None or not math.isfinite(seconds):
        return t["unknown"]
    s = max(0, int(seconds))
    for size, unit, sub, subunit in ((86400, "d", 3600, "h"), (3600, "h", 60, "min"),
                                     (60, "min", 1, "s")):
        if s >= size:
            return f"{s // size} {t[unit]} {(s % size) // sub} {t[subunit]}"
    return f"{s} {t['s']}"


def page_title(snap: Mapping[str, Any], lang: str) -> str:
    """Alarm state first, so that it shows in a narrow browser tab."""
    t = TEXTS[lang]
    n = len(snap.get("alarms") or [])
    state = f"⚠ {t['alarms_title'].format(n=n)}" if n else f"✓ {t['ok_title']}"
    return f"{state} · NSOR {snap.get('unit', '')} · v{__version__}"


class _Page:
    def __init__(self, snap: Mapping[str, Any], totals: Mapping[str, int], lang: str) -> None:
        self.snap, self.totals, self.lang = snap, totals, lang
        self.t, self.w = TEXTS[lang], WORDS[lang]
        self.now = float(snap.get("time") or time.time())

    def word(self, value: Any) -> str:
        text = str(value)
        return html.escape(self.w.get(text, text))

    def ltr(self, value: Any) -> str:
        """Text from a modem or the software, isolated from the page's direction."""
        return f'<bdi dir="ltr">{html.escape(str(value))}</bdi>'

    def ago(self, ts: Any) -> str:
        if not isinstance(ts, (int, float)):
            return ""
        return html.escape(self.t["ago"].format(d=duration(self.lang, self.now - ts)))

    # -- parts ---------------------------------------------------------------------------

    def alarms(self) -> str:
        alarms = self.snap.get("alarms") or []
        if not alarms:
            return f'<section class="banner ok">✓ {html.escape(self.t["no_alarms"])}</section>'
        items = []
        for a in alarms:
            kind = str(a.get("kind", ""))
            base, _, modem = kind.partition(":")
            name = self.word(base) + (f" {self.ltr(modem)}" if modem else "")
            since = self.t["since"].format(d=duration(self.lang, self.now - (a.get("since")
                                                                             or self.now)))
            items.append(f"<li><b>{name}</b> <code>{html.escape(kind)}</code><br>"
                         f"{self.ltr(a.get('message', ''))} <small>({html.escape(since)}, "
                         f"{html.escape(self.t['times'].format(n=a.get('count')))})</small>"
                         "</li>")
        return (f'<section class="banner bad"><h2>⚠ {html.escape(self.t["alarms"])}</h2>'
                f'<ul>{"".join(items)}</ul></section>')

    def tiles(self) -> str:
        t, e = self.t, html.escape
        total = sum(self.totals.values())
        chips = "".join(
            f'<span class="chip v-{e(v)}">{self.word(v)} <b>{n}</b></span>'
            for v, n in self.totals.items() if n)
        q = self.snap.get("queue") or {}
        modems = self.snap.get("modems") or []
        ready = sum(1 for m in modems if m.get("state") == "ready" and not m.get("unavailable"))
        reg = self.snap.get("registry") or {}
        reg_level = "ok" if reg.get("state") == "ok" else "bad"
        return (
            '<section class="tiles">'
            f'<div class="tile wide"><h3>{html.escape(t["replies_24h"])}</h3>'
            f'<p class="big">{total}</p><p>{chips}</p></div>'
            f'<div class="tile"><h3>{html.escape(t["queue_now"])}</h3>'
            f'<p class="big">{html.escape(str(q.get("pending", 0)))}</p></div>'
            f'<div class="tile"><h3>{html.escape(t["modems_ready"])}</h3>'
            f'<p class="big {"ok" if modems and ready == len(modems) else "bad"}">'
            f'{ready}/{len(modems)}</p></div>'
            f'<div class="tile"><h3>{html.escape(t["registry"])}</h3>'
            f'<p class="big {reg_level}">{self.word(reg.get("state", "?"))}</p>'
            f'<p>{html.escape(t["version"])} {html.escape(str(reg.get("version")))}</p></div>'
            "</section>")

    def charts(self, tz_label: str) -> str:
        t = self.t
        labels = {v: self.w.get(v, v) for v in VERDICTS}
        attrs = {"replies": {"data-labels": json.dumps(labels, ensure_ascii=False),
                             "data-colours": json.dumps(VERDICT_COLOURS)},
                 "balance": {"data-empty": t["no_balance"]}}
        figs = []
        for key, title in (("replies", "chart_replies"), ("queue", "chart_queue"),
                           ("rssi", "chart_signal"), ("balance", "chart_balance")):
            extra = {"data-empty": t["no_data"], **attrs.get(key, {})}
            extra_html = "".join(f' {k}="{html.escape(v, quote=True)}"' for k, v in extra.items())
            figs.append(f'<figure><figcaption>{html.escape(t[title])}</figcaption>'
                        f'<div class="chart" dir="ltr" data-series="{key}"{extra_html}></div>'
                        "</figure>")
        return (f'<section><h2>{html.escape(t["charts"])} <small>'
                f'{html.escape(t["charts_note"].format(tz=tz_label))}</small></h2>'
                f'<noscript><p>{html.escape(t["no_js"])}</p></noscript>'
                f'<div class="charts">{"".join(figs)}</div></section>')

    def modem_card(self, m: Mapping[str, Any]) -> str:
        t, e = self.t, html.escape
        state = str(m.get("state", "?"))
        level = "ok" if state == "ready" and not m.get("unavailable") else (
            "warn" if state == "ready" else "bad")
        gone = state in ("gone", "stopped")  # its last signal and operator are history
        rows: list[tuple[str, str]] = []
        bars = m.get("bars")
        rssi = m.get("rssi")
        if not gone and isinstance(bars, int) and rssi not in (None, 99):
            meter = "".join(f'<i class="{"on" if i < bars else ""}"></i>' for i in range(5))
            rows.append((t["signal"], f'<span class="bars" aria-label="{bars}/5">{meter}</span> '
                                      f'{bars}/5 <small>(rssi {e(str(rssi))})</small>'))
        else:
            rows.append((t["signal"], t["none"]))
        rows.append((t["operator"], self.ltr(m.get("operator")) if m.get("operator")
                     and not gone else t["none"]))
        rows.append((t["queue"], e(str(m.get("queue", 0)))))
        for label, sent, cap in ((t["sent_1h"], "sent_hour", "hourly_cap"),
                                 (t["sent_24h"], "sent_day", "daily_cap")):
            n, c = m.get(sent), m.get(cap)
            bar = (f' <meter min="0" max="{e(str(c))}" value="{e(str(n))}"></meter>'
                   if isinstance(n, int) and isinstance(c, int) and c > 0 else "")
            rows.append((label, f'<bdi dir="ltr">{e(str(n if n is not None else "?"))} / '
                                f'{e(str(c if c is not None else "?"))}</bdi>{bar}'))
        if m.get("sim_total"):
            rows.append((t["sim"], f'<bdi dir="ltr">{e(str(m.get("sim_used")))}/'
                                   f'{e(str(m["sim_total"]))}</bdi>'))
        balance = m.get("balance")
        if isinstance(balance, (int, float)):
            rows.append((t["balance"], f'<bdi dir="ltr">Rs {balance:,.2f}</bdi> '
                                       f'<small>{self.ago(m.get("balance_at"))}</small>'))
        if m.get("last_error"):
            rows.append((t["last_error"], f'<span class="err">{self.ltr(m["last_error"])}</span>'
                                          f' <small>{self.ago(m.get("last_error_at"))}</small>'))
        reason = (f' <small>{self.ltr(m["unavailable"])}</small>'
                  if m.get("unavailable") and m.get("unavailable") != f"modem {state}" else "")
        body = "".join(f"<dt>{e(k)}</dt><dd>{v}</dd>" for k, v in rows)
        return (f'<article class="card lvl-{level}"><h3>{self.ltr(m.get("name", "?"))} '
                f'<span class="badge {level}">{self.word(state)}</span>{reason}</h3>'
                f"<dl>{body}</dl></article>")

    def fmt(self, key: str, **values: Any) -> str:
        """A translated sentence, escaped, with each value isolated (``<bdi>``) so that a
        number, a size or a path keeps its own order inside Urdu text."""
        return html.escape(self.t[key]).format(
            **{k: f"<bdi>{html.escape(str(v))}</bdi>" for k, v in values.items()})

    def unit_lines(self) -> str:
        t, e = self.t, html.escape
        lines: list[tuple[str, str, str]] = []
        reg = self.snap.get("registry") or {}
        text = self.fmt("reg_text", state=self.w.get(str(reg.get("state")), str(reg.get("state"))),
                        version=reg.get("version"), records=reg.get("records"),
                        age=duration(self.lang, reg.get("age_s")),
                        limit=duration(self.lang, reg.get("max_age_s")))
        if reg.get("error"):
            text += " " + self.ltr(reg["error"])
        lines.append((t["registry"], text, "ok" if reg.get("state") == "ok" else "bad"))
        sync = reg.get("sync")
        if sync and sync.get("last_attempt"):
            last = sync.get("last_success")
            when = t["never"]
            if last:
                try:
                    when = fmt_time(datetime.fromisoformat(str(last)).timestamp())
                except ValueError:
                    when = str(last)
            text = self.fmt("sync_ok", when=when)
            failing = int(sync.get("consecutive_failures") or 0)
            if failing:
                err = (sync.get("last_error") or {}).get("message", "?")
                text += "; " + self.fmt("sync_bad", n=failing, err=err)
            lines.append((t["sync"], text, "bad" if failing else "ok"))
        q = self.snap.get("queue")
        if q is not None:
            text = self.fmt("queue_text", pending=q.get("pending", 0),
                            unassigned=q.get("unassigned", 0))
            splits = int(self.snap.get("split_replies") or 0)
            if splits:  # a reply moved to another SIM after a part had left
                text += "; " + self.fmt("splits", n=splits)
            lines.append((t["queue"], text, "warn" if splits else "ok"))
        fleet = self.snap.get("fleet")
        if fleet is not None:
            waiting = fleet.get("hits_waiting") or 0
            if fleet.get("connected"):
                lines.append((t["fleet"], self.fmt("fleet_up", n=waiting), "ok"))
            else:
                text = self.fmt("fleet_down", d=duration(self.lang, fleet.get("down_s")),
                                n=waiting)
                if fleet.get("last_error"):
                    text += " " + self.ltr(fleet["last_error"])
                lines.append((t["fleet"], text, "bad"))
        disk = self.snap.get("disk")
        if disk:
            denom = disk["used"] + disk["free"]
            pct = 100.0 * disk["used"] / denom if denom else 0.0
            text = self.fmt("disk_text", pct=f"{pct:.0f}", free=f"{disk['free'] / 1e9:.1f} GB",
                            path=disk.get("path", ""))
            lines.append((t["disk"], text, "ok" if pct < 90 else "bad"))
        if self.snap.get("uptime_s") is not None:
            lines.append((t["uptime"], e(duration(self.lang, self.snap["uptime_s"])), "ok"))
        return "".join(f'<dt>{e(k)}</dt><dd class="{lvl}">{v}</dd>' for k, v, lvl in lines)


def render_page(snap: Mapping[str, Any], totals: Mapping[str, int], lang: str) -> str:
    """The whole page in ``lang`` ("en" or "ur"); ``totals`` = replies by verdict, 24 h."""
    p = _Page(snap, totals, lang)
    t, e = p.t, html.escape
    other = "ur" if lang == "en" else "en"
    tz_name, tz_offset, tz_label = local_zone()
    v = e(__version__)
    head = (f'<!doctype html><html lang="{lang}" dir="{"rtl" if lang == "ur" else "ltr"}">'
            '<head><meta charset="utf-8">'
            '<meta name="viewport" content="width=device-width, initial-scale=1">'
            f'<meta http-equiv="refresh" content="{REFRESH_S}">'
            f"<title>{e(page_title(snap, lang))}</title>"
            f'<link rel="icon" href="{static_url("favicon.svg")}" type="image/svg+xml">'
            f'<link rel="stylesheet" href="{static_url("uPlot.min.css")}">'
            f'<link rel="stylesheet" href="{static_url("status.css")}">'
            f'<script defer src="{static_url("uPlot.iife.min.js")}"></script>'
            f'<script defer src="{static_url("status.js")}"></script></head>')
    body = (f'<body data-tz="{e(tz_name or "")}" data-tz-offset="{tz_offset}" '
            f'data-time-label="{e(t["time"])}">'
            f'<header><h1>{e(t["title"])} {p.ltr(snap.get("unit", ""))}</h1>'
            f'<a class="lang" href="?lang={other}" lang="{other}" hreflang="{other}">'
            f'{e(t["switch"])}</a>'
            f'<p class="meta">{e(t["version"])} <bdi dir="ltr">{v}</bdi> · {e(t["as_of"])} '
            f'<bdi dir="ltr">{e(fmt_time(snap.get("time")))}</bdi> · {e(t["refresh"])}</p>'
            "</header><main>")
    modems = "".join(p.modem_card(m) for m in snap.get("modems") or [])
    out = [head, body, p.alarms(), p.tiles(), p.charts(tz_label),
           f'<section><h2>{e(t["modems"])}</h2><div class="cards">{modems}</div></section>',
           f'<section><h2>{e(t["unit"])}</h2><dl class="unit">{p.unit_lines()}</dl></section>',
           f'</main><footer>{e(t["machine"])}: <bdi dir="ltr"><a href="/status.json">'
           '/status.json</a>, <a href="/metrics">/metrics</a> (Prometheus), '
           '<a href="/history.json">/history.json</a></bdi></footer></body></html>']
    return "\n".join(out)
