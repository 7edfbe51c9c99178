"""scripts/provision.sh, run for real into staging trees (``--root``).

A staging tree is the only place a test may install into, so it is where provisioning
proves its promises: the files and modes a unit needs, idempotent re-runs that leave the
secret alone, a technician's edited configuration kept (the new default beside it as
``.dist``), ``--dry-run`` changing nothing, the data partition in fstab, the Raspberry Pi
boot files. Owners are checked where they can be: the ``nsor`` user exists on a unit, not
on a build machine, and then files stay owned by whoever ran the script.

``--no-pip`` keeps the tests off the network (the virtualenv is made, the requirements are
not installed). One tree is provisioned per module and each test works on its own copy.
"""

from __future__ import annotations

import hashlib
import os
import pwd
import re
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SCRIPT = REPO / "scripts" / "provision.sh"
FIRMWARE = REPO / "firmware_config"

pytestmark = pytest.mark.skipif(shutil.which("bash") is None, reason="provision.sh needs bash")

Snapshot = dict[str, tuple[object, ...]]


def provision(root: Path, *args: str, path_prefix: Path | None = None,
              check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run provision.sh into ``root`` without apt or pip (no network in tests)."""
    env = dict(os.environ)
    if path_prefix is not None:
        env["PATH"] = f"{path_prefix}{os.pathsep}{env['PATH']}"
    proc = subprocess.run(
        ["bash", str(SCRIPT), "--root", str(root), "--no-apt", "--no-pip", *args],
        capture_output=True, text=True, timeout=300, env=env, cwd=REPO, check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"provision.sh exited {proc.returncode}\n--- stdout\n{proc.stdout}"
                    f"\n--- stderr\n{proc.stderr}")
    return proc


def snapshot(root: Path) -> Snapshot:
    """Every path under ``root`` with its type, mode, owner and content hash."""
    result: Snapshot = {}
    if not root.exists():
        return result
    for path in sorted(root.rglob("*")):
        st = path.lstat()
        rel = str(path.relative_to(root))
        if stat.S_ISLNK(st.st_mode):
            result[rel] = ("link", os.readlink(path))
        elif stat.S_ISDIR(st.st_mode):
            result[rel] = ("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid)
        else:
            digest = hashlib.sha256(path.read_bytes()).hexdigest()
            result[rel] = ("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, digest)
    return result


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def fake_blkid(directory: Path, fstype: str) -> Path:
    """A ``blkid`` that reports a partition labelled NSOR-DATA (the device is made up)."""
    directory.mkdir(parents=True, exist_ok=True)
    script = directory / "blkid"
    script.write_text(
        "#!/bin/sh\n"
        'case "$*" in\n'
        '  "-L NSOR-DATA") echo /dev/nsor-test-disk1 ;;\n'
        f'  *TYPE*) echo {fstype} ;;\n'
        "  *) exit 2 ;;\n"
        "esac\n")
    script.chmod(0o755)
    return directory


def expected_owner() -> int:
    """The uid files should have: nsor's on a unit, else the user running the tests."""
    try:
        return pwd.getpwnam("nsor").pw_uid if os.geteuid() == 0 else os.geteuid()
    except KeyError:
        return os.geteuid()


@pytest.fixture(scope="module")
def provisioned(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, str]:
    """One tree provisioned from scratch, and the script's output; copy before changing."""
    root = tmp_path_factory.mktemp("provisioned") / "root"
    return root, provision(root).stdout


@pytest.fixture
def tree(provisioned: tuple[Path, str], tmp_path: Path) -> Path:
    root = tmp_path / "root"
    shutil.copytree(provisioned[0], root, symlinks=True)
    return root


def test_first_run_installs_every_file_with_its_mode(provisioned: tuple[Path, str]) -> None:
    root, out = provisioned
    expected = {
        "var/lib/nsor": 0o750,
        "var/lib/nsor/secret.key": 0o600,
        "etc/nsor": 0o750,
        "etc/nsor/appliance.toml": 0o640,
        "etc/nsor/replies.toml": 0o640,
        "etc/nsor/registry_root.json": 0o640,
        "etc/systemd/system/nsor-appliance.service": 0o644,
        "etc/udev/rules.d/99-nsor-modems.rules": 0o644,
        "etc/modules-load.d/nsor-serial.conf": 0o644,
        "etc/systemd/system.conf.d/nsor-watchdog.conf": 0o644,
        "etc/systemd/journald.conf.d/nsor.conf": 0o644,
        "usr/local/bin/nsor": 0o755,
        "usr/lib/nsor-appliance/app": 0o755,
    }
    wrong = {rel: oct(mode(root / rel)) for rel, want in expected.items()
             if mode(root / rel) != want}
    assert not wrong, f"wrong modes: {wrong}"
    for rel in ("etc/nsor/appliance.toml", "etc/nsor/replies.toml",
                "etc/nsor/registry_root.json", "etc/udev/rules.d/99-nsor-modems.rules"):
        name = Path(rel).name
        assert (root / rel).read_bytes() == (FIRMWARE / name).read_bytes(), rel
    assert ((root / "etc/systemd/system/nsor-appliance.service").read_bytes()
            == (FIRMWARE / "nsor-appliance.service").read_bytes())
    assert (root / "usr/lib/nsor-appliance/app/appliance/__init__.py").is_file()
    assert not (root / "usr/lib/nsor-appliance/app/tests").exists(), "tests are not part of a unit"
    assert (root / "usr/lib/nsor-appliance/venv/bin/python").exists()
    for owned in ("var/lib/nsor", "var/lib/nsor/secret.key"):
        assert (root / owned).stat().st_uid == expected_owner(), owned
    for step in range(1, 13):
        assert f"\n[{step}] " in out, f"step {step} missing from the output"


def test_secret_is_32_random_bytes_in_hex_and_never_printed(
        provisioned: tuple[Path, str]) -> None:
    root, out = provisioned
    text = (root / "var/lib/nsor/secret.key").read_text()
    assert re.fullmatch(r"[0-9a-f]{64}\n", text), "expected 64 hex digits and a newline"
    assert len(bytes.fromhex(text.strip())) == 32
    assert text.strip() not in out
    assert len(set(text.strip())) > 4, "not random-looking"


def test_second_run_changes_nothing_and_keeps_the_secret(tree: Path) -> None:
    before = snapshot(tree)
    out = provision(tree).stdout
    assert snapshot(tree) == before
    assert "kept: the existing secret is never overwritten" in out
    assert "installed:" not in out and "generated" not in out and "copied:" not in out


def test_two_fresh_trees_get_different_secrets(provisioned: tuple[Path, str],
                                               tmp_path: Path) -> None:
    # Reuse the module's virtualenv so this stays fast: only the secret is generated anew.
    root = tmp_path / "root"
    shutil.copytree(provisioned[0], root, symlinks=True)
    (root / "var/lib/nsor/secret.key").unlink()
    provision(root)
    assert ((root / "var/lib/nsor/secret.key").read_text()
            != (provisioned[0] / "var/lib/nsor/secret.key").read_text())


def test_secret_with_a_loose_mode_is_tightened_not_replaced(tree: Path) -> None:
    secret = tree / "var/lib/nsor/secret.key"
    content = secret.read_text()
    secret.chmod(0o644)
    provision(tree)
    assert mode(secret) == 0o600
    assert secret.read_text() == content


def test_edited_configuration_is_kept_and_the_new_default_goes_beside_it(tree: Path) -> None:
    config = tree / "etc/nsor/appliance.toml"
    rules = tree / "etc/udev/rules.d/99-nsor-modems.rules"
    config.write_text(config.read_text() + "\n# edited by the technician\n")
    rules.write_text(rules.read_text() + "\n# slot paths edited for this unit\n")
    config.chmod(0o644)
    edited = config.read_text(), rules.read_text()

    out = provision(tree).stdout
    assert (config.read_text(), rules.read_text()) == edited
    assert mode(config) == 0o640, "a kept file still gets its safe mode back"
    dist = tree / "etc/nsor/appliance.toml.dist"
    assert dist.read_bytes() == (FIRMWARE / "appliance.toml").read_bytes()
    assert mode(dist) == 0o640
    assert ((tree / "etc/udev/rules.d/99-nsor-modems.rules.dist").read_bytes()
            == (FIRMWARE / "99-nsor-modems.rules").read_bytes())
    assert "kept: /etc/nsor/appliance.toml" in out
    assert "diff -u /etc/nsor/appliance.toml /etc/nsor/appliance.toml.dist" in out
    assert not (tree / "etc/nsor/replies.toml.dist").exists(), "an unedited file needs none"

    before = snapshot(tree)
    provision(tree)
    assert snapshot(tree) == before


def test_code_and_unit_are_ours_and_replaced(tree: Path) -> None:
    module = tree / "usr/lib/nsor-appliance/app/appliance/__init__.py"
    unit = tree / "etc/systemd/system/nsor-appliance.service"
    module.write_text("broken = True\n")
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    (tree / "usr/lib/nsor-appliance/app/stray.txt").write_text("left from an old release\n")
    out = provision(tree).stdout
    assert module.read_bytes() == (REPO / "appliance/__init__.py").read_bytes()
    assert unit.read_bytes() == (FIRMWARE / "nsor-appliance.service").read_bytes()
    assert not (tree / "usr/lib/nsor-appliance/app/stray.txt").exists()
    assert not (tree / "usr/lib/nsor-appliance/app.new").exists() and not (tree / "usr/lib/nsor-appliance/app.old").exists()
    assert "copied:" in out


def test_dry_run_on_an_empty_root_prints_the_plan_and_creates_nothing(tmp_path: Path) -> None:
    root = tmp_path / "empty"
    out = provision(root, "--dry-run").stdout
    assert not root.exists()
    assert "dry run: nothing will be changed" in out
    assert [int(n) for n in re.findall(r"^\[(\d+)\] ", out, re.M)] == list(range(1, 13))
    for promise in ("would install firmware_config/appliance.toml as /etc/nsor/appliance.toml",
                    "would generate it from /dev/urandom",
                    "would run: python3 -m venv",
                    "would run: systemctl enable nsor-appliance.service",
                    "would run: systemctl mask --now ModemManager.service",
                    "would run: useradd --system"):
        assert promise in out, promise


def test_dry_run_on_a_provisioned_tree_changes_nothing(tree: Path) -> None:
    unit = tree / "etc/systemd/system/nsor-appliance.service"
    unit.write_text("[Service]\nExecStart=/bin/false\n")
    (tree / "var/lib/nsor/secret.key").unlink()
    before = snapshot(tree)
    out = provision(tree, "--dry-run").stdout
    assert snapshot(tree) == before
    assert "would install firmware_config/nsor-appliance.service" in out
    assert "would generate it from /dev/urandom" in out


def test_data_partition_goes_into_fstab_once(tree: Path, tmp_path: Path) -> None:
    fstab = tree / "etc/fstab"
    fstab.write_text("proc /proc proc defaults 0 0\n")
    bin_dir = fake_blkid(tmp_path / "bin", "ext4")
    out = provision(tree, path_prefix=bin_dir).stdout
    provision(tree, path_prefix=bin_dir)
    lines = fstab.read_text().splitlines()
    assert lines[0] == "proc /proc proc defaults 0 0"
    mounts = [line for line in lines if not line.startswith("#") and "/var/lib/nsor" in line]
    assert mounts == ["LABEL=NSOR-DATA /var/lib/nsor ext4 "
                      "defaults,noatime,nofail,x-systemd.device-timeout=15s 0 2"]
    assert "skipped in a staging tree: mount /var/lib/nsor" in out


def test_data_partition_on_a_windows_filesystem_is_refused(tree: Path, tmp_path: Path) -> None:
    proc = provision(tree, path_prefix=fake_blkid(tmp_path / "bin", "vfat"), check=False)
    assert proc.returncode != 0
    assert "mkfs.ext4 -L NSOR-DATA /dev/nsor-test-disk1" in proc.stderr
    assert not (tree / "etc/fstab").exists()


CMDLINE = ("console=serial0,115200 console=tty1 root=PARTUUID=4e639091-02 rootfstype=ext4 "
           "fsck.repair=yes rootwait quiet init=/usr/lib/raspberrypi-sys-mods/firstboot\n")


def test_pi_boot_files_are_edited_once_with_backups(tree: Path) -> None:
    boot = tree / "boot/firmware"
    boot.mkdir(parents=True)
    config_txt = "dtparam=audio=on\n[cm4]\notg_mode=1\n"
    (boot / "config.txt").write_text(config_txt)
    (boot / "cmdline.txt").write_text(CMDLINE)

    out = provision(tree, "--pi").stdout
    assert "REBOOT" in out
    cmdline = (boot / "cmdline.txt").read_text()
    assert cmdline == CMDLINE.replace("console=serial0,115200 ", "")
    assert (boot / "cmdline.txt.nsor-bak").read_text() == CMDLINE
    config = (boot / "config.txt").read_text()
    assert config.startswith(config_txt), "existing settings are kept, in place"
    block = config[len(config_txt):].splitlines()
    assert block[0].startswith("# >>> nsor-appliance") and block[-1].startswith("# <<< nsor")
    settings = [line for line in block if line and not line.startswith("#")]
    assert settings[0] == "[all]", "the block must not land inside [cm4]"
    for key in ("enable_uart=1", "dtoverlay=disable-bt", "dtparam=watchdog=on"):
        assert key in settings
    assert (boot / "config.txt.nsor-bak").read_text() == config_txt

    # Hand edits inside the block are replaced, not duplicated; the backups stay original.
    (boot / "config.txt").write_text(config.replace("enable_uart=1", "enable_uart=0"))
    provision(tree, "--pi")
    assert (boot / "config.txt").read_text() == config
    assert (boot / "config.txt.nsor-bak").read_text() == config_txt
    before = snapshot(tree)
    out = provision(tree, "--pi").stdout
    assert snapshot(tree) == before
    assert "REBOOT" not in out


def test_pi_without_bookworm_boot_files_stops_with_a_reason(tree: Path) -> None:
    proc = provision(tree, "--pi", check=False)
    assert proc.returncode != 0
    assert "Bookworm" in proc.stderr


def test_incomplete_checkout_is_reported_file_by_file(tmp_path: Path) -> None:
    checkout = tmp_path / "checkout"
    shutil.copytree(REPO / "scripts", checkout / "scripts")
    proc = subprocess.run(["bash", str(checkout / "scripts/provision.sh"), "--dry-run",
                           "--root", str(tmp_path / "root")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode != 0
    for missing in ("appliance/__init__.py", "firmware_config/appliance.toml",
                    "firmware_config/nsor-appliance.service"):
        assert missing in proc.stderr


def test_help_and_bad_options() -> None:
    help_out = subprocess.run(["bash", str(SCRIPT), "--help"], capture_output=True,
                              text=True, timeout=30, check=True).stdout
    for option in ("--dry-run", "--root DIR", "--pi", "--no-apt", "--no-pip", "--help"):
        assert option in help_out
    bad = subprocess.run(["bash", str(SCRIPT), "--bogus"], capture_output=True, text=True,
                         timeout=30, check=False)
    assert bad.returncode != 0 and "--bogus" in bad.stderr


def test_live_install_needs_root() -> None:
    command = ["bash", str(SCRIPT), "--no-apt"]
    if os.geteuid() == 0:
        if shutil.which("runuser") is None:
            pytest.skip("running as root and runuser is missing: cannot drop to a user")
        command = ["runuser", "-u", "nobody", "--", *command]
    proc = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert proc.returncode != 0
    assert "run as root" in proc.stderr, proc.stderr


@pytest.mark.skipif(shutil.which("shellcheck") is None,
                    reason="shellcheck not installed (Debian: apt-get install shellcheck)")
def test_shell_scripts_are_shellcheck_clean() -> None:
    proc = subprocess.run(["shellcheck", "-x", str(SCRIPT), str(FIRMWARE / "bin/nsor")],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_deb_mode_does_only_what_the_package_leaves_out(tmp_path: Path) -> None:
    """``--deb``: the package installed the code, venv, configuration, udev rules and unit;
    provisioning adds only the secret (and the data partition, ModemManager, boot files)."""
    root = tmp_path / "root"
    out = provision(root, "--deb").stdout
    made = sorted(str(p.relative_to(root)) for p in root.rglob("*"))
    assert made == ["var", "var/lib", "var/lib/nsor", "var/lib/nsor/secret.key"], made
    assert mode(root / "var/lib/nsor/secret.key") == 0o600
    assert "ModemManager" in out and "skipped (add --pi" in out
