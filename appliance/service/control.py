"""The service's local control socket: requests that must run *inside* the running unit.

A USSD request (``nsor balance``, ``nsor ussd``) needs a modem's port, and the service's
owner thread alone may talk to it (two programs on one port lose SMS). So the command
asks the service, over a Unix socket in the data folder, and the owner thread sends the
code between two of its own transactions.

Why a Unix socket and not the status page: the page is read-only by construction and may
listen on the LAN, while this socket is reachable only by who may write the data folder
(mode 0660, the folder 0750 ``nsor``): the service user and root, the same people who can
queue a ``send-test`` in ``state.db``.

The protocol is one JSON object per line each way: ``{"op": "ussd", ...}`` in,
``{"ok": true, ...}`` or ``{"ok": false, "error": "..."}`` out. Handlers raise
:class:`~appliance.errors.ApplianceError` for a refusal a technician should read.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import socketserver
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..errors import ApplianceError, ServiceUnreachable

log = logging.getLogger(__name__)

Handler = Callable[[dict[str, Any]], dict[str, Any]]

#: sockaddr_un.sun_path is 108 bytes on Linux, the terminating NUL included (unix(7)).
MAX_PATH = 107
#: A request line larger than this is not ours.
MAX_REQUEST = 64 * 1024


def socket_path(data_dir: Path) -> Path:
    return Path(data_dir) / "control.sock"


class _Server(socketserver.ThreadingUnixStreamServer):
    daemon_threads = True
    handlers: Mapping[str, Handler]


class _Request(socketserver.StreamRequestHandler):
    server: _Server

    def handle(self) -> None:
        line = self.rfile.readline(MAX_REQUEST)
        try:
            request = json.loads(line)
            if not isinstance(request, dict):
                raise ValueError("not an object")
        except ValueError as exc:
            self._answer({"ok": False, "error": f"not a request ({exc})"})
            return
        handler = self.server.handlers.get(str(request.get("op")))
        if handler is None:
            self._answer({"ok": False, "error": f"unknown request {request.get('op')!r}; "
                          f"this service knows {', '.join(sorted(self.server.handlers))}"})
            return
        try:
            answer = dict(handler(request), ok=True)
        except ApplianceError as exc:
            answer = {"ok": False, "error": str(exc)}
        except Exception as exc:  # a bug in a handler must not take the service down
            log.exception("control request %s failed", request.get("op"))
            answer = {"ok": False, "error": f"internal error: {exc!r}"}
        self._answer(answer)

    def _answer(self, answer: dict[str, Any]) -> None:
        try:
            self.wfile.write(json.dumps(answer, ensure_ascii=False).encode() + b"\n")
        except OSError:
            pass  # the client gave up waiting; nothing to tell it


class ControlServer:
    """Listens on ``path`` from a daemon thread; ``stop()`` removes the socket."""

    def __init__(self, path: Path, handlers: Mapping[str, Handler]) -> None:
        self.path = Path(path)
        self.handlers = handlers
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if len(os.fsencode(self.path)) > MAX_PATH:
            raise ApplianceError(f"control socket {self.path}: path longer than {MAX_PATH} "
                                 "bytes; choose a shorter data_dir")
        if _answers(self.path):
            raise ApplianceError(f"control socket {self.path}: another service is running "
                                 "on this data folder; stop it first")
        self.path.unlink(missing_ok=True)  # left by a crash: nobody listens on it
        old = os.umask(0o117)  # the socket is made 0660 at bind, never wider for a moment
        try:
            server = _Server(str(self.path), _Request)
        except OSError as exc:
            raise ApplianceError(f"control socket {self.path}: cannot listen there "
                                 f"({exc.strerror or exc})") from exc
        finally:
            os.umask(old)
        server.handlers = self.handlers
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever,
                                        kwargs={"poll_interval": 0.5}, name="control",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
            self.path.unlink(missing_ok=True)
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None


def _answers(path: Path) -> bool:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        try:
            s.connect(str(path))
            return True
        except OSError:
            return False


def request(path: Path, message: dict[str, Any], *, timeout: float) -> dict[str, Any]:
    """Send one request to the running service and return its answer (``ok`` True).

    Raises :class:`ServiceUnreachable` when no service listens, and
    :class:`ApplianceError` with the service's own words when it refused.
    """
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(timeout)
        try:
            s.connect(str(path))
        except FileNotFoundError as exc:
            raise ServiceUnreachable(f"the service is not running (no {path}); start it: "
                                     "sudo systemctl start nsor-appliance") from exc
        except ConnectionRefusedError as exc:
            raise ServiceUnreachable(f"the service is not running ({path} is left from an "
                                     "earlier run); start it: sudo systemctl start "
                                     "nsor-appliance") from exc
        except PermissionError as exc:
            raise ServiceUnreachable(f"{path}: permission denied; run the command with sudo "
                                     "(or as the service user)") from exc
        except OSError as exc:
            raise ServiceUnreachable(f"cannot reach the service at {path} "
                                     f"({exc.strerror or exc})") from exc
        try:
            s.sendall(json.dumps(message).encode() + b"\n")
            reader = s.makefile("rb")
            line = reader.readline(MAX_REQUEST)
        except socket.timeout as exc:
            raise ApplianceError(f"no answer from the service within {timeout:g} s") from exc
        except OSError as exc:
            raise ApplianceError(f"the service closed the connection ({exc})") from exc
    try:
        answer = json.loads(line)
    except ValueError as exc:
        raise ApplianceError("the service's answer is not JSON (an older version "
                             "running? restart it)") from exc
    if not isinstance(answer, dict):
        raise ApplianceError("the service's answer is not a JSON object")
    if not answer.get("ok"):
        raise ApplianceError(str(answer.get("error") or "the service refused"))
    return answer
