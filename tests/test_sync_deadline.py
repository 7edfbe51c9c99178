"""Deadlines on every download, and a second sync that says who runs (issue 12, item 5).

Against a real HTTP server on 127.0.0.1: one that sends a file one byte every 2 s (so a
30 s gap timeout never trips) and one that accepts the connection and never answers.
Each sync must end by its overall deadline (per file, or per sync) with the
``registry_deadline`` alarm, the failure recorded, and the installed registry answering.
While a sync holds the lock, a technician's ``python -m appliance sync`` says which
process has been running since when, at once, instead of blocking. ~25 s in all.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.errors import SyncError
from appliance.registry.lookup import Registry
from appliance.registry.status import sync_status
from appliance.errors import SyncBusy, SyncDeadline
from tests.conftest import wait_until
from tests.test_registry_support import Env, env, people, person

__all__ = ["env"]

ROOT = Path(__file__).resolve().parent.parent
#: How far past its deadline a sync may end: the socket is shut down by a timer, so only
#: thread scheduling on a loaded machine is left.
SLACK_S = 4.0


class Stalled:
    """A TCP listener on 127.0.0.1 that accepts connections and never says a word."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self.sock.getsockname()[1]}"
        self.held: list[socket.socket] = []
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        self.sock.settimeout(0.1)
        while not self._stop.is_set():
            try:
                conn, _ = self.sock.accept()
                self.held.append(conn)
            except TimeoutError:
                continue
            except OSError:
                return

    def close(self) -> None:
        self._stop.set()
        self.thread.join(timeout=5)
        for conn in self.held:
            conn.close()
        self.sock.close()


@pytest.fixture
def stalled() -> Iterator[Stalled]:
    server = Stalled()
    try:
        yield server
    finally:
        server.close()


def assert_kept(e: Env) -> None:
    assert e.alarms and e.alarms[-1][0] == "registry_deadline", e.alarms
    assert sync_status(e.db)["last_error"]["kind"] == "registry_deadline"
    with Registry(e.db) as registry:
        assert registry.lookup(person(1)["cnic"]) is not None


def test_a_slow_metadata_file_ends_by_its_file_deadline(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.server.faults.slow.add("timestamp.json")
    unit = env.unit(file_deadline_s=2.0)  # socket_timeout stays 5 s: each byte is in time
    started = time.monotonic()
    with pytest.raises(SyncDeadline, match="deadline"):
        unit.sync()
    took = time.monotonic() - started
    allowance = 2.0 + 16384 / unit.min_rate  # timestamp.json: 16 KiB signed maximum
    print(f"FIGURES sync_deadline case=slow_metadata deadline_s={allowance:.1f} "
          f"took_s={took:.1f}")
    assert took < allowance + SLACK_S
    assert_kept(env)


def test_a_slow_snapshot_ends_by_the_sync_deadline(env: Env) -> None:
    env.publish(people(10))
    env.unit().sync()
    env.publisher.keep_deltas = 0
    env.publish(people(12))
    env.server.faults.slow.add("snapshot-")
    unit = env.unit(sync_deadline_s=4.0)
    started = time.monotonic()
    with pytest.raises(SyncDeadline, match="deadline"):
        unit.sync()
    took = time.monotonic() - started
    print(f"FIGURES sync_deadline case=slow_snapshot deadline_s=4.0 took_s={took:.1f}")
    assert took < 4.0 + SLACK_S
    assert_kept(env)
    with Registry(env.db) as registry:
        assert registry.info().version == 1
    env.server.faults.slow.clear()
    assert env.unit().sync().to_version == 2                       # and it recovers


def test_a_stalled_server_ends_by_the_deadline_not_the_gap_timeout(
        env: Env, stalled: Stalled) -> None:
    env.publish(people(10))
    env.unit().sync()
    # The first request is for root metadata, signed at most 512,000 bytes: at the default
    # 32 KB/s it would get 2 + 15.6 s; a fast minimum rate keeps the test short.
    unit = env.unit(stalled.url, file_deadline_s=2.0, min_rate=10**6)
    unit.socket_timeout = 30                 # the gap timeout alone would wait 30 s
    allowance = 2.0 + 512_000 / unit.min_rate
    started = time.monotonic()
    with pytest.raises(SyncDeadline):
        unit.sync()
    took = time.monotonic() - started
    print(f"FIGURES sync_deadline case=stalled deadline_s={allowance:.1f} took_s={took:.1f}")
    assert took < allowance + SLACK_S
    assert_kept(env)


def test_a_second_sync_says_who_runs_since_when(env: Env, stalled: Stalled) -> None:
    env.publish(people(10))
    env.unit().sync()
    holder = env.unit(stalled.url, file_deadline_s=10.0, min_rate=10**6)
    holder.socket_timeout = 30
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            holder.sync()
        except SyncError as exc:
            outcome.append(exc)

    thread = threading.Thread(target=run)
    thread.start()
    lock = holder.paths.lock
    assert wait_until(lambda: "pid" in lock.read_text(), 5)
    # In-process: refused at once, not a failure (no alarm, nothing recorded).
    alarms_before = len(env.alarms)
    with pytest.raises(SyncBusy, match=r"another registry sync is running \(pid \d+, since"):
        env.unit().sync()
    assert len(env.alarms) == alarms_before
    # A technician's command: one clear line, promptly, no traceback.
    started = time.monotonic()
    result = subprocess.run(
        [sys.executable, "-m", "appliance", "sync", "--no-progress", "--db", str(env.db),
         "--url", env.server.url, "--root", str(env.root)],
        cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert time.monotonic() - started < 8.0 + SLACK_S   # interpreter start-up, not 10 s
    assert result.returncode != 0
    assert "another registry sync is running (pid" in result.stderr
    assert "since 20" in result.stderr and "Traceback" not in result.stderr
    thread.join(timeout=30)
    assert outcome and isinstance(outcome[0], SyncDeadline)
    assert env.unit().sync().action == "current"                   # the lock is free again
