"""The unit's read-only status page, ``/status.json`` and ``/metrics``, over plain HTTP.

One source, three views: every request calls the service's ``snapshot()`` (a few SQLite
counts and each modem's last status, milliseconds), so the page a technician opens through
``ssh -L``, the ``status`` command (which fetches ``/status.json``) and a Prometheus scrape
can never disagree. ``/history.json`` is the last 24 hours, minute by minute
(:mod:`appliance.state.history`), which the page's charts draw; ``/static/`` serves the page's
script, style, charting library and Urdu font from the package, since a unit on site has no
internet to fetch them from.

Read-only by construction: GET and HEAD only, every other method gets 405; it listens on
``[status] http_bind`` and nowhere else (loopback by default, since the page names modems,
operators and error texts). Everything shown is escaped with :func:`html.escape`; the
Content-Security-Policy allows only the unit's own script files (no inline script, no
other origin), so a hostile operator name or error text read from a modem cannot run in the
technician's browser.
"""

from __future__ import annotations

import json
import logging
import socket
import threading
import urllib.error
import urllib.request
from collections.abc import Callable
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from importlib import resources
from typing import Any
from urllib.parse import parse_qs, urlsplit

from prometheus_client import GCCollector, PlatformCollector, ProcessCollector
from prometheus_client.exposition import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.registry import CollectorRegistry

from ..errors import ConfigError
from .html import choose_lang, render_page
from .metrics import SnapshotCollector

log = logging.getLogger(__name__)

Snapshot = Callable[[], dict[str, Any]]
History = Callable[[], dict[str, Any]]

#: What /static/ serves (from appliance/data/static/), and nothing else.
STATIC_TYPES = {"status.js": "text/javascript; charset=utf-8",
                "status.css": "text/css; charset=utf-8",
                "uPlot.iife.min.js": "text/javascript; charset=utf-8",
                "uPlot.min.css": "text/css; charset=utf-8",
                "NotoNastaliqUrdu-Regular.woff2": "font/woff2",
                "favicon.svg": "image/svg+xml"}

#: The page may run the unit's own script files and fetch /history.json; nothing inline
#: (uPlot styles its elements through the DOM, which style-src does not govern).
PAGE_CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; font-src 'self'; "
            "connect-src 'self'; img-src 'self'; base-uri 'none'; form-action 'none'; "
            "frame-ancestors 'none'")


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
    history: History | None
    metrics: CollectorRegistry
    daemon_threads = True


def _no_history() -> dict[str, Any]:
    return {}


def metrics_registry(snapshot: Snapshot) -> CollectorRegistry:
    """The unit's figures and the standard process ones (CPU, memory, file descriptors,
    Python's GC and version), as prometheus-client's default registry would have them."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot))
    ProcessCollector(registry=registry)
    PlatformCollector(registry=registry)
    GCCollector(registry=registry)
    return registry


class StatusServer:
    """Serves the status page of ``snapshot()`` on ``bind`` from a daemon thread.

    ``bind`` may use port 0 (tests): :attr:`port` is the port actually bound after
    :meth:`start`. A bind failure raises :class:`ConfigError` naming ``http_bind``.
    """

    def __init__(self, snapshot: Snapshot, bind: str, *, history: History | None = None) -> None:
        self.snapshot = snapshot
        self.history = history
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
        server.history = self.history
        server.metrics = metrics_registry(self.snapshot)
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
        url = urlsplit(self.path)
        path = url.path
        if path.startswith("/static/") and path[len("/static/"):] in STATIC_TYPES:
            name = path[len("/static/"):]
            data = resources.files("appliance").joinpath("data", "static", name).read_bytes()
            # The page asks for ?v=<digest of the file> (status_html.static_url): a changed
            # file is a new URL, so such a request may be kept for a week. The font, named
            # from status.css without a digest, for an hour.
            cache = ("public, max-age=604800, immutable" if "v=" in url.query
                     else "public, max-age=3600")
            self._send(200, STATIC_TYPES[name], data, head, cache=cache)
            return
        if path not in ("/", "/status.json", "/metrics", "/history.json"):
            self._send(404, "text/plain; charset=utf-8",
                       b"not found: try /, /status.json or /metrics\n", head)
            return
        try:
            if path == "/metrics":
                body, ctype = generate_latest(self.server.metrics), CONTENT_TYPE_LATEST
            elif path == "/history.json":
                body = json.dumps((self.server.history or _no_history)(),
                                  separators=(",", ":")).encode()
                ctype = "application/json"
            else:
                snap = self.server.snapshot()
                if path == "/":
                    lang = choose_lang(parse_qs(url.query).get("lang", [""])[0],
                                       self.headers.get("Accept-Language"))
                    history = (self.server.history or _no_history)()
                    body = render_page(snap, history.get("replies_24h") or {}, lang).encode()
                    ctype = "text/html; charset=utf-8"
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
              extra: dict[str, str] | None = None, cache: str = "no-store") -> None:
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", cache)
        self.send_header("X-Content-Type-Options", "nosniff")
        self.send_header("Content-Security-Policy", PAGE_CSP)
        for key, value in (extra or {}).items():
            self.send_header(key, value)
        self.end_headers()
        if not head:
            self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        log.debug("%s %s", self.address_string(), format % args)
