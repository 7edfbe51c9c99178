"""The technician's commands as a technician runs them: ``python -m appliance …`` in a
subprocess, against simulated modems on real ptys and, where the command needs it, a real
running Service with its status page. No traceback may ever reach the terminal."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
import serial

from appliance.config import config_from_text
from appliance.service.alarms import DiskUsage, disk_alarm
from appliance.tools.doctor import FAIL, PASS, check_clock
from appliance.simulator.bank import ModemSpec, Simulator
from appliance.tools.probe import discover, stable_name
from appliance.status.server import StatusServer
from tests.conftest import FIRMWARE_CONFIG, ROOT, wait_until, write_unit_toml
from tests.test_statuspage import live_unit  # noqa: F401  (a fixture)
from appliance.outbox.table import ReplyTable

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened

TECHNICIAN = "+923009998877"


def nsor(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-m", "appliance", *args], cwd=ROOT, text=True,
                          capture_output=True, timeout=timeout,
                          env=dict(os.environ, COLUMNS="160"))
    print(f"$ nsor {' '.join(args)}  → exit {proc.returncode}\n{proc.stdout}{proc.stderr}")
    assert "Traceback" not in proc.stderr and "Traceback" not in proc.stdout, proc.stderr
    return proc


def closed_port() -> str:
    """A loopback address where nothing listens (the service 'not running')."""
    import socket
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return f"127.0.0.1:{s.getsockname()[1]}"


def sim_ports(sim: Any) -> list[tuple[str, str]]:
    return [(m.name, m.port) for m in sim.modems]


# -- probe -----------------------------------------------------------------------------------

def test_probe_reports_each_port_and_prints_a_config_block(tmp_path: Path) -> None:
    specs = [ModemSpec(), ModemSpec(pin="1234", operator="Zong"), ModemSpec()]
    with Simulator(tmp_path / "ports", specs, seed=2) as sim:
        sim.modems[2].faults.hang = True
        ports = [m.port for m in sim.modems]
        proc = nsor("probe", "--timeout", "0.5", "--ports", *ports, str(tmp_path / "nothing"))
        js = nsor("probe", "--json", "--timeout", "0.5", "--ports", ports[0])
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert sim.modems[0].imei in out and sim.modems[0].imsi in out and "SM 0/30" in out
    assert "SIM PIN" in out and "Jazz" in out
    assert f"{ports[2]}: does not answer AT" in out
    assert f"{tmp_path / 'nothing'}: not present" in out
    own, block = out.split("# In the [unit] table of /etc/nsor/appliance.toml:", 1)[1] \
        .split("# At the end of /etc/nsor/appliance.toml:", 1)
    assert f'own_numbers = ["{sim.modems[0].number}"]' in own  # sim1's SIM waits for a PIN
    assert "the SIM of sim1 does not store its own number" in own
    assert f'port = "{ports[0]}"' in block and f'port = "{ports[1]}"' in block
    assert ports[2] not in block and 'pin = "0000"' in block
    config = config_from_text(f'[unit]\ndata_dir = "{tmp_path}"\n' + block, base_dir=tmp_path)
    assert [m.name for m in config.modems] == ["sim0", "sim1"]
    found = json.loads(js.stdout)["ports"][0]
    assert found["imei"] == sim.modems[0].imei and found["registered"] is True
    assert found["sim"] == "READY" and found["sms_total"] == 30 and found["bars"] == 3


def test_probe_with_the_config_keeps_its_names_and_numbers(tmp_path: Path, sim: Any) -> None:
    config = write_unit_toml(tmp_path, [("north", sim.modems[0].port)],
                             own_numbers=["+923331112223"])
    proc = nsor("probe", "--timeout", "0.5", "--config", str(config),
                "--ports", sim.modems[0].port, sim.modems[1].port)
    assert proc.returncode == 0, proc.stderr
    own, block = proc.stdout.split(f"# In the [unit] table of {config}:", 1)[1] \
        .split(f"# At the end of {config}:", 1)
    assert (f'own_numbers = ["+923331112223", "{sim.modems[0].number}", '
            f'"{sim.modems[1].number}"]') in own
    assert f"# north ({sim.modems[0].port}) is already in the configuration" in block
    assert f'name = "sim1"\nport = "{sim.modems[1].port}"' in block
    # Pasted where the lines say, the configuration is valid and has both modems.
    text = config.read_text().replace('own_numbers = ["+923331112223"]', own.strip())
    merged = config_from_text(text + "\n" + block, base_dir=tmp_path)
    assert [m.name for m in merged.modems] == ["north", "sim1"]
    assert len(merged.unit.own_numbers) == 3


def test_probe_names_modems_as_the_shipped_configuration_does() -> None:
    from appliance.tools.probe import modem_name

    assert modem_name("/dev/nsor/modem0", set()) == "sim0"
    assert modem_name("/dev/nsor/modem4", set()) == "sim4"
    assert modem_name("/dev/nsor/modem-uart0", set()) == "sim-uart0"
    assert modem_name("/dev/serial/by-path/platform-x:1.2-port0", {"sim0"}) == "sim1"
    shipped = config_from_text((FIRMWARE_CONFIG / "appliance.toml").read_text(),
                               base_dir=FIRMWARE_CONFIG)
    assert [(m.name, modem_name(m.port, set())) for m in shipped.modems] == \
        [(m.name, m.name) for m in shipped.modems]


def test_probe_with_nothing_answering_says_so(tmp_path: Path) -> None:
    proc = nsor("probe", "--ports", str(tmp_path / "ttyUSB9"))
    assert proc.returncode == 1
    assert "not present" in proc.stdout and "No port answered AT" in proc.stdout


def test_stable_names_are_preferred(tmp_path: Path) -> None:
    dev = tmp_path / "ttyUSB3"
    dev.touch()
    nsor_dir, by_path = tmp_path / "nsor", tmp_path / "by-path"
    nsor_dir.mkdir()
    by_path.mkdir()
    (by_path / "platform-usb-0:1.2:1.2-port0").symlink_to(dev)
    (nsor_dir / "modem1").symlink_to(dev)
    (tmp_path / "ttyUSB4").touch()
    dirs = (nsor_dir, by_path)
    assert stable_name(str(dev), dirs) == str(nsor_dir / "modem1")
    assert stable_name(str(by_path / "platform-usb-0:1.2:1.2-port0"), dirs) == \
        str(nsor_dir / "modem1")
    assert stable_name(str(tmp_path / "ttyUSB4"), dirs) == str(tmp_path / "ttyUSB4")
    assert stable_name("spy:///dev/ttyUSB3", dirs) == "spy:///dev/ttyUSB3"
    assert discover([str(tmp_path / "ttyUSB*"), "loop://"], dirs) == \
        [str(dev), str(tmp_path / "ttyUSB4"), "loop://"]


# -- doctor ----------------------------------------------------------------------------------

def doctor_lines(proc: subprocess.CompletedProcess[str]) -> list[str]:
    return [line for line in proc.stdout.splitlines() if line[:4] in ("PASS", "WARN", "FAIL",
                                                                      "INFO")]


def test_doctor_healthy_unit_passes(tmp_path: Path, sim: Any, sample_registry: Path) -> None:
    from appliance.state.secret import load_or_create_secret

    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=closed_port())
    load_or_create_secret(tmp_path / "data" / "secret.key")
    proc = nsor("doctor", "--config", str(config))
    lines = doctor_lines(proc)
    assert proc.returncode == 0, proc.stdout
    assert not [line for line in lines if line.startswith(FAIL)]
    for what in ("modem sim0: port", "modem sim0: answers AT", "modem sim1: SIM",
                 "modem sim1: network", "registry: fresh", "clock", "disk", "secret"):
        assert any(line.startswith(PASS) and f"  {what}:" in line for line in lines), what
    assert "opening the ports directly" in proc.stdout


def test_doctor_names_each_failure_with_its_fix(tmp_path: Path, sim: Any,
                                                sample_registry: Path) -> None:
    held = serial.Serial(sim.modems[1].port, exclusive=True)
    try:
        config = write_unit_toml(tmp_path, sim_ports(sim) + [("usb3", "/dev/nsor/modem3")],
                              http_bind=closed_port())
        (tmp_path / "data" / "secret.key").write_text("0" * 64 + "\n")
        os.chmod(tmp_path / "data" / "secret.key", 0o644)
        proc = nsor("doctor", "--config", str(config))
    finally:
        held.close()
    assert proc.returncode == 1
    out = proc.stdout
    assert "FAIL  modem usb3: port: /dev/nsor/modem3 is not present\n      fix: check the " \
           "cable" in out
    assert f"FAIL  modem sim1: port: {sim.modems[1].port} is held by another process" in out
    assert "sudo systemctl mask ModemManager" in out
    assert "PASS  modem sim0: network" in out
    assert "FAIL  secret:" in out and "sudo chmod 600" in out
    assert "3 checks failed." in out


def test_doctor_reports_every_config_problem(tmp_path: Path) -> None:
    config = tmp_path / "appliance.toml"
    config.write_text('[unit]\nnmae = "x"\n[[modems]]\nname = "Bad Name"\nport = "ttyUSB0"\n')
    proc = nsor("doctor", "--config", str(config))
    fails = [line for line in doctor_lines(proc) if line.startswith(FAIL)]
    assert proc.returncode == 1 and len(fails) >= 3, proc.stdout
    assert any("nmae" in line and "did you mean" in line for line in fails)


def test_doctor_takes_modem_facts_from_the_running_service(
        live_unit: tuple[Any, StatusServer], tmp_path: Path, sim: Any) -> None:
    _, server = live_unit
    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=f"127.0.0.1:{server.port}")
    proc = nsor("doctor", "--config", str(config))
    # The service holds both ports with an exclusive lock: a doctor that opened them
    # would report them held. It must not even try.
    assert "held by another process" not in proc.stdout
    assert "PASS  modem sim0: in service" in proc.stdout
    assert "PASS  modem sim1: in service" in proc.stdout
    assert "ports are not opened" in proc.stdout


def test_disk_alarm_and_clock_checks_are_pure() -> None:
    gib = 1 << 30
    assert disk_alarm(DiskUsage(100 * gib, 50 * gib, 45 * gib), 90) is None
    text = disk_alarm(DiskUsage(100 * gib, 93 * gib, 2 * gib), 90, "/var/lib/nsor")
    assert text is not None and "/var/lib/nsor is 98% full" in text and "journalctl" in text
    skew = timedelta(minutes=10)
    signed = datetime(2025, 6, 1, tzinfo=timezone.utc)
    assert check_clock(datetime(1970, 1, 1, tzinfo=timezone.utc), None, skew).level == FAIL
    assert check_clock(signed - timedelta(hours=1), signed, skew).level == FAIL
    assert check_clock(signed + timedelta(hours=1), signed, skew).level == PASS


# -- status ----------------------------------------------------------------------------------

def test_status_from_the_running_service(live_unit: tuple[Any, StatusServer], tmp_path: Path,
                                         sim: Any) -> None:
    _, server = live_unit
    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=f"127.0.0.1:{server.port}")
    proc = nsor("status", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    rows = [line for line in proc.stdout.splitlines() if line.startswith(("sim0 ", "sim1 "))]
    assert len(rows) == 2 and all("ready" in r and "Jazz" in r and "3/5" in r for r in rows)
    assert "registry: ok, version 1" in proc.stdout and ", up " in proc.stdout
    from appliance import __version__
    assert f"version {__version__}" in proc.stdout
    snap = json.loads(nsor("status", "--json", "--config", str(config)).stdout)
    assert snap["source"] == "service" and len(snap["modems"]) == 2
    assert snap["version"] == __version__


def test_status_without_the_service_reads_the_files(tmp_path: Path, sim: Any,
                                                    sample_registry: Path) -> None:
    from appliance.state.store import Store

    store = Store(tmp_path / "data" / "state.db")
    replies.queue_reply(recipient="+923001234567", text="x", parts=1, preferred_modem="sim1")
    store.close()
    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=closed_port())
    proc = nsor("status", "--config", str(config))
    assert proc.returncode == 3
    assert proc.stdout.startswith("service not running")
    assert "1 reply waiting" in proc.stdout and "registry: ok, version 1" in proc.stdout
    from appliance import __version__
    assert f"version {__version__}" in proc.stdout
    row = next(line for line in proc.stdout.splitlines() if line.startswith("sim1 "))
    assert "not running" in row and row.split()[5] == "1"


# -- send-test -------------------------------------------------------------------------------

def test_send_test_goes_out_through_the_chosen_modem(live_unit: tuple[Any, StatusServer],
                                                     tmp_path: Path, sim: Any) -> None:
    _, server = live_unit
    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=f"127.0.0.1:{server.port}")
    proc = nsor("send-test", TECHNICIAN, "--modem", "sim1", "--text", "hello from the unit",
                "--wait", "30", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SENT by modem sim1" in proc.stdout
    assert sim.wait_for(lambda: sim.inbox(TECHNICIAN) == ["hello from the unit"], 10)
    assert {s.modem for s in sim.submitted} == {"sim1"}


def test_send_test_without_the_service_stays_queued(tmp_path: Path, sim: Any) -> None:
    from appliance.state.store import Store

    Store(tmp_path / "data" / "state.db").close()
    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=closed_port())
    proc = nsor("send-test", "0300-9998877", "--config", str(config))
    assert proc.returncode == 3
    assert "service not running" in proc.stdout and "stays queued" in proc.stdout
    with sqlite3.connect(tmp_path / "data" / "state.db") as db:
        rows = db.execute("SELECT recipient, kind, status FROM outbound").fetchall()
    assert rows == [(TECHNICIAN, "test", "queued")]


def test_send_test_refuses_an_unknown_modem(tmp_path: Path, sim: Any) -> None:
    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=closed_port())
    proc = nsor("send-test", TECHNICIAN, "--modem", "sim7", "--config", str(config))
    assert proc.returncode != 0
    assert "sim7" in proc.stderr and "sim0, sim1" in proc.stderr
    assert not (tmp_path / "data" / "state.db").exists()


def test_doctor_warns_about_what_the_operator_must_fill_in(tmp_path: Path) -> None:
    """The shipped files carry a DEMO trusted root, no repository URL and a placeholder
    correction number: fine for the demo, wrong for a unit in the field."""
    from appliance.tools.doctor import FAIL as FAIL_, WARN, _deployment
    from appliance.config import config_from_dict

    demo = config_from_dict({"replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml")},
                             "registry": {"trusted_root":
                                          str(FIRMWARE_CONFIG / "registry_root.json")}},
                            base_dir=tmp_path)
    found = {c.what: c.level for c in _deployment(demo)}
    assert found == {"registry: trusted root": WARN, "registry: sync": WARN,
                     "replies: correction number": WARN, "unit: own numbers": WARN}
    found = {c.what: c.level for c in _deployment(demo, field=True)}
    assert set(found.values()) == {FAIL_} and len(found) == 4
    replies = tmp_path / "replies.toml"
    replies.write_text((FIRMWARE_CONFIG / "replies.toml").read_text(encoding="utf-8")
                       .replace("0800-00000", "0800-12345"), encoding="utf-8")
    live = config_from_dict({"replies": {"templates": str(replies)},
                             "unit": {"own_numbers": ["+923001234567"]},
                             "registry": {"repository_url": "https://registry.example/nsor",
                                          "trusted_root": str(tmp_path / "missing.json")}},
                            base_dir=tmp_path)
    found = {c.what: c.level for c in _deployment(live)}
    assert found == {"registry: trusted root": FAIL_}


def test_doctor_field_profile_fails_a_unit_not_ready_for_site(tmp_path: Path, sim: Any,
                                                              sample_registry: Path) -> None:
    """The shipped demo root, no repository, the placeholder correction number, the sample
    registry and no own_numbers: a rehearsal may have them (WARN), a unit on site may not."""
    from appliance.tools.doctor import INSTALLED_CONFIG, field_profile
    from appliance.state.secret import load_or_create_secret

    config = write_unit_toml(tmp_path, sim_ports(sim), http_bind=closed_port(), extra=(
        f'[registry]\ntrusted_root = "{FIRMWARE_CONFIG / "registry_root.json"}"\n'))
    load_or_create_secret(tmp_path / "data" / "secret.key")
    field = nsor("doctor", "--field", "--config", str(config))
    fails = [line for line in doctor_lines(field) if line.startswith(FAIL)]
    assert field.returncode == 1 and field.stdout.startswith("profile: field")
    for what in ("registry: trusted root: is the DEMO root", "registry: sync: repository_url "
                 "is empty", "replies: correction number: still the placeholder",
                 "registry: verified: is the SAMPLE registry", "unit: own numbers"):
        assert any(f"  {what}" in line for line in fails), what
    assert len(fails) == 5, fails
    lab = nsor("doctor", "--config", str(config))  # not the installed file: a rehearsal
    assert lab.returncode == 0 and lab.stdout.startswith("profile: lab")
    assert not [line for line in doctor_lines(lab) if line.startswith(FAIL)]
    assert "WARN  registry: verified: is the SAMPLE registry" in lab.stdout
    assert field_profile(INSTALLED_CONFIG) and not field_profile(config)
    assert not field_profile(INSTALLED_CONFIG, False) and field_profile(config, True)
