"""firmware_config/: the systemd unit, udev rules and Raspberry Pi boot fragments.

What a unit is flashed with is checked by the tools that will read it where this machine
has them (``systemd-analyze verify``, udev's own rules parser), and otherwise by careful
checks of what those tools would refuse. Each tool-based check first proves on a broken
copy that it notices breakage, so a check that cannot see anything is skipped, not passed.
"""

from __future__ import annotations

import fnmatch
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
FIRMWARE = REPO / "firmware_config"
UNIT = FIRMWARE / "nsor-appliance.service"
RULES = FIRMWARE / "99-nsor-modems.rules"
PROVISION = REPO / "scripts" / "provision.sh"

Ini = dict[str, dict[str, list[str]]]


def parse_systemd_ini(text: str) -> Ini:
    """systemd's unit/config syntax: sections, repeatable keys, # and ; comments."""
    sections: Ini = {}
    current: dict[str, list[str]] | None = None
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line[0] in "#;":
            continue
        assert not line.endswith("\\"), f"line {number}: continuation lines are not used here"
        if line.startswith("[") and line.endswith("]"):
            current = sections.setdefault(line[1:-1], {})
            continue
        assert current is not None and "=" in line, f"line {number}: {raw!r}"
        key, value = line.split("=", 1)
        current.setdefault(key.strip(), []).append(value.strip())
    return sections


def seconds(value: str) -> float:
    """A systemd time span such as ``30s``, ``2min`` or ``5`` (plain seconds)."""
    units = {"": 1, "s": 1, "sec": 1, "min": 60, "m": 60, "h": 3600}
    match = re.fullmatch(r"(\d+(?:\.\d+)?)\s*([a-z]*)", value)
    assert match and match.group(2) in units, f"unexpected time span {value!r}"
    return float(match.group(1)) * units[match.group(2)]


def unit() -> Ini:
    return parse_systemd_ini(UNIT.read_text())


# --- the systemd unit -------------------------------------------------------------------

def analyze_verify(path: Path) -> str:
    proc = subprocess.run(["systemd-analyze", "verify", str(path)], capture_output=True,
                          text=True, timeout=60, check=False)
    return (proc.stdout + proc.stderr).strip() + ("" if proc.returncode == 0
                                                  else f"\n(exit {proc.returncode})")


def runnable_copy(directory: Path, text: str) -> Path:
    """The unit with ExecStart= pointing at /bin/true.

    ``systemd-analyze verify`` checks that the ExecStart binary exists and is executable;
    /usr/lib/nsor-appliance/venv/bin/python exists only on an installed unit. Everything else is kept.
    """
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / UNIT.name
    path.write_text(re.sub(r"(?m)^ExecStart=.*$", "ExecStart=/bin/true", text))
    return path


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_unit_passes_systemd_analyze_verify(tmp_path: Path) -> None:
    control = analyze_verify(runnable_copy(tmp_path / "control",
                                           "[Service]\nExecStart=/bin/true\n"))
    if control:
        pytest.skip(f"systemd-analyze verify cannot run here (a minimal unit gives: {control})")
    typo = analyze_verify(runnable_copy(tmp_path / "typo", UNIT.read_text().replace(
        "WatchdogSec=", "WatchdogSecs=")))
    # verify exits 0 on an unknown key; that it says something is the real signal.
    assert "WatchdogSecs" in typo, "the harness must notice a misspelt key"
    assert analyze_verify(runnable_copy(tmp_path / "unit", UNIT.read_text())) == ""


@pytest.mark.skipif(shutil.which("systemd-analyze") is None, reason="systemd-analyze absent")
def test_unit_hardening_exposure_is_low(tmp_path: Path) -> None:
    path = runnable_copy(tmp_path, UNIT.read_text())
    proc = subprocess.run(["systemd-analyze", "security", "--offline=yes", "--no-pager",
                           str(path)], capture_output=True, text=True, timeout=60,
                          check=False)
    match = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", proc.stdout)
    if match is None:
        pytest.skip(f"systemd-analyze security --offline unsupported here: {proc.stderr}")
    # 10 is an unhardened service; systemd calls below 2 "OK". A serial-port service that
    # needs the network and a supplementary group cannot reach the "SAFE" band.
    assert float(match.group(1)) <= 2.5, proc.stdout


def test_unit_has_the_settings_the_issue_requires() -> None:
    u = unit()
    service, section = u["Service"], u["Unit"]
    required = {
        "Type": "notify", "NotifyAccess": "main", "Restart": "on-failure", "User": "nsor",
        "SupplementaryGroups": "dialout", "ProtectSystem": "strict",
        "ReadWritePaths": "/var/lib/nsor", "NoNewPrivileges": "yes", "PrivateTmp": "yes",
        "ProtectHome": "yes", "DevicePolicy": "closed",
        "ExecStart": "/usr/lib/nsor-appliance/venv/bin/python -m appliance run "
                     "--config /etc/nsor/appliance.toml",
    }
    wrong = {k: service.get(k) for k, v in required.items() if service.get(k) != [v]}
    assert not wrong, wrong
    assert seconds(service["WatchdogSec"][0]) == 30
    assert seconds(service["RestartSec"][0]) == 5
    assert set(service["DeviceAllow"]) == {"char-ttyUSB rw", "char-ttyACM rw", "char-ttyAMA rw"}
    assert "PrivateDevices" not in service, "it would hide the modems"
    after = " ".join(section["After"]).split()
    assert {"time-sync.target", "network-online.target"} <= set(after)
    assert "time-sync.target" in " ".join(section["Wants"]).split()
    # After= without Wants= orders against a target that is never started
    assert "network-online.target" in " ".join(section["Wants"]).split()
    assert section["RequiresMountsFor"] == ["/var/lib/nsor"]
    assert u["Install"]["WantedBy"] == ["multi-user.target"]


def provision_constants() -> dict[str, str]:
    return dict(re.findall(r'(?m)^readonly (\w+)=([^\s(]+)$', PROVISION.read_text()))


def test_unit_and_provisioning_agree_on_paths() -> None:
    consts = provision_constants()
    service = unit()["Service"]
    exec_start = service["ExecStart"][0]
    assert exec_start.startswith(consts["VENV_DIR"] + "/bin/python ")
    assert exec_start.endswith(f"--config {consts['ETC_DIR']}/appliance.toml")
    assert service["WorkingDirectory"] == [consts["APP_DIR"]]
    assert service["ReadWritePaths"] == [consts["DATA_DIR"]]
    assert service["User"] == [consts["SERVICE_USER"]]
    assert consts["UNIT_FILE"].endswith("/" + UNIT.name)


def test_serial_drivers_load_before_the_device_policy_needs_them() -> None:
    modules = [line.strip() for line in
               (FIRMWARE / "modules-load.d/nsor-serial.conf").read_text().splitlines()
               if line.strip() and not line.startswith("#")]
    # char-ttyUSB is registered by usbserial, char-ttyACM by cdc_acm; ttyAMA is built in.
    assert modules == ["usbserial", "cdc_acm"]


# --- udev rules -------------------------------------------------------------------------

MATCH_KEYS = {"ACTION", "DEVPATH", "KERNEL", "KERNELS", "NAME", "SYMLINK", "SUBSYSTEM",
              "SUBSYSTEMS", "DRIVER", "DRIVERS", "ATTR", "ATTRS", "SYSCTL", "TAG", "TAGS",
              "ENV", "CONST", "TEST", "PROGRAM", "RESULT"}
ASSIGN_KEYS = {"NAME", "SYMLINK", "OWNER", "GROUP", "MODE", "SECLABEL", "ATTR", "SYSCTL",
               "ENV", "TAG", "RUN", "LABEL", "GOTO", "IMPORT", "OPTIONS"}
TOKEN = re.compile(r'(?P<key>[A-Z_]+)(?:\{(?P<attr>[^}]+)\})?(?P<op>==|!=|\+=|-=|:=|=)'
                   r'"(?P<value>[^"]*)"')

Token = tuple[str, str, str, str]  # key, attribute, operator, value


def parse_rules(text: str) -> list[tuple[int, list[Token]]]:
    """Each rule line as (line number, tokens); a malformed line fails the test."""
    rules = []
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        assert not line.endswith("\\"), f"line {number}: no continuation lines"
        tokens, pos = [], 0
        while True:
            match = TOKEN.match(line, pos)
            assert match, f"line {number}: cannot parse at {line[pos:]!r}"
            key, attr, op, value = match.group("key", "attr", "op", "value")
            allowed = MATCH_KEYS if op in ("==", "!=") else ASSIGN_KEYS
            assert key in allowed, f"line {number}: {key} cannot take {op}"
            tokens.append((key, attr or "", op, value))
            pos = match.end()
            if pos == len(line):
                break
            separator = re.compile(r"\s*,\s*").match(line, pos)
            assert separator and separator.end() > pos, f"line {number}: missing comma"
            pos = separator.end()
        rules.append((number, tokens))
    return rules


def is_control_flow(tokens: list[Token]) -> bool:
    return all(key in ("GOTO", "LABEL") for key, _, op, _ in tokens if op not in ("==", "!="))


@pytest.mark.parametrize("line", [
    'KERNEL="ttyUSB0", SYMLINK+="nsor/x"',             # assignment to a match-only key
    'ENV{ID_PATH}=="a" SYMLINK+="nsor/x"',             # missing comma
    'SUBSYSTEM=="tty", SYMLNK+="nsor/x"',              # misspelt key
    'KERNEL=="ttyUSB0", SYMLINK+="nsor/x',             # unclosed quote
])
def test_rule_checker_rejects_what_udev_would(line: str) -> None:
    with pytest.raises(AssertionError):
        parse_rules(line)


def test_every_rule_parses_and_keeps_modemmanager_away() -> None:
    rules = parse_rules(RULES.read_text())
    labels = {value for _, tokens in rules for key, _, _, value in tokens if key == "LABEL"}
    for number, tokens in rules:
        for key, _, _, value in tokens:
            if key == "GOTO":
                assert value in labels, f"line {number}: GOTO to unknown label {value}"
        if not is_control_flow(tokens):
            assert ("ENV", "ID_MM_DEVICE_IGNORE", "=", "1") in tokens, \
                f"line {number} does not set ENV{{ID_MM_DEVICE_IGNORE}}=\"1\""


def evaluate(rules: list[tuple[int, list[Token]]], device: dict[str, str]) -> dict[str, str]:
    """Run the rules over one device as udev does for the keys used here.

    ``device`` holds KERNEL, SUBSYSTEM, ACTION and the ENV properties earlier rules
    (60-serial.rules) set. Patterns are shell globs with ``|`` alternatives (udev(7)).
    Returns the properties afterwards, with the links made under ``SYMLINK``.
    """
    env, links = dict(device), []
    labels = {value: i for i, (_, tokens) in enumerate(rules)
              for key, _, _, value in tokens if key == "LABEL"}
    i = 0
    while i < len(rules):
        tokens = rules[i][1]
        i += 1
        matched = True
        for key, attr, op, value in tokens:
            if op in ("==", "!="):
                actual = env.get(attr if key == "ENV" else key, "")
                hit = any(fnmatch.fnmatchcase(actual, p) for p in value.split("|"))
                if hit != (op == "=="):
                    matched = False
                    break
        if not matched:
            continue
        for key, attr, op, value in tokens:
            if key == "ENV" and op == "=":
                env[attr] = value
            elif key == "SYMLINK" and op == "+=":
                # udev(7) substitutions: $env{KEY} is a property of the device
                links.append(re.sub(r"\$env\{(\w+)\}", lambda m: env.get(m.group(1), ""),
                                    value))
            elif key == "GOTO":
                i = labels[value]
    env["SYMLINK"] = " ".join(links)
    return env


PI4_HUB_PORT = "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.1.{slot}:1.{interface}"


def path_tag(id_path: str) -> str:
    """ID_PATH_TAG as udev's path_id builtin makes it: every character outside
    [A-Za-z0-9-] becomes "_" (src/udev/udev-builtin-path_id.c)."""
    return re.sub(r"[^A-Za-z0-9-]", "_", id_path)


def usb_port(kernel: str, slot: int, interface: int, vendor: str, model: str,
             hub: int = 1) -> dict[str, str]:
    id_path = PI4_HUB_PORT.format(slot=slot, interface=interface).replace(
        "usb-0:1.1.", f"usb-0:1.{hub}.")
    return {"ACTION": "add", "SUBSYSTEM": "tty", "KERNEL": kernel,
            "ID_PATH": id_path, "ID_PATH_TAG": path_tag(id_path),
            "ID_VENDOR_ID": vendor, "ID_MODEL_ID": model,
            "ID_USB_INTERFACE_NUM": f"{interface:02d}"}


def test_ec25_gets_its_slot_name_on_the_at_interface_only() -> None:
    rules = parse_rules(RULES.read_text())
    for interface in range(4):
        env = evaluate(rules, usb_port(f"ttyUSB{interface + 8}", 3, interface, "2c7c", "0125"))
        assert env["ID_MM_DEVICE_IGNORE"] == "1", interface
        assert env["SYMLINK"] == ("nsor/modem2" if interface == 2 else ""), interface


def test_sim800_via_ch340_gets_its_slot_name() -> None:
    rules = parse_rules(RULES.read_text())
    for slot in range(1, 5):
        env = evaluate(rules, usb_port("ttyUSB0", slot, 0, "1a86", "7523"))
        assert env["SYMLINK"] == f"nsor/modem{slot - 1}"
        assert env["ID_MM_DEVICE_IGNORE"] == "1"


def test_rules_do_not_stop_at_four_modems() -> None:
    """A second hub gives modem4-7; a modem in a socket with no slot line still gets a
    stable name from its USB path, and only one name."""
    rules = parse_rules(RULES.read_text())
    for slot in range(1, 5):
        env = evaluate(rules, usb_port("ttyUSB4", slot, 2, "2c7c", "0125", hub=2))
        assert env["SYMLINK"] == f"nsor/modem{slot + 3}"
    cascaded = usb_port("ttyUSB9", 1, 0, "1a86", "7523") | {
        "ID_PATH": "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3.5:1.0"}
    cascaded["ID_PATH_TAG"] = path_tag(cascaded["ID_PATH"])
    env = evaluate(rules, cascaded)
    assert env["SYMLINK"] == ("nsor/usb-platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_3_5_1_0")
    names = [value for _, tokens in rules for key, _, _, value in tokens if key == "SYMLINK"]
    assert len({n for n in names if n.startswith("nsor/modem") and n[10:].isdigit()}) >= 8


def test_uart_hat_and_unknown_ports() -> None:
    rules = parse_rules(RULES.read_text())
    uart = evaluate(rules, {"ACTION": "add", "SUBSYSTEM": "tty", "KERNEL": "ttyAMA0"})
    assert uart["SYMLINK"] == "nsor/modem-uart0" and uart["ID_MM_DEVICE_IGNORE"] == "1"
    unknown_chip = evaluate(rules, usb_port("ttyUSB0", 1, 0, "0403", "6001"))
    assert unknown_chip["SYMLINK"] == "" and unknown_chip["ID_MM_DEVICE_IGNORE"] == "1"
    other_socket = usb_port("ttyUSB0", 1, 0, "1a86", "7523") | {
        "ID_PATH": "platform-fd500000.pcie-pci-0000:01:00.0-usb-0:1.3:1.0",
        "ID_PATH_TAG": "platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_3_1_0"}
    assert evaluate(rules, other_socket)["SYMLINK"] == \
        "nsor/usb-platform-fd500000_pcie-pci-0000_01_00_0-usb-0_1_3_1_0"
    console = evaluate(rules, {"ACTION": "add", "SUBSYSTEM": "tty", "KERNEL": "tty1"})
    assert "ID_MM_DEVICE_IGNORE" not in console and console["SYMLINK"] == ""


def test_config_ports_are_names_the_rules_make() -> None:
    config = FIRMWARE / "appliance.toml"
    if not config.exists():
        pytest.skip("firmware_config/appliance.toml not written yet")
    links = {f"/dev/{value}" for _, tokens in parse_rules(RULES.read_text())
             for key, _, _, value in tokens if key == "SYMLINK"}
    ports = [m.get("port", "") for m in tomllib.loads(config.read_text()).get("modems", [])]
    ours = [p for p in ports if p.startswith("/dev/nsor/")]
    assert ours and set(ours) <= links, (ours, links)


def udev_parser_messages(rules_file: Path) -> str | None:
    """What udev's own parser says about a rules file, or None if it cannot run here.

    ``udevadm verify`` exists from systemd 253. Before that, ``udevadm test`` parses every
    rules file it finds; it runs in a private mount namespace with the file bind-mounted
    over /etc/udev/rules.d and fresh /dev and /run, because systemd 252's ``udevadm test``
    really creates the links and database entries it computes.
    """
    udevadm = shutil.which("udevadm")
    if udevadm is None:
        return None
    verify = subprocess.run([udevadm, "verify", "--resolve-names=never", str(rules_file)],
                            capture_output=True, text=True, timeout=60, check=False)
    if "Unknown command" not in verify.stderr + verify.stdout and verify.returncode in (0, 1):
        return "" if verify.returncode == 0 else verify.stdout + verify.stderr
    devices = sorted(Path("/sys/class/tty").glob("*"))
    if os.geteuid() != 0 or shutil.which("unshare") is None or not devices:
        return None
    script = ('mount --bind "$1" /etc/udev/rules.d && mount -t tmpfs tmpfs /run && '
              'mount -t tmpfs tmpfs /dev && exec udevadm test "$2"')
    proc = subprocess.run(["unshare", "-m", "--propagation", "private", "sh", "-c", script,
                           "sh", str(rules_file.parent), str(devices[0])],
                          capture_output=True, text=True, timeout=60, check=False)
    output = proc.stdout + proc.stderr
    if f"Reading rules file: /etc/udev/rules.d/{rules_file.name}" not in output:
        return None
    return "\n".join(line for line in output.splitlines()
                     if line.startswith(f"/etc/udev/rules.d/{rules_file.name}:"))


def test_udev_accepts_the_rules(tmp_path: Path) -> None:
    broken = tmp_path / "broken" / RULES.name
    broken.parent.mkdir()
    broken.write_text(RULES.read_text().replace('SYMLINK+="nsor/modem0"',
                                                'SYMLNK+="nsor/modem0"'))
    complaint = udev_parser_messages(broken)
    if complaint is None:
        pytest.skip("no udev parser here (udevadm verify needs systemd 253; the fallback "
                    "needs root and unshare)")
    assert "SYMLNK" in complaint, "the harness must notice an invalid key"
    good = tmp_path / "good" / RULES.name
    good.parent.mkdir()
    shutil.copy(RULES, good)
    assert udev_parser_messages(good) == ""


# --- Raspberry Pi boot and system fragments --------------------------------------------

def test_config_txt_fragment_sets_the_keys_for_all_models() -> None:
    section: str | None = None
    seen: dict[str, str] = {}
    for raw in (FIRMWARE / "boot/config.txt.fragment").read_text().splitlines():
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("["):
            section = line
            continue
        assert section is not None, f"{line!r} comes before any [filter] section"
        seen.setdefault(line, section)
    for key in ("enable_uart=1", "dtoverlay=disable-bt", "dtparam=watchdog=on"):
        assert seen.get(key) == "[all]", key


def test_cmdline_instructions_remove_only_the_serial_console(tmp_path: Path) -> None:
    doc = (FIRMWARE / "boot/cmdline.txt.md").read_text()
    blocks = re.findall(r"```(?:sh)?\n(.*?)```", doc, re.S)
    before, after = blocks[0].strip(), blocks[1].strip()
    assert "console=serial0,115200" in before and "console=serial0" not in after
    assert before.replace("console=serial0,115200 ", "") == after
    sed_line = next(line for line in blocks[2].splitlines() if line.startswith("sudo sed"))
    command = sed_line.removeprefix("sudo ").replace("/boot/firmware/cmdline.txt",
                                                     str(tmp_path / "cmdline.txt"))
    (tmp_path / "cmdline.txt").write_text(before + "\n")
    subprocess.run(["sh", "-c", command], check=True, timeout=30)
    assert (tmp_path / "cmdline.txt").read_text() == after + "\n"


def test_hardware_watchdog_fits_the_broadcom_timer() -> None:
    manager = parse_systemd_ini(
        (FIRMWARE / "system.conf.d/nsor-watchdog.conf").read_text())["Manager"]
    # bcm2835_wdt: 20-bit counter at 65536 Hz, so 15 s at most.
    assert 0 < seconds(manager["RuntimeWatchdogSec"][0]) <= 15


def test_journal_is_persistent_and_bounded() -> None:
    journal = parse_systemd_ini((FIRMWARE / "journald.conf.d/nsor.conf").read_text())["Journal"]
    assert journal["Storage"] == ["persistent"]
    for key in ("SystemMaxUse", "SystemKeepFree", "SystemMaxFileSize", "RuntimeMaxUse"):
        assert re.fullmatch(r"\d+[KMG]", journal[key][0]), key
