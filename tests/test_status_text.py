"""``nsor status`` fits an 80-column SSH session: pure rendering of a snapshot, and the real
command against a running service on simulated modems."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

from appliance import __version__
from appliance.status.text import render, short_age, short_error
from appliance.status.server import StatusServer
from tests.conftest import ROOT, wait_until, write_unit_toml
from tests.test_statuspage import live_unit  # noqa: F401  (a fixture)

NOW = 1_800_000_000.0
PORT = "/dev/serial/by-path/platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.1.2:1.2-port0"


def modem(name: str, **kw: Any) -> dict[str, Any]:
    m = {"name": name, "port": PORT, "state": "ready", "rssi": 17, "bars": 3,
         "operator": "Jazz", "queue": 0, "sent_hour": 12, "sent_day": 140, "hourly_cap": 100,
         "daily_cap": 1000, "unavailable": "", "last_error": "", "last_error_at": None,
         "since": NOW - 7200, "balance": 42.5, "balance_at": NOW - 300}
    m.update(kw)
    return m


def snapshot() -> dict[str, Any]:
    long_error = (f"modem sim1 ({PORT}): modem sim1 ({PORT}): could not open port {PORT}: "
                  f"[Errno 2] No such file or directory: '{PORT}'")
    return {
        "unit": "nsor-unit-rawalpindi-district-courts-01", "version": __version__,
        "time": NOW, "uptime_s": 93784, "source": "service",
        "modems": [
            modem("sim0", operator="Telenor Pakistan (Easypaisa) 2G/3G/4G LTE roaming"),
            modem("sim1", state="gone", since=NOW - 190, last_error=long_error,
                  last_error_at=NOW - 185, operator="Zong 4G"),
            modem("sim2", last_error="modem sim2: balance request *123# refused: +CME ERROR: 30",
                  last_error_at=NOW - 9000, sent_day=12345, daily_cap=100000),
            modem("verylongmodemname-number-03", state="no network", rssi=99, balance=None,
                  balance_at=None, unavailable="blocked for 1 h after 5 failed sends in a row"),
        ],
        "queue": {"pending": 1, "unassigned": 0},
        "registry": {"state": "ok", "version": 12, "records": 36, "age_s": 11000,
                     "max_age_s": 172800, "error": None,
                     "sync": {"last_attempt": "x", "consecutive_failures": 3,
                              "last_success": "2026-12-01T02:03:00+00:00",
                              "last_error": {"message": "connection refused by "
                                             "https://registry.example.gov.pk/nsor/metadata "
                                             "after 3 retries over 2 minutes"}}},
        "disk": {"path": "/var/lib/nsor", "total": 10**11, "used": 4 * 10**10,
                 "free": 6 * 10**10},
        "alarms": [{"kind": "modem_down:sim1", "since": NOW - 120, "count": 1,
                    "message": f"modem sim1 is gone since 120 s: {long_error}"}],
    }


def test_every_line_fits_80_columns() -> None:
    lines = [t.plain for t in render(snapshot(), 80, now=NOW)]
    print("\n".join(lines))
    assert all(len(line) <= 80 for line in lines), [line for line in lines if len(line) > 80]
    text = "\n".join(lines)
    assert text.count(PORT) == 0  # the long path never repeats on the narrow view
    gone = next(line for line in lines if line.startswith("sim1"))
    assert "gone 3m" in gone and "Zong" not in gone and " 3/5 " not in gone
    assert "  3m ago: could not open the port: [Errno 2]" in text
    # An old error on a modem that is ready again says so, with its age.
    assert "  before it was last ready, 2h ago: balance request *123# refused" in text
    assert "42.50 5m" in lines[2]
    assert "1 reply waiting" in text and "repl(ies)" not in text
    assert "out of rotation: blocked for 1 h" in text
    assert "ALARM modem_down:sim1 (2m): modem sim1 is gone" in text
    assert "ALARM modem_down:sim1 (2m): modem sim1 is gone since 120 s: modem sim1: coul" in text


def test_small_wording() -> None:
    assert [short_age(s) for s in (5, 125, 7300, 200000, None)] == ["5s", "2m", "2h", "2d", "?"]
    assert short_error({"name": "sim0", "port": "/dev/x",
                        "last_error": "modem sim0 (/dev/x): modem sim0: no answer on /dev/x"}) \
        == "no answer on the port"
    snap = snapshot()
    snap["registry"] = {"state": "missing", "version": None}
    snap["queue"] = {"pending": 0, "unassigned": 0}
    text = "\n".join(t.plain for t in render(snap, 80, now=NOW))
    assert "registry: missing, nothing installed" in text and "version None" not in text
    assert "queue: no replies waiting" in text


def test_status_command_at_80_columns(live_unit: tuple[Any, StatusServer], tmp_path: Path,
                                      sim: Any) -> None:
    svc, server = live_unit
    config = write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                             http_bind=f"127.0.0.1:{server.port}")
    env = dict(os.environ, COLUMNS="80")
    sim.modems[1].unplug()  # a real error, from the real engine
    assert wait_until(lambda: svc.modems[sim.modems[1].name].status().state == "gone", 20)
    proc = subprocess.run([sys.executable, "-m", "appliance", "status", "--config", str(config)],
                          cwd=ROOT, capture_output=True, text=True, timeout=60, env=env)
    sim.modems[1].replug()
    print(proc.stdout, proc.stderr)
    assert proc.returncode == 0 and "Traceback" not in proc.stderr
    lines = proc.stdout.splitlines()
    assert all(len(line) <= 80 for line in lines)
    assert sum(line.startswith("sim0 ") and "ready" in line for line in lines) == 1
    gone = next(i for i, line in enumerate(lines) if line.startswith("sim1 "))
    assert "gone" in lines[gone] and "Jazz" not in lines[gone] and "3/5" not in lines[gone]
    assert re.match(r"  \d+s ago: ", lines[gone + 1]) and sim.modems[1].port not in proc.stdout
    assert "registry: ok, version 1" in proc.stdout
    wide = subprocess.run([sys.executable, "-m", "appliance", "status", "--wide", "--config",
                           str(config)], cwd=ROOT, capture_output=True, text=True, timeout=60,
                          env=dict(os.environ, COLUMNS="160"))
    assert wide.returncode == 0 and "┃ port" in wide.stdout and "balance" in wide.stdout
    snap = json.loads(subprocess.run(
        [sys.executable, "-m", "appliance", "status", "--json", "--config", str(config)],
        cwd=ROOT, capture_output=True, text=True, timeout=60).stdout)
    assert snap["version"] and snap["modems"][0]["port"] == sim.modems[0].port


def test_an_upgrade_not_yet_restarted_says_so_in_80_columns() -> None:
    snap = snapshot()
    snap["version"] = "0.0.1"  # the release still running; this one is installed
    lines = [t.plain for t in render(snap, 80, now=NOW)]
    warn = [line for line in lines if "installed, 0.0.1 running" in line]
    assert len(warn) == 1 and warn[0].startswith(f"nsor-appliance {__version__}")
    assert all(len(line) <= 80 for line in lines)
    snap["source"] = "files"  # read from the files: nothing is running to compare with
    assert not any("running" in t.plain for t in render(snap, 80, now=NOW))


def test_split_replies_and_the_fleet_link_are_shown() -> None:
    snap = snapshot()
    snap["split_replies"] = 2
    snap["fleet"] = {"connected": False, "down_s": 600.0, "hits_waiting": 3,
                     "last_error": "cannot reach the broker"}
    lines = [t.plain for t in render(snap, 80, now=NOW)]
    text = "\n".join(lines)
    assert all(len(line) <= 80 for line in lines)
    assert "1 reply waiting; 2 replies split across SIMs" in text
    assert "fleet: not connected for 10m; 3 hit reports waiting; cannot reach the" in text
    snap["fleet"] = {"connected": True, "hits_waiting": 1}
    snap.pop("split_replies")
    text = "\n".join(t.plain for t in render(snap, 80, now=NOW))
    assert "fleet: connected; 1 hit report waiting" in text and "split" not in text
    # Without the link (the default), no fleet line at all.
    snap["fleet"] = None
    assert "fleet:" not in "\n".join(t.plain for t in render(snap, 80, now=NOW))
