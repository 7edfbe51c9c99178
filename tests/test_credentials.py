"""Credentials in ``registry.repository_url`` never reach a log line, the status output, an
alarm or an error message."""

from __future__ import annotations

import io
import json
import logging
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from appliance.service.alarms import Alarms
from appliance.config.credentials import RedactingFormatter, redact_credentials, redact_tree
from tests.conftest import FIRMWARE_CONFIG, ROOT, unit_config

PASSWORD = "hunter2-Xq9"
URL = f"http://nsor:{PASSWORD}@127.0.0.1:9/repo"


@pytest.mark.parametrize("text, want", [
    ("sync from https://u:p@repo.example/x failed", "sync from https://***@repo.example/x failed"),
    ("https://token@repo.example", "https://***@repo.example"),
    ("https://u:p@ss@repo.example/a", "https://***@repo.example/a"),   # "@" in the password
    ("a http://u:p@h1/ and ftp://v:q@h2", "a http://***@h1/ and ftp://***@h2"),
    ("https://repo.example/path@v2", "https://repo.example/path@v2"),  # "@" in the path only
    ("mail nsor@example.org", "mail nsor@example.org"),
    ("no url at all", "no url at all"),
])
def test_redact_credentials(text: str, want: str) -> None:
    assert redact_credentials(text) == want


def test_redact_tree_reaches_nested_strings() -> None:
    snap = {"registry": {"source": URL, "sync": {"last_error": {"message": f"from {URL}"}}},
            "alarms": [{"message": URL}], "n": 3, "t": (URL,)}
    assert PASSWORD not in json.dumps(redact_tree(snap))
    assert redact_tree(snap)["n"] == 3


def test_log_lines_and_tracebacks_are_redacted() -> None:
    out = io.StringIO()
    handler = logging.StreamHandler(out)
    handler.setFormatter(RedactingFormatter(logging.Formatter("%(message)s")))
    logger = logging.getLogger("test_credentials")
    logger.addHandler(handler)
    try:
        logger.error("sync from %s failed", URL)
        try:
            raise ConnectionError(f"cannot reach {URL}")
        except ConnectionError:
            logger.exception("boom")
    finally:
        logger.removeHandler(handler)
    text = out.getvalue()
    assert PASSWORD not in text and "http://***@127.0.0.1:9/repo" in text
    assert "ConnectionError" in text


def test_alarms_keep_and_send_only_the_redacted_message() -> None:
    sent: list[str] = []
    alarms = Alarms(sms_numbers=("+923001112233",), send_sms=lambda n, t: sent.append(t))
    alarms.raise_("registry_sync", f"registry sync from {URL} failed")
    assert PASSWORD not in alarms.active()[0].message and PASSWORD not in sent[0]


def test_service_status_snapshot_is_redacted(tmp_path: Path, sim: Any) -> None:
    from appliance.registry.importer import SAMPLE_REGISTRY, import_file
    from appliance.service.unit import Service

    registry = tmp_path / "data" / "registry.db"
    registry.parent.mkdir(parents=True)
    import_file(SAMPLE_REGISTRY, registry, version=1, source=URL)
    svc = Service(unit_config(tmp_path, sim))   # not started: the snapshot is enough
    try:
        svc.alarms.raise_("registry_sync", f"sync from {URL} failed")
        snap = svc.snapshot()
    finally:
        svc.stop()
    assert snap["registry"]["source"] == "http://***@127.0.0.1:9/repo"
    assert PASSWORD not in json.dumps(snap, default=str)


def _unit(tmp_path: Path) -> Path:
    path = tmp_path / "appliance.toml"
    path.write_text(f"""
[unit]
data_dir = "{tmp_path / 'data'}"
[registry]
repository_url = "{URL}"
trusted_root = "{FIRMWARE_CONFIG / 'registry_root.json'}"
[replies]
templates = "{FIRMWARE_CONFIG / 'replies.toml'}"
[status]
http_bind = ""
""")
    return path


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "appliance", *args], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture
def failed_sync(tmp_path: Path) -> tuple[Path, subprocess.CompletedProcess[str]]:
    """A real sync against a closed port on 127.0.0.1, with credentials in the URL."""
    config = _unit(tmp_path)
    return config, _run("sync", "--config", str(config))


def test_status_after_a_failed_sync_shows_no_password(
        failed_sync: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    config, sync = failed_sync
    assert sync.returncode != 0
    # The journal's lines (the service's logging setup) carry the redacted URL only.
    log_lines = [line for line in sync.stderr.splitlines() if not line.startswith("error:")]
    assert any("http://***@127.0.0.1:9/repo" in line for line in log_lines)
    assert not any(PASSWORD in line for line in log_lines)
    status = _run("status", "--json", "--config", str(config))
    assert "http://***@127.0.0.1:9/repo" in status.stdout
    assert PASSWORD not in status.stdout + status.stderr
    doctor = _run("doctor", "--config", str(config))
    assert PASSWORD not in doctor.stdout + doctor.stderr


def test_a_config_error_does_not_echo_the_password(tmp_path: Path) -> None:
    config = _unit(tmp_path)
    config.write_text(config.read_text().replace("http://", "gopher://"))
    result = _run("status", "--config", str(config))
    assert result.returncode == 2 and "repository_url" in result.stderr
    assert PASSWORD not in result.stderr


def test_sync_error_line_and_status_file_hold_no_password(
        failed_sync: tuple[Path, subprocess.CompletedProcess[str]]) -> None:
    config, sync = failed_sync
    status_file = config.parent / "data" / "registry.status.json"
    assert PASSWORD not in sync.stderr + status_file.read_text()
