"""sd_notify as systemd sees it: READY=1 after start-up, WATCHDOG=1 while every modem owner
is alive, STATUS= with a one-line summary — over a real datagram socket, from the real
`python -m appliance run` process."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from tests.conftest import ROOT
from tests.test_service_e2e import write_config


def test_ready_watchdog_and_status_reach_systemd(tmp_path: Path, sim: Any,
                                                 sample_registry: Path) -> None:
    address = str(tmp_path / "notify.sock")
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(address)
    sock.settimeout(0.5)
    config = write_config(tmp_path, sim)
    env = dict(os.environ, NOTIFY_SOCKET=address, WATCHDOG_USEC="2000000")
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)],
                            cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    got: list[str] = []
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not (
                "READY=1" in got and got.count("WATCHDOG=1") >= 2
                and any(m.startswith("STATUS=2/2 modems ready") for m in got)):
            try:
                got.append(sock.recv(4096).decode())
            except socket.timeout:
                continue
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=30)
        sock.close()
    assert "READY=1" in got, (got, err[-2000:])
    assert got.index("READY=1") < got.index("WATCHDOG=1")
    assert got.count("WATCHDOG=1") >= 2
    assert any(m.startswith("STATUS=2/2 modems ready") and "registry ok" in m for m in got), got
