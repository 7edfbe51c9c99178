"""A sync killed (SIGKILL) mid-apply, or starved of disk, leaves a consistent registry.

The sync runs in a child process. ``NSOR_REGISTRY_PAUSE_AT`` makes it stop at an exact
point of the apply (see ``registry/apply.py``), announce it on stderr and wait; the test
then kills it with SIGKILL -- no clean-up code runs -- and checks the file it left: an
intact SQLite database holding exactly the old or the new version, never a mix, and the
next sync completing normally. A slow variant kills at random moments instead.
"""

from __future__ import annotations

import os
import random
import selectors
import shutil
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

from appliance.registry.apply import PAUSE_ENV
from appliance.registry.lookup import Registry
from tests.test_registry_support import Env, env, people, person

__all__ = ["env"]

ROOT = Path(__file__).resolve().parent.parent

CHILD = """
import resource, signal, sys
from appliance.registry.sync import RegistrySync
db, url, root, fsize = sys.argv[1:5]
if int(fsize):
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    resource.setrlimit(resource.RLIMIT_FSIZE, (int(fsize), int(fsize)))
try:
    result = RegistrySync(db, url, root, socket_timeout=5).sync()
    print("OK", result.action, result.to_version)
except Exception as exc:
    print("ERR", type(exc).__name__, exc)
    sys.exit(1)
"""

#: With every record renamed to a long name (:func:`renamed`), a delta over this many
#: records dirties more pages than SQLite's default 2 MB page cache holds, so a killed
#: delta really leaves half-written pages and a hot journal (asserted below).
N_BIG = 5_000


def start_child(e: Env, pause_at: str | None = None, fsize: int = 0) -> subprocess.Popen[str]:
    env = dict(os.environ)
    env.pop(PAUSE_ENV, None)
    if pause_at:
        env[PAUSE_ENV] = pause_at
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(e.db), e.server.url, str(e.root), str(fsize)],
        cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def wait_for_line(proc: subprocess.Popen[str], text: str, timeout: float = 60) -> None:
    assert proc.stderr is not None
    sel = selectors.DefaultSelector()
    sel.register(proc.stderr, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    seen: list[str] = []
    while time.monotonic() < deadline:
        if sel.select(timeout=deadline - time.monotonic()):
            line = proc.stderr.readline()
            if not line:
                break
            seen.append(line)
            if text in line:
                return
    proc.kill()
    pytest.fail(f"child never printed {text!r}; stderr: {''.join(seen)[-2000:]}")


def kill(proc: subprocess.Popen[str]) -> None:
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=10)


def check_consistent(e: Env, versions: dict[int, str]) -> int:
    """Integrity, and contents matching exactly one version; return that version."""
    with Registry(e.db) as registry:   # the first reader rolls back a hot journal
        info = registry.info()
        assert info.version in versions, info
        probe = registry.lookup(person(3)["cnic"])
        assert probe is not None and probe.name_en == versions[info.version]
    conn = sqlite3.connect(e.db)
    try:
        assert conn.execute("PRAGMA integrity_check").fetchall() == [("ok",)]
        active = conn.execute("SELECT count(*) FROM offender WHERE status='active'").fetchone()
        assert active[0] == info.record_count
    finally:
        conn.close()
    return int(info.version)


def renamed(n: int, variant: int) -> list[dict[str, str]]:
    """Every record renamed; the Urdu name padded to ~600 bytes to make the delta heavy."""
    pad = " " + "ٹیسٹ" * 75
    return [dict(person(i, variant=variant), name_ur=person(i)["name_ur"] + pad)
            for i in range(n)]


def test_killed_before_the_snapshot_swap_keeps_the_old_registry(env: Env) -> None:
    env.publish(people(200))
    env.unit().sync()
    env.publisher.keep_deltas = 0
    env.publish(renamed(200, 1))
    child = start_child(env, "snapshot-ready")
    wait_for_line(child, "PAUSED snapshot-ready")
    kill(child)
    assert list(env.db.parent.glob(".registry.db.new-*"))            # the half-way file
    assert check_consistent(env, {1: "Test Person 3", 2: "Test Person 3 v1"}) == 1
    assert env.unit().sync().to_version == 2
    assert not list(env.db.parent.glob(".registry.db.new-*"))         # cleaned up
    check_consistent(env, {2: "Test Person 3 v1"})


def test_killed_right_after_the_snapshot_swap_has_the_new_registry(env: Env) -> None:
    env.publish(people(200))
    env.unit().sync()
    env.publisher.keep_deltas = 0
    env.publish(renamed(200, 1))
    child = start_child(env, "snapshot-swapped")
    wait_for_line(child, "PAUSED snapshot-swapped")
    kill(child)
    assert check_consistent(env, {1: "Test Person 3", 2: "Test Person 3 v1"}) == 2
    assert env.unit().sync().action == "current"


def test_killed_inside_the_delta_transaction_rolls_back(env: Env) -> None:
    env.publish(people(N_BIG))
    env.unit().sync()
    env.publish(renamed(N_BIG, 1))
    child = start_child(env, "delta-applied")
    wait_for_line(child, "PAUSED delta-applied")
    kill(child)
    # The kill really interrupted a write: SQLite left a hot rollback journal.
    assert env.db.with_name(env.db.name + "-journal").stat().st_size > 0
    assert check_consistent(env, {1: "Test Person 3", 2: "Test Person 3 v1"}) == 1
    assert not env.db.with_name(env.db.name + "-journal").exists()    # rolled back
    result = env.unit().sync()
    assert (result.action, result.to_version) == ("delta", 2)
    check_consistent(env, {2: "Test Person 3 v1"})


def test_disk_full_during_the_snapshot_keeps_the_registry(env: Env) -> None:
    env.publish(people(2000))
    env.unit().sync()
    env.publisher.keep_deltas = 0
    env.publish(renamed(2000, 1))
    size = env.db.stat().st_size
    child = start_child(env, fsize=size // 2)   # downloads fit, the new database does not
    out, _ = child.communicate(timeout=120)
    assert child.returncode == 1 and "SyncError" in out and "disk full" in out, out
    assert check_consistent(env, {1: "Test Person 3"}) == 1
    assert not list(env.db.parent.glob(".registry.db.new-*"))


@pytest.mark.slow
def test_killed_at_random_moments_always_leaves_one_version(env: Env) -> None:
    env.publish(people(N_BIG))
    env.unit().sync()
    pristine = env.tmp / "pristine"
    pristine.mkdir()
    for name in ("registry.db", "registry.tuf"):
        src = env.db.parent / name
        (shutil.copytree if src.is_dir() else shutil.copy2)(src, pristine / name)
    env.publish(renamed(N_BIG, 1))                       # v2: reachable by delta
    started = time.monotonic()
    probe = start_child(env)
    probe.communicate(timeout=120)
    duration = time.monotonic() - started
    rng = random.Random(4)
    outcomes: set[int] = set()
    for _ in range(12):
        shutil.rmtree(env.db.parent)
        shutil.copytree(pristine, env.db.parent)
        child = start_child(env)
        time.sleep(rng.uniform(0.1, duration))            # a random kill moment, by design
        kill(child)
        outcomes.add(check_consistent(env, {1: "Test Person 3", 2: "Test Person 3 v1"}))
        assert env.unit().sync().to_version == 2
        assert not env.db.with_name(env.db.name + "-journal").exists()
    assert outcomes  # which versions the kills left depends on timing; both are consistent
