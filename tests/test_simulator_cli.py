"""The simulator CLI as a person uses it: one terminal runs the bank, others drive it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from gsmmodem.pdu import encodeSmsSubmitPdu

from appliance.simulator.client import ATClient

ROOT = Path(__file__).resolve().parents[1]
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}
CLI = [sys.executable, "-m", "appliance.simulator.cli"]
CITIZEN = "+923001234567"


def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    result = subprocess.run([*CLI, *args], capture_output=True, text=True, env=ENV, cwd=ROOT,
                            timeout=30)
    if check:
        assert result.returncode == 0, result.stderr
    return result


@pytest.fixture
def bank(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[str], Path]]:
    directory = tmp_path / "bank"
    proc = subprocess.Popen([*CLI, "--modems", "2", "--dir", str(directory), "--profile",
                             "sim800,ec25", "--latency", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=ENV, cwd=ROOT)
    assert proc.stdout is not None
    seen: list[str] = []
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        seen.append(line)
        if line.strip() == "ready":
            break
    assert seen and seen[-1].strip() == "ready", "".join(seen) + proc.stderr.read()
    yield proc, directory
    if proc.poll() is None:
        proc.kill()
        proc.wait(timeout=10)


def test_run_send_inbox_and_stop(bank: tuple[subprocess.Popen[str], Path]) -> None:
    proc, directory = bank
    assert (directory / "sim0").is_symlink() and (directory / "sim1").is_symlink()
    assert cli("send", "--dir", str(directory), "--from", CITIZEN, "--to", "sim0",
               "35202-1234567-1").stdout == "ok\n"
    with ATClient(str(directory / "sim0")) as modem:
        modem.command("ATE0")
        listing = modem.command("AT+CMGL=4")
        assert listing[0].startswith(b"+CMGL: 1,0,,")
        (reply,) = encodeSmsSubmitPdu(CITIZEN, "کوئی ریکارڈ نہیں")
        assert modem.command(f"AT+CMGS={reply.tpduLength}", prompt_data=str(reply))[-1] == b"OK"
    inbox = cli("inbox", "--dir", str(directory), "--number", CITIZEN, "--wait", "5").stdout
    assert "from +923000000000 (sim0): کوئی ریکارڈ نہیں" in inbox
    status = cli("status", "--dir", str(directory)).stdout
    assert "sim1  ec25" in status and "submitted 1" in status
    assert "hang=True" in cli("fault", "--dir", str(directory), "--modem", "sim1",
                              "hang=true").stdout
    bad = cli("fault", "--dir", str(directory), "--modem", "sim1", "nosuch=1", check=False)
    assert bad.returncode == 1 and "unknown fault 'nosuch'" in bad.stderr
    cli("unplug", "--dir", str(directory), "--modem", "sim1")
    assert not (directory / "sim1").exists()
    cli("replug", "--dir", str(directory), "--modem", "sim1")
    assert (directory / "sim1").is_symlink()
    proc.send_signal(signal.SIGINT)
    out, _ = proc.communicate(timeout=15)
    assert proc.returncode == 0 and "stopped" in out
    assert not (directory / "control.sock").exists() and not (directory / "sim0").exists()


def test_client_without_a_running_bank(tmp_path: Path) -> None:
    result = cli("inbox", "--dir", str(tmp_path), "--number", CITIZEN, check=False)
    assert result.returncode == 1
    assert "no simulator runs in" in result.stderr and "simulate --dir" in result.stderr


def test_every_simulate_command_and_option_has_help() -> None:
    import argparse

    from appliance.simulator.cli import CLIENT_COMMANDS, build_parsers

    run, client = build_parsers()
    sub = next(a for a in client._actions if isinstance(a, argparse._SubParsersAction))
    parsers = [run, *(sub.choices[name] for name in CLIENT_COMMANDS)]
    assert {c.dest for c in sub._choices_actions} == set(CLIENT_COMMANDS)
    assert all(c.help for c in sub._choices_actions)
    for parser in parsers:
        assert parser.description, parser.prog
        for action in parser._actions:
            assert action.help, f"{parser.prog}: {action.dest} has no help"
    assert "fault" in run.format_help() and "hang" in sub.choices["fault"].format_help()
