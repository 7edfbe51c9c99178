"""The unit's read-only status page, ``/status.json`` and ``/metrics``, over plain HTTP.

One source, three views: every request calls the service's ``snapshot()`` (a few SQLite
counts and each modem's last status, milliseconds), so the page a technician opens through
``ssh -L``, the ``status`` command (which fetches ``/status.json``) and a Prometheus scrape
can never disagree, and the server keeps no state of its own.

Read-only by construction: GET and HEAD only, every other method gets 405; it listens on
``[status] http_bind`` and nowhere else (loopback by default, since the page names modems,
operators and error texts). Everything shown is escaped with :func:`html.escape`;
the Content-Security-Policy forbids scripts outright, so a hostile operator name or error
text read from a modem cannot run in the technician's browser.
"""

from __future__ import annotations

import html
import json
import logging
import math
import socket
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlsplit

from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from .errors import ConfigError
from .status_metrics import SnapshotCollector

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]

REFRESH_S = 10


# -- addresses -----------------------------------------------------------------------------

def split_bind(bind: str) -> tuple[str, int]:
    """``"127.0.0.1:8080"`` → ``("127.0.0.1", 8080)``; ``"[::1]:0"`` → ``("::1", 0)``."""
    host, sep, port = bind.rpartition(":")
    if not sep or not host or not port.isdigit():
        raise ConfigError(f"status.http_bind {bind!r}: expected host:port, "
                          'e.g. "127.0.0.1:8080"')
    return host.strip("[]"), int(port)


def status_url(bind: str, path: str = "/status.json") -> str:
    """Where a local client reaches a server bound to ``bind`` (a wildcard means loopback)."""
    host, port = split_bind(bind)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(host, host)
    return f"http://{f'[{host}]' if ':' in host else host}:{port}{path}"


def fetch_status(bind: str, timeout: float = 2.0) -> tuple[dict[str, Any] | None, str]:
    """The running service's snapshot, or ``(None, why not)``; never raises.

    Proxies are bypassed on purpose: an ``http_proxy`` set for apt on the unit would
    otherwise send a request for 127.0.0.1 to the proxy.
    """
    if not bind:
        return None, 'the status page is off ([status] http_bind = "")'
    try:
        url = status_url(bind)
    except ConfigError as exc:
        return None, str(exc)
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=timeout) as resp:
            data = json.loads(resp.read().decode("utf-8"))
    except urllib.error.HTTPError as exc:
        return None, f"{url} answered HTTP {exc.code}"
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return None, f"no answer from {url} ({getattr(reason, 'strerror', None) or reason})"
    except ValueError as exc:
        return None, f"{url} sent something that is not JSON ({exc})"
    if not isinstance(data, dict):
        return None, f"{url} sent unexpected JSON"
    return data, ""


# -- the server ----------------------------------------------------------------------------

class _Server(ThreadingHTTPServer):
    snapshot: Snapshot
    daemon_threads = True


class StatusServer:
    """Serves the status page of ``snapshot()`` on ``bind`` from a daemon thread.

    ``bind`` may use port 0 (tests): :attr:`port` is the port actually bound after
    :meth:`start`. A bind failure raises :class:`ConfigError` naming ``http_bind``.
    """

    def __init__(self, snapshot: Snapshot, bind: str) -> None:
        self.snapshot = snapshot
        self.bind = bind
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        host, port = split_bind(self.bind)
        try:
            family = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)[0][0]
            cls = type("_BoundServer", (_Server,), {"address_family": family})
            server = cls((host, port), _Handler)
        except OSError as exc:
            raise ConfigError(f"status.http_bind {self.bind!r}: cannot listen there "
                              f"({exc.strerror or exc}); choose a free port or an address "
                              'of this unit, or set http_bind = "" to turn the page off') from exc
        server.snapshot = self.snapshot
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.5},
                                        name="status-http", daemon=True)
        self._thread.start()
        log.info("status page on %s", self.url)

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("StatusServer is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        host = split_bind(self.bind)[0]
        return status_url(f"[{host}]:{self.port}" if ":" in host else f"{host}:{self.port}",
                          "/")


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    server_version = "nsor-status"
    sys_version = ""

    def do_GET(self) -> None:
        self._serve(head=False)

    def do_HEAD(self) -> None:
        self._serve(head=True)

    def __getattr__(self, name: str) -> Any:
        # http.server looks up do_<METHOD> for whatever method the client sent; every
        # method but GET and HEAD is refused the same way (RFC 9110 §15.5.6).
        if name.startswith("do_"):
            return self._not_allowed
        raise AttributeError(name)

    def _not_allowed(self) -> None:
        self._send(405, "text/plain; charset=utf-8", b"read-only: use GET\n", head=False,
                   extra={"Allow": "GET, HEAD"})

    def _serve(self, head: bool) -> None:
        path = urlsplit(self.path).path
        if path not in ("/", "/status.json", "/metrics"):
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: try /, /status.json or /metrics\n", head)
            return
        try:
            if path == "/metrics":
                registry = CollectorRegistry(auto_describe=False)
                registry.register(SnapshotCollector(self.server.snapshot))
                body, ctype = generate_latest(registry), CONTENT_TYPE_LATEST
            else:
                snap = self.server.snapshot()
                if path == "/":
                    body, ctype = render_html(snap).encode(), "text/html; charset=utf-8"
                else:
                    body = json.dumps(snap, default=str, ensure_ascii=False).encode()
                    ctype = "application/json"
        except Exception as exc:  # the page must outlive a failing snapshot (disk, store)
            log.exception("status page: snapshot failed")
            self._send(500, "text/plain; charset=utf-8",
                       f"status unavailable: {exc}\n".encode(), head)
            return
        self._send(200, ctype, body, head)

    def _send(self, code: int, ctype: str, body: bytes, head: bool,
              extra: dict[str, str] | None = None) -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)


# -- shared wording (the page and the ``status`` command) ----------------------------------

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


def summary_lines(snap: dict[str, Any]) -> list[tuple[str, str, str]]:
    """(label, text, level) lines under the modem table: registry, sync, queue, disk, uptime."""
    lines: list[tuple[str, str, str]] = []
    reg = snap.get("registry") or {}
    state = reg.get("state", "?")
    text = (f"{state}, version {reg.get('version')}, {reg.get('records')} records, age "
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
            text += f"; {failing} failed attempt(s), last: {err.get('message', '?')}"
        lines.append(("sync", text, "bad" if failing else "ok"))
    q = snap.get("queue")
    if q is not None:
        lines.append(("queue", f"{q.get('pending', 0)} repl(ies) waiting, "
                      f"{q.get('unassigned', 0)} for any modem", "ok"))
    disk = snap.get("disk")
    if disk:
        pct = disk_percent(disk)
        lines.append(("disk", f"{pct:.0f}% used, {fmt_bytes(disk['free'])} free "
                      f"({disk.get('path', '')})", "ok" if pct < 90 else "bad"))
    if snap.get("uptime_s") is not None:
        lines.append(("uptime", fmt_duration(snap["uptime_s"]), "ok"))
    return lines


# -- HTML ----------------------------------------------------------------------------------

_CSS = """body{font:15px/1.4 sans-serif;margin:1.5em;color:#222}
table{border-collapse:collapse;margin:.5em 0 1.5em}td,th{border:1px solid #bbb;padding:.3em .6em;
text-align:left;vertical-align:top}th{background:#eee}.ok{color:#070}.warn{color:#a60}
.bad{color:#b00;font-weight:bold}.alarm{background:#fee;border:2px solid #b00;padding:.5em 1em}
small{color:#666}"""


def render_html(snap: dict[str, Any]) -> str:
    """The whole page; every value from the snapshot passes through ``html.escape``."""
    e = html.escape
    unit = e(str(snap.get("unit", "")))
    when = datetime.fromtimestamp(snap.get("time") or time.time()).strftime("%Y-%m-%d %H:%M:%S")
    out = [f'<!doctype html><html lang="en"><head><meta charset="utf-8">'
           f'<meta http-equiv="refresh" content="{REFRESH_S}">'
           f"<title>NSOR unit {unit}</title><style>{_CSS}</style></head><body>",
           f"<h1>NSOR unit {unit}</h1><p><small>as of {e(when)}; this page refreshes every "
           f"{REFRESH_S} s. Read-only.</small></p>"]
    alarms = snap.get("alarms") or []
    if alarms:
        out.append('<div class="alarm"><h2>Alarms</h2><ul>')
        for a in alarms:
            out.append(f"<li><b>{e(str(a.get('kind')))}</b>: {e(str(a.get('message')))} "
                       f"<small>(since {e(fmt_duration(time.time() - (a.get('since') or 0)))} "
                       f"ago, {e(str(a.get('count')))}×)</small></li>")
        out.append("</ul></div>")
    else:
        out.append('<p class="ok">No active alarms.</p>')
    out.append("<h2>Modems</h2><table><tr>"
               + "".join(f"<th>{e(c)}</th>" for c in MODEM_COLUMNS) + "</tr>")
    for m in snap.get("modems") or []:
        cells = modem_cells(m)
        level = modem_level(m)
        out.append("<tr>" + "".join(
            f'<td class="{level}">{e(c)}</td>' if i == 1 else f"<td>{e(c)}</td>"
            for i, c in enumerate(cells)) + "</tr>")
    out.append("</table><h2>Unit</h2><table>")
    for label, text, level in summary_lines(snap):
        out.append(f'<tr><th>{e(label)}</th><td class="{level}">{e(text)}</td></tr>')
    out.append('</table><p><small>Machine-readable: <a href="/status.json">/status.json</a>, '
               '<a href="/metrics">/metrics</a> (Prometheus).</small></p></body></html>')
    return "\n".join(out)
