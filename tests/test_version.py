"""One version everywhere: ``pyproject.toml`` is the single source, and every place that
shows a version shows that one (the Debian package's tests check the installed .deb too)."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

from tests.conftest import ROOT


def pyproject_version() -> str:
    with (ROOT / "pyproject.toml").open("rb") as fh:
        return str(tomllib.load(fh)["project"]["version"])


def test_version_module_reads_pyproject() -> None:
    from appliance import __version__
    assert __version__ == pyproject_version()


def test_cli_version_flag() -> None:
    proc = subprocess.run([sys.executable, "-m", "appliance", "--version"], cwd=ROOT,
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout == f"nsor-appliance {pyproject_version()}\n"


def test_version_without_pyproject_comes_from_package_metadata(tmp_path: Path) -> None:
    """An installed copy with no pyproject.toml beside it (and no metadata) says so plainly
    rather than inventing a number."""
    import shutil
    shutil.copytree(ROOT / "appliance", tmp_path / "appliance",
                    ignore=shutil.ignore_patterns("__pycache__"))
    proc = subprocess.run([sys.executable, "-c", "import appliance; print(appliance.__version__)"],
                          cwd=tmp_path, capture_output=True, text=True, timeout=60, check=False,
                          env=dict(os.environ, PYTHONPATH=str(tmp_path)))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "0+unknown"


def test_alarm_sms_header_carries_unit_and_version() -> None:
    from appliance.service.alarms import Alarms

    sent: list[tuple[str, str]] = []
    alarms = Alarms(sms_numbers=["+923009998877"], send_sms=lambda n, t: sent.append((n, t)),
                    header="NSOR unit-7 1.2.3")
    alarms.raise_("disk_full", "data disk 97% used")
    assert sent == [("+923009998877", "NSOR unit-7 1.2.3 alarm disk_full: data disk 97% used")]
