"""What the fault suite (tests/test_faults*.py, tests/test_power_loss.py) shares: a crowd of
citizens with known answers, a tally of what the simulator's network really delivered, a
read-only look into ``state.db``, the unit as a real ``python -m appliance run`` process,
and one place where figures are shown.

The tally is counted from the simulator's capture, never from the unit's own records: a
unit that believes it answered is not evidence that a handset received anything. The unit's
records (``Outbound.attempts``, ``Outbound.resends``) are then used the other way round, to
explain every extra copy a handset got: at-least-once delivery may duplicate a reply only
where the unit tried it again.
"""

from __future__ import annotations

import json
import os
import random
import signal
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from appliance.registry.importer import demo_cnics
from appliance.registry.lookup import Registry
from appliance.rules.responder import Policy, load_templates, respond
from tests.conftest import FIRMWARE_CONFIG, ROOT

#: Where every figure of the suite is appended, one JSON object a line (CI keeps the file).
FIGURES_FILE = Path(os.environ.get("NSOR_FAULT_FIGURES")
                    or Path(tempfile.gettempdir()) / "nsor-fault-figures.jsonl")


# -- citizens and what they must receive ---------------------------------------------------------

@dataclass
class Crowd:
    """``numbers[i]`` texts ``texts[i]`` once; ``expected[number]`` is the one right answer.

    Numbers come from a block (+92 333 …) that no simulated modem uses, so the guard's
    own-number rule never hides a citizen. A mix of registry hits (two-part Urdu replies:
    a kill between the parts is the interesting case) and misses (one part).
    """

    numbers: list[str]
    texts: list[str]
    expected: dict[str, str]

    @classmethod
    def make(cls, n: int, registry_path: Path, *, seed: int = 0, hit_share: float = 0.5,
             block: int = 0, two_hits_share: float = 0.0) -> Crowd:
        """``two_hits_share`` of the texts ask about two convicts at once: a four-part
        Urdu reply, the hardest to deliver whole."""
        cnics = demo_cnics()
        rng = random.Random(seed)
        numbers = [f"+92333{block:02d}{i:05d}" for i in range(n)]
        texts = [rng.choice(cnics.hits) if rng.random() < hit_share else rng.choice(cnics.misses)
                 for _ in range(n)]
        if two_hits_share:
            texts = [" ".join(rng.sample(cnics.hits, 2)) if rng.random() < two_hits_share
                     else t for t in texts]
        templates = load_templates(FIRMWARE_CONFIG / "replies.toml")
        answers: dict[str, str] = {}
        with Registry(registry_path) as registry:
            for text in set(texts):
                answers[text] = respond(text, registry.lookup, templates, Policy()).text
        return cls(numbers, texts, {num: answers[t] for num, t in zip(numbers, texts)})

    def send(self, sim: Any, i: int, modem: int | str) -> None:
        sim.citizen_send(self.numbers[i], modem, self.texts[i])

    def answered(self, sim: Any) -> int:
        return sum(1 for num in self.numbers if sim.inbox_messages(num))

    def tally(self, sim: Any) -> Tally:
        t = Tally(citizens=len(self.numbers))
        for num in self.numbers:
            got = sim.inbox(num)
            if not got:
                t.missing.append(num)
                continue
            t.answered += 1
            t.copies[num] = len(got)
            t.duplicates += len(got) - 1
            if any(text != self.expected[num] for text in got):
                t.wrong.append(num)
        mine = set(self.numbers)
        to_crowd = [s for s in sim.submitted if _handset(s.recipient) in mine]
        t.parts = len(to_crowd)
        t.orphan_parts, t.duplicate_parts = orphan_parts(sim, to_crowd)
        return t


def orphan_parts(sim: Any, parts: list[Any]) -> tuple[int, int]:
    """(orphan parts, duplicate parts) among ``parts`` as the network delivered them.

    A phone joins the parts of a long SMS by (sender, reference) (TS 23.040 §9.2.3.24.1):
    the parts the network delivered are grouped so, per handset, and a group that misses
    one of its sequence numbers is an unfinished message whose parts are all orphans. A
    part delivered twice in a complete group is a duplicate part, not an orphan (the phone
    shows one message)."""
    groups: dict[tuple[str, str, int, int, bool], Counter[int]] = {}
    for p in parts:
        if p.concat is None or p.concat.total <= 1:
            continue
        key = (sim.modem(p.modem).number, _handset(p.recipient), p.concat.reference,
               p.concat.total, p.concat.ref16)
        groups.setdefault(key, Counter())[p.concat.seq] += 1
    orphans = duplicates = 0
    for (_, _, _, total, _), seqs in groups.items():
        if set(range(1, total + 1)) <= set(seqs):
            duplicates += sum(seqs.values()) - total
        else:
            orphans += sum(seqs.values())
    return orphans, duplicates


def _handset(recipient: str) -> str:
    return "+92" + recipient[1:] if recipient.startswith("03") else recipient


@dataclass
class Tally:
    """What the citizens' handsets hold, counted from the simulator's capture."""

    citizens: int
    answered: int = 0
    duplicates: int = 0              # extra complete copies of a reply
    parts: int = 0                   # SMS-SUBMIT parts the network accepted for the crowd
    orphan_parts: int = 0            # parts in a (sender, reference) group never completed
    duplicate_parts: int = 0         # a part delivered again inside a complete group
    missing: list[str] = field(default_factory=list)
    wrong: list[str] = field(default_factory=list)
    copies: dict[str, int] = field(default_factory=dict)

    def explain_duplicates(self, tries: dict[str, int]) -> list[str]:
        """Citizens with more copies than the unit made send attempts: a duplicate that no
        retry or crash resend accounts for."""
        return [num for num, n in self.copies.items() if n > max(1, tries.get(num, 0))]


# -- state.db, read from outside -----------------------------------------------------------------

@dataclass(frozen=True)
class StateFigures:
    inbound: dict[str, int]
    outbound: dict[str, int]
    resends: int
    attempts: int
    splits: int                      # replies moved to another SIM after a part had left
    unfinished_inbound: int          # rows still 'new' or 'part': a message not answered
    pending_replies: int             # rows queued / retry / sending
    failed_replies: int
    tries: dict[str, int]            # handset -> send attempts over its replies (a crash
                                     # resend is claimed again, so it is an attempt too)


def read_state(path: Path) -> StateFigures:
    """Read ``state.db`` with plain sqlite3 (read-only, WAL-aware), not the unit's code."""
    con = sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=30)
    try:
        inbound = dict(con.execute("SELECT status, COUNT(*) FROM inbound GROUP BY status"))
        outbound = dict(con.execute("SELECT status, COUNT(*) FROM outbound GROUP BY status"))
        resends, attempts, splits = con.execute(
            "SELECT COALESCE(SUM(resends), 0), COALESCE(SUM(attempts), 0), "
            "COALESCE(SUM(splits), 0) FROM outbound").fetchone()
        tries: Counter[str] = Counter()
        for recipient, n in con.execute(
                "SELECT recipient, SUM(attempts) FROM outbound GROUP BY recipient"):
            tries[_handset(recipient)] += n
    finally:
        con.close()
    return StateFigures(
        inbound=inbound, outbound=outbound, resends=int(resends), attempts=int(attempts),
        splits=int(splits),
        unfinished_inbound=inbound.get("new", 0) + inbound.get("part", 0),
        pending_replies=sum(outbound.get(s, 0) for s in ("queued", "retry", "sending")),
        failed_replies=outbound.get("failed", 0), tries=dict(tries))


# -- the unit as a real process -------------------------------------------------------------------

class Unit:
    """``python -m appliance run --config FILE`` against the simulator living in the test.

    The log goes to a file, not a pipe: a pipe nobody drains fills up after 64 KiB and the
    unit would block in a log call, which looks exactly like the hang the suite hunts.
    """

    def __init__(self, tmp_path: Path, sim: Any, *, modem: dict[str, Any] | None = None,
                 sections: dict[str, dict[str, Any]] | None = None, verbose: bool = False) -> None:
        self.dir = tmp_path
        self.config = tmp_path / "appliance.toml"
        self.log_path = tmp_path / "unit.log"
        self.state_db = tmp_path / "data" / "state.db"
        self.verbose = verbose
        self.proc: subprocess.Popen[bytes] | None = None
        self.starts = 0
        settings = {"min_interval_s": 0, "hourly_cap": 100_000, "daily_cap": 1_000_000,
                    "command_timeout_s": 2, "send_timeout_s": 10, "sweep_interval_s": 5,
                    "health_interval_s": 5}
        settings.update(modem or {})
        blocks: dict[str, dict[str, Any]] = {
            "unit": {"name": "fault", "data_dir": str(tmp_path / "data"),
                     "own_numbers": [m.number for m in sim.modems]},
            "replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml")},
            "status": {"http_bind": ""}, "logging": {"format": "plain"},
            "reliability": {"retry_base_s": 1, "retry_max_s": 2}}
        for name, values in (sections or {}).items():
            blocks.setdefault(name, {}).update(values)
        text = "".join(f"[{name}]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in values.items())
                       for name, values in blocks.items())
        for m in sim.modems:
            text += f'[[modems]]\nname = "{m.name}"\nport = "{m.port}"\n' + "".join(
                f"{k} = {_toml(v)}\n" for k, v in settings.items())
        self.config.write_text(text)

    def start(self) -> None:
        argv = [sys.executable, "-m", "appliance"] + (["-v"] if self.verbose else []) + \
            ["run", "--config", str(self.config)]
        with open(self.log_path, "ab") as log:
            log.write(f"---- start {self.starts} ----\n".encode())
            log.flush()
            self.proc = subprocess.Popen(argv, cwd=ROOT, stdin=subprocess.DEVNULL,
                                         stdout=log, stderr=log,
                                         env=dict(os.environ, PYTHONUNBUFFERED="1"))
        self.starts += 1

    @property
    def pid(self) -> int:
        assert self.proc is not None
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL: no handler, no flush, no goodbye — what a power cut does to a process."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGKILL)
        self.proc.wait(10)

    def stop(self, timeout: float = 30) -> int:
        """SIGTERM and wait; a unit that does not stop in time is killed and fails the test."""
        if self.proc is None or self.proc.poll() is not None:
            return self.proc.returncode if self.proc else 0
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(10)
            raise AssertionError(f"unit did not stop within {timeout} s of SIGTERM\n"
                                 + self.log_tail())

    def rss_kib(self) -> int:
        """Resident set size from /proc (VmRSS, KiB)."""
        for line in Path(f"/proc/{self.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
        raise AssertionError(f"no VmRSS for pid {self.pid}")

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def log_tail(self, lines: int = 60) -> str:
        return "\n".join(self.log_text().splitlines()[-lines:])


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return json.dumps(str(value))


# -- figures ------------------------------------------------------------------------------------

def show_figures(request: pytest.FixtureRequest, record_property: Any, name: str,
                 figures: dict[str, Any]) -> None:
    """Show a test's figures where CI's log shows them (pytest captures print() and shows
    it only for failures), keep them as JUnit properties, and append them to FIGURES_FILE."""
    for key, value in figures.items():
        record_property(key, value)
    line = f"FIGURES {name}: " + ", ".join(f"{k}={_fmt(v)}" for k, v in figures.items())
    print(line)
    capture = request.config.pluginmanager.getplugin("capturemanager")
    reporter = request.config.pluginmanager.getplugin("terminalreporter")
    if capture is not None and reporter is not None:
        with capture.global_and_fixture_disabled():
            reporter.write_line("")
            reporter.write_line(textwrap.fill(line, 100, subsequent_indent="    "))
    with FIGURES_FILE.open("a") as out:
        out.write(json.dumps({"test": name, "at": time.time(), **figures}) + "\n")


def _fmt(value: Any) -> str:
    return f"{value:.2f}" if isinstance(value, float) else str(value)
