"""The appliance under benchmark: ``python -m appliance run --config FILE`` as a real
subprocess on the simulator's ptys, exactly as systemd would start it.

Run as its own process so that its CPU time and peak RSS (``/proc/PID/stat``, ``VmHWM``)
are the unit's alone, not the simulator's. Ready means every modem's owner logged
``state starting -> ready`` (engine.py), timed from just before the process was spawned.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shutil
import signal
import sqlite3
import subprocess
import sys
import threading
import time
from collections import deque
from pathlib import Path
from typing import Any

from bench_support import MAX_AGE_HOURS, ROOT

log = logging.getLogger(__name__)

FIRMWARE_CONFIG = ROOT / "firmware_config"
_READY = re.compile(r"appliance\.modem\.(\S+): state \S+ -> ready")


def _toml(value: Any) -> str:
    return json.dumps(str(value)) if isinstance(value, (str, Path)) else json.dumps(value)


def write_config(path: Path, sim: Any, registry: Path, *, send_timeout_s: float,
                 status_reports: bool = True, send_mode: str | None = None) -> Path:
    """A unit configuration for the simulator's modems, tuned for throughput only where
    the setting is operator safety rather than engineering:

    * ``min_interval_s = 0``, caps at their maxima: pacing exists so that operators do not
      suspend a SIM for bulk sending (docs/field-notes.md); it is not a throughput limit and would
      otherwise be the only thing measured.
    * everything else (health checks, SIM sweeps, delivery reports, guard, audit) stays at
      the firmware defaults: the benchmark measures the unit as shipped.
    """
    modems = "".join(f"""
[[modems]]
name = {_toml(m.name)}
port = {_toml(m.port)}
min_interval_s = 0
hourly_cap = 100000
daily_cap = 1000000
send_timeout_s = {send_timeout_s:.1f}
status_reports = {'true' if status_reports else 'false'}
""" + (f"send_mode = {_toml(send_mode)}\n" if send_mode else "") for m in sim.modems)
    path.write_text(f"""# written by scripts/bench.py
[unit]
name = "bench"
data_dir = {_toml(path.parent / 'data')}
own_numbers = [{', '.join(_toml(m.number) for m in sim.modems)}]

[registry]
path = {_toml(registry)}
max_age_hours = {MAX_AGE_HOURS}

[replies]
templates = {_toml(FIRMWARE_CONFIG / 'replies.toml')}

[alarms]
queue_warn = 1000000

[logging]
level = "INFO"
format = "plain"

[status]
http_bind = ""
{modems}""")
    return path


class ApplianceRunner:
    """One appliance process for one scenario; see the module docstring."""

    name = "appliance"

    def __init__(self, work: Path, registry: Path, *, send_timeout_s: float = 60.0,
                 status_reports: bool = True, send_mode: str | None = None) -> None:
        self.work = work
        self.registry = registry
        self.send_timeout_s = send_timeout_s
        self.status_reports = status_reports
        self.send_mode = send_mode
        self._spy: subprocess.Popen[bytes] | None = None
        self.proc: subprocess.Popen[bytes] | None = None
        self.log_tail: deque[str] = deque(maxlen=200)
        self.problems: list[str] = []
        self._ready: dict[str, float] = {}
        self._modems = 0
        self._reader: threading.Thread | None = None

    def start(self, sim: Any) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        config = write_config(self.work / "appliance.toml", sim, self.registry,
                              send_timeout_s=self.send_timeout_s,
                              status_reports=self.status_reports, send_mode=self.send_mode)
        self._modems = len(sim.modems)
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "appliance", "run", "--config", str(config)], cwd=ROOT,
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
            env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self._reader = threading.Thread(target=self._read_log, name="bench-appliance-log",
                                        daemon=True)
        self._reader.start()

    def _read_log(self) -> None:
        assert self.proc is not None and self.proc.stderr is not None
        with open(self.work / "appliance.log", "w", encoding="utf-8") as keep:
            for raw in self.proc.stderr:
                self._line(raw.decode("utf-8", errors="replace").rstrip(), keep)

    def _line(self, line: str, keep: Any) -> None:
        now = time.time()
        keep.write(line + "\n")
        self.log_tail.append(line)
        m = _READY.search(line)
        if m:
            self._ready.setdefault(m.group(1), now)
        if " ERROR " in line or "Traceback" in line:
            self.problems.append(line)

    def pids(self) -> list[int]:
        return [self.proc.pid] if self.proc is not None else []

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready_at(self) -> float | None:
        """When the last modem became ready (None until all are)."""
        if len(self._ready) < self._modems:
            return None
        return max(self._ready.values())

    def profile_start(self, out: Path) -> None:
        """Sample the process with py-spy (only threads holding the GIL, i.e. Python work,
        without pausing it) until :meth:`profile_stop`; raw collapsed stacks to ``out``."""
        spy = shutil.which("py-spy")
        if spy is None or self.proc is None:
            self.problems.append("no profile: py-spy is not installed (pip install py-spy)")
            return
        self._spy = subprocess.Popen(
            [spy, "record", "--pid", str(self.proc.pid), "--format", "raw",
             "--rate", os.environ.get("BENCH_SPY_RATE", "100"),  # samples per second
             "--gil", "--nonblocking", "--output", str(out)],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def profile_stop(self) -> None:
        if self._spy is not None:
            self._spy.send_signal(signal.SIGINT)  # py-spy writes its output on SIGINT
            try:
                self._spy.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self._spy.kill()
                self._spy.wait()
            self._spy = None

    def stop(self) -> None:
        self.profile_stop()
        if self.proc is None:
            return
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout=self.send_timeout_s + 15)
            except subprocess.TimeoutExpired:
                self.problems.append("appliance did not stop within its send timeout; killed")
                self.proc.kill()
                self.proc.wait(timeout=10)
        if self._reader is not None:
            self._reader.join(timeout=5)
        if self.proc.returncode not in (0, -signal.SIGTERM):
            self.problems.append(f"appliance exited with {self.proc.returncode}")

    def stored_to_submitted(self, senders: set[str]) -> list[float]:
        """Per answered SMS of ``senders``: Outbound.first_submit_at − Inbound.received_at
        (committed to state.db → first part accepted by the modem), in seconds."""
        db = self.work / "data" / "state.db"
        conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
        try:
            rows = conn.execute(
                "SELECT i.sender, o.first_submit_at - i.received_at FROM inbound i "
                "JOIN outbound o ON i.reply = o.id WHERE o.first_submit_at IS NOT NULL"
            ).fetchall()
        finally:
            conn.close()
        return [delay for sender, delay in rows if sender in senders]


def profile_summary(path: Path, top: int = 15) -> list[str]:
    """The functions with the most samples in a py-spy raw profile, counting a function
    once per stack (inclusive), for the appliance's own code and the libraries it calls."""
    counts: dict[str, int] = {}
    total = 0
    for line in path.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        if not stack or not n.isdigit():
            continue
        total += int(n)
        for frame in {re.sub(r":\d+\)$", ")", f) for f in stack.split(";")}:
            if "threading.py" not in frame and "<frozen" not in frame:
                counts[frame] = counts.get(frame, 0) + int(n)
    if not total:
        return ["(no samples)"]
    ranked = sorted(counts.items(), key=lambda kv: -kv[1])[:top]
    return [f"{n / total * 100:5.1f}%  {frame}" for frame, n in ranked]
