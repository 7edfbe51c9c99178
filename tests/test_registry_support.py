"""Shared pieces for the registry and sync tests (no tests here).

Real things only: a publisher with real Ed25519 keys in a temporary directory, and a real
``ThreadingHTTPServer`` on 127.0.0.1 (port 0) serving its ``public`` directory, with
faults injected at the HTTP boundary (404, a connection cut mid-body) rather than by
patching the client.
"""

from __future__ import annotations

import csv
import functools
import http.server
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.registry.publish import Publisher
from appliance.registry.sync import RegistrySync

FIELDS = ["cnic", "name_ur", "name_en", "parent_ur", "parent_en", "relation", "status",
          "recorded_on", "updated_on"]


def person(i: int, *, variant: int = 0, status: str = "active") -> dict[str, str]:
    """Fictional record number ``i`` ("Test Person 17" / "ٹیسٹ شخص 17")."""
    suffix = f" v{variant}" if variant else ""
    return {"cnic": f"{1 + i % 7}{i:011d}{i % 10}", "name_ur": f"ٹیسٹ شخص {i}{suffix}",
            "name_en": f"Test Person {i}{suffix}", "parent_ur": f"ٹیسٹ والد {i}",
            "parent_en": f"Test Father {i}", "relation": ("s/o", "d/o", "w/o")[i % 3],
            "status": status, "recorded_on": "2020-01-02", "updated_on": ""}


def people(n: int, start: int = 0) -> list[dict[str, str]]:
    return [person(i) for i in range(start, start + n)]


def write_export(path: Path, rows: list[dict[str, str]]) -> Path:
    with open(path, "w", encoding="utf-8", newline="") as fh:
        writer = csv.DictWriter(fh, fieldnames=FIELDS)
        writer.writeheader()
        writer.writerows(rows)
    return path


class Faults:
    """Per-request faults keyed by a substring of the URL path."""

    def __init__(self) -> None:
        self.not_found: set[str] = set()
        self.cut: set[str] = set()          # send the headers, half the body, then close
        self.slow: set[str] = set()         # send the body one byte every slow_interval_s
        self.slow_interval_s = 2.0
        self.requests: list[str] = []


class _Handler(http.server.SimpleHTTPRequestHandler):
    faults: Faults

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def do_GET(self) -> None:
        self.faults.requests.append(self.path)
        if any(key in self.path for key in self.faults.not_found):
            self.send_error(404)
            return
        if any(key in self.path for key in self.faults.slow):
            local = Path(self.translate_path(self.path))
            data = local.read_bytes() if local.is_file() else b"x" * 4096
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            try:
                for i in range(len(data)):
                    self.wfile.write(data[i:i + 1])
                    self.wfile.flush()
                    time.sleep(self.faults.slow_interval_s)  # the fault itself: a slow link
            except OSError:  # the client gave up, as it should
                pass
            self.close_connection = True
            return
        if any(key in self.path for key in self.faults.cut):
            local = Path(self.translate_path(self.path))
            data = local.read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            self.connection.shutdown(socket.SHUT_RDWR)
            return
        super().do_GET()


class Server:
    """A ThreadingHTTPServer on 127.0.0.1:0 serving ``directory``."""

    def __init__(self, directory: Path) -> None:
        self.faults = Faults()
        handler = functools.partial(
            type("Handler", (_Handler,), {"faults": self.faults}), directory=str(directory))
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,),
                                       daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)


def free_port_url() -> str:
    """A URL on which nothing listens (the port was bound, then released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}"


class Env:
    """A publisher, an HTTP server in front of it, and a unit that syncs from it."""

    def __init__(self, tmp: Path) -> None:
        self.tmp = tmp
        self.publisher = Publisher(tmp / "repo", tmp / "keys")
        self.root = tmp / "registry_root.json"
        self.publisher.init(self.root)
        self.public = self.publisher.public_dir
        self.server = Server(self.public)
        self.db = tmp / "unit" / "registry.db"
        self.alarms: list[tuple[str, str]] = []
        self._exports = 0

    def publish(self, rows: list[dict[str, str]], **kwargs: Any) -> Any:
        self._exports += 1
        export = write_export(self.tmp / f"export-{self._exports}.csv", rows)
        return self.publisher.publish(export, **kwargs)

    def unit(self, url: str | None = None, **kwargs: Any) -> RegistrySync:
        return RegistrySync(self.db, url or self.server.url, self.root,
                            on_alarm=lambda kind, msg: self.alarms.append((kind, msg)),
                            socket_timeout=5, **kwargs)

    def snapshot_public(self, name: str) -> Path:
        """Copy the served directory as it is now (to re-serve it later)."""
        dest = self.tmp / name
        shutil.copytree(self.public, dest)
        return dest

    def target(self, pattern: str) -> Path:
        matches = sorted((self.public / "targets" / "registry").glob(f"*{pattern}*"))
        assert len(matches) == 1, matches
        return matches[0]


@pytest.fixture
def env(tmp_path: Path) -> Iterator[Env]:
    e = Env(tmp_path)
    try:
        yield e
    finally:
        e.server.close()
