"""The benchmark's own machinery: the peers' reply script answers exactly as the appliance
does (through a real lookup server on a real Unix socket, writing real spool files), the
/proc accounting sees a real child's CPU, and a smoke run of ``scripts/bench.py --smoke``
completes and prints its figures (no timing is asserted: benchmarks print, tests check)."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from appliance.registry.importer import demo_cnics
from tests.conftest import ROOT, wait_until

sys.path.insert(0, str(ROOT / "scripts"))

import bench_support  # noqa: E402
import peer_reply  # noqa: E402

CITIZEN = "+923001112233"


@pytest.fixture
def lookup_server(tmp_path: Path, sample_registry: Path) -> Iterator[Path]:
    sock = tmp_path / "lookup.sock"
    proc = subprocess.Popen([sys.executable, str(ROOT / "scripts" / "peer_reply.py"), "serve",
                             "--registry", str(sample_registry), "--socket", str(sock)],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "ready", proc.stderr.read()  # type: ignore
        yield sock
    finally:
        proc.terminate()
        proc.wait(timeout=10)


@pytest.mark.parametrize("text", [demo_cnics().hits[0], demo_cnics().misses[0], "مدد",
                                  f"{demo_cnics().hits[1]} {demo_cnics().misses[1]}"])
def test_server_answers_exactly_as_the_appliance(lookup_server: Path, sample_registry: Path,
                                                 text: str) -> None:
    local = peer_reply.LocalAnswer(sample_registry)
    assert peer_reply.ask_server(str(lookup_server), CITIZEN, text) == local(CITIZEN, text)
    recipient, reply = local("923001112233", text)
    assert recipient == CITIZEN and reply


def test_smstools_hook_spools_the_reply(lookup_server: Path, sample_registry: Path,
                                        tmp_path: Path) -> None:
    outgoing = tmp_path / "spool" / "outgoing"
    outgoing.mkdir(parents=True)
    incoming = tmp_path / "sim0.abc"
    text = demo_cnics().hits[0]
    incoming.write_text(f"From: 923001112233\nFrom_SMSC: 923000000000\nAlphabet: UCS2\n\n"
                        f"{text}\n", encoding="utf-8")
    hook = [sys.executable, "-S", "-E", str(ROOT / "scripts" / "peer_reply.py"), "smstools",
            "--socket", str(lookup_server), "--outgoing", str(outgoing)]
    subprocess.run(hook + ["SENT", str(incoming)], check=True, timeout=30)
    assert not list(outgoing.iterdir()), "a SENT event must not be answered"
    subprocess.run(hook + ["RECEIVED", str(incoming)], check=True, timeout=30)
    (spooled,) = outgoing.iterdir()
    headers, body = peer_reply.read_smstools_file(str(spooled))
    assert headers == {"To": "923001112233", "Alphabet": "UTF"}
    assert body == peer_reply.LocalAnswer(sample_registry)(CITIZEN, text)[1]
    assert not [p for p in spooled.parent.parent.iterdir() if p.name.startswith(".")]


def test_gammu_environment_is_read_whole() -> None:
    single = {"SMS_MESSAGES": "1", "SMS_1_NUMBER": CITIZEN, "SMS_1_TEXT": "35202-1234567-1"}
    assert peer_reply.incoming_from_gammu_env(single) == (CITIZEN, "35202-1234567-1")
    parts = {"SMS_MESSAGES": "2", "SMS_1_NUMBER": CITIZEN, "SMS_1_TEXT": "3520212",
             "SMS_2_TEXT": "345671"}
    assert peer_reply.incoming_from_gammu_env(parts) == (CITIZEN, "3520212345671")
    decoded = dict(parts, DECODED_1_TEXT="whole text")
    assert peer_reply.incoming_from_gammu_env(decoded) == (CITIZEN, "whole text")


def test_hook_without_a_lookup_refuses_clearly() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "peer_reply.py"), "gammu",
                          "--smsdrc", "/nonexistent"], capture_output=True, text=True, check=False,
                         timeout=30, env=dict(os.environ, SMS_1_NUMBER=CITIZEN, SMS_1_TEXT="x"))
    assert res.returncode != 0
    assert "--socket" in res.stderr and "Traceback" not in res.stderr


def test_tree_cpu_sees_a_busy_child() -> None:
    child = subprocess.Popen([sys.executable, "-c",
                              "import time\nt = time.process_time()\n"
                              "while time.process_time() - t < 0.3: pass\n"
                              "time.sleep(30)"])
    try:
        assert wait_until(lambda: bench_support.tree_cpu([child.pid]).total >= 0.25, 10)
        assert child.pid in bench_support.process_tree([os.getpid()])
        assert bench_support.peak_rss_mb([child.pid]) > 1
    finally:
        child.kill()
        child.wait()


def test_percentile_is_nearest_rank() -> None:
    values = [float(v) for v in range(1, 101)]
    assert bench_support.percentile(values, 0.5) == 50
    assert bench_support.percentile(values, 0.99) == 99
    assert bench_support.percentile([7.0], 0.99) == 7
    assert bench_support.percentile([], 0.5) is None


@pytest.mark.slow
def test_smoke_run_completes_and_prints_figures(tmp_path: Path) -> None:
    started = time.monotonic()
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench.py"), "--smoke"],
                         capture_output=True, text=True, timeout=110, cwd=ROOT, check=False,
                         env=dict(os.environ, NSOR_BENCH_CACHE=str(tmp_path / "cache")))
    out = res.stdout
    assert res.returncode == 0, out[-3000:] + res.stderr[-3000:]
    assert "| appliance | 2 | burst | 20 | 20 |" in out
    assert "## Targets (issue 8)" in out
    assert "lookup p50" in out, "the registry benchmark's figures are missing"
    for peer, binary in (("gammu-smsd", "gammu-smsd"), ("smstools3", "smsd")):
        if shutil.which(binary):
            assert f"| {peer} | 2 | burst | 20 | 20 |" in out
    print(out)
    print(f"smoke run took {time.monotonic() - started:.0f} s")


def test_at_gaps_reads_idle_radio_time_from_a_trace(tmp_path: Path) -> None:
    import at_gaps

    trace = tmp_path / "at-trace.txt"
    # sim0: sends at 0, 3.050 (50 ms idle at 3 s latency) and 6.060 (10 ms); sim1 at 0.010
    # and 3.020 (10 ms; a test form "=?" is no send).
    trace.write_text("".join(f"{t:.4f} {m} {c}\n" for t, m, c in [
        (0.000, "sim0", "AT+CMSS=1"), (0.010, "sim1", "AT+CMGS=20"),
        (3.002, "sim0", "AT+CMGD=1"), (3.010, "sim1", "AT+CMSS=?"),
        (3.020, "sim1", "AT+CMGS=20"), (3.030, "sim0", "AT+CMGR=2"),
        (3.040, "sim0", "AT+CMGW=154,2"), (3.050, "sim0", "AT+CMSS=2"),
        (6.060, "sim0", "AT+CMSS=3")]))
    found = sorted(at_gaps.gaps(trace, 3.0), key=lambda g: (g[1], g[0]))
    assert [(m, round(g * 1000)) for g, m, _ in found] == [("sim0", 10), ("sim0", 50),
                                                            ("sim1", 10)]
    steps = next(b for g, m, b in found if m == "sim0" and round(g * 1000) == 50)
    assert [c for _, c in steps] == ["AT+CMGD=1", "AT+CMGR=2", "AT+CMGW=154,2", "AT+CMSS=2"]
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "at_gaps.py"), str(trace),
                          "--latency", "3"], capture_output=True, text=True, check=True)
    assert "3 gaps between two sends" in res.stdout and "median 10.0" in res.stdout


def test_bench_service_runs_every_step_against_a_real_store() -> None:
    res = subprocess.run([sys.executable, str(ROOT / "scripts" / "bench_service.py"),
                          "--messages", "40", "--modems", "2"],
                         capture_output=True, text=True, timeout=120, check=False)
    assert res.returncode == 0, res.stderr[-3000:]
    for step in ("inbound", "claim", "stored", "sent", "done", "report", "**total**"):
        assert f"| {step} |" in res.stdout
    assert "outbound {'delivered': 40}" in res.stdout
