"""The registry commands, driven through the parser that ``add_parsers`` builds."""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
from pathlib import Path

import pytest

from appliance.registry.cli import add_parsers
from appliance.registry.importer import SAMPLE_REGISTRY, demo_cnics
from tests.test_registry_support import Server, people, write_export

ROOT = Path(__file__).resolve().parent.parent


def run(*argv: str | Path) -> int:
    parser = argparse.ArgumentParser(prog="python -m appliance")
    add_parsers(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args([str(a) for a in argv])
    return int(args.func(args))


def test_import_info_lookup(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = tmp_path / "registry.db"
    assert run("registry", "import", SAMPLE_REGISTRY, "--db", db, "--version", "3") == 0
    assert ": 36 active, 4 removed (never answered)" in capsys.readouterr().out
    assert run("registry", "info", "--db", db) == 0
    table = capsys.readouterr().out
    assert "active records" in table and "record_count" not in table
    assert run("registry", "info", "--db", db, "--json") == 0
    info = json.loads(capsys.readouterr().out)
    assert info["version"] == 3 and info["record_count"] == 36 and info["stale"] is False
    hit = demo_cnics().hits[0]
    dashed = f"{hit[:5]}-{hit[5:12]}-{hit[12]}"
    assert run("registry", "lookup", dashed, "--db", db) == 0
    assert "Test Person Alpha s/o Test Father Alpha" in capsys.readouterr().out
    assert run("registry", "lookup", demo_cnics().removed[0], "--db", db) == 0
    assert "no active record" in capsys.readouterr().out
    assert run("registry", "lookup", "12345", "--db", db) == 2
    assert run("registry", "info", "--db", tmp_path / "none.db") == 1


def test_errors_are_one_line_not_a_traceback(tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("cnic,relation\n1,x\n")
    assert run("registry", "import", bad, "--db", tmp_path / "r.db") == 1
    err = capsys.readouterr().err
    assert err.startswith("error: export") and "Traceback" not in err


def test_publish_then_sync_then_status(tmp_path: Path,
                                       capsys: pytest.CaptureFixture[str]) -> None:
    repo, keys, root = tmp_path / "repo", tmp_path / "keys", tmp_path / "root.json"
    common = ("--repo", repo, "--keys", keys)
    assert run("registry", "keys", "init", *common, "--export-root", root) == 0
    export = write_export(tmp_path / "e.csv", people(12))
    assert run("registry", "publish", export, *common) == 0
    assert "published version 1: 12 records" in capsys.readouterr().out
    assert run("registry", "keys", "timestamp", *common, "--timestamp-days", "1") == 0
    assert run("registry", "keys", "rotate", "timestamp", *common) == 0
    assert run("registry", "keys", "export-root", tmp_path / "root2.json", *common) == 0
    capsys.readouterr()
    server = Server(repo / "public")
    try:
        db = tmp_path / "unit" / "registry.db"
        unit = ("--db", db, "--url", server.url, "--root", root)
        assert run("sync", *unit, "--no-progress") == 0
        assert "installed snapshot version 1 (12 records" in capsys.readouterr().out
        assert run("registry", "status", "--db", db, "--json") == 0
        status = json.loads(capsys.readouterr().out)
        assert status["healthy"] and status["version"] == 1
    finally:
        server.close()
    assert run("sync", *unit, "--no-progress") == 1                 # server now gone
    assert "network failure" in capsys.readouterr().err
    assert run("registry", "status", "--db", db, "--json") == 1


def test_publish_script_is_the_same_command(tmp_path: Path) -> None:
    script = ROOT / "scripts" / "publish_registry.py"
    common = ["--repo", str(tmp_path / "repo"), "--keys", str(tmp_path / "keys")]
    subprocess.run([sys.executable, script, "keys", "init", *common], check=True,
                   capture_output=True)
    export = write_export(tmp_path / "e.csv", people(3))
    out = subprocess.run([sys.executable, script, "publish", str(export), *common],
                         check=True, capture_output=True, text=True).stdout
    assert "published version 1: 3 records" in out


@pytest.mark.slow
def test_benchmark_smoke_mode(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, ROOT / "scripts" / "bench_registry.py", "--records", "20000",
         "--changes", "2000", "--lookups", "10000", "--dir", str(tmp_path)],
        check=True, capture_output=True, text=True, timeout=600).stdout
    for label in ("snapshot sync", "lookup p50", "delta sync", "peak RSS"):
        assert label in out
