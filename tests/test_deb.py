"""The Debian package, built and installed for real (issue 15's proof).

Each test installs into this machine with apt and dpkg, then purges: CI runs as root on a
throwaway machine. They skip where that would be unsafe or impossible: not root, a tool
missing, or a unit already here (an installed nsor-appliance or a /var/lib/nsor that a
test would destroy). The machine's own apt sources and lists are never touched: the apt
repository test gives apt a private sources list, lists and cache.

Packages are built once per session, into one wheelhouse reused by every build: v1 (this
checkout), v2 (a next release: one more state.db column, a changed replies.toml and
appliance.toml) and, for the refused downgrade, v3 (an incompatible state.db change).
"""

from __future__ import annotations

import gzip
import hashlib
import http.server
import os
import re
import shutil
import sqlite3
import subprocess
import threading
import time
from collections.abc import Iterator
from functools import partial
from pathlib import Path

import pytest

from appliance import __version__
from appliance.registry.importer import demo_cnics
from appliance.state.store import STATE_SCHEMA
from tests.conftest import ROOT

PKG = "nsor-appliance"
LIB = Path("/usr/lib/nsor-appliance")
ETC = Path("/etc/nsor")
DATA = Path("/var/lib/nsor")
V1 = __version__
V2 = f"{__version__}.post1"
V3 = f"{__version__}.post2"
TOOLS = ("dpkg-deb", "dpkg", "apt-get", "lintian", "apt-ftparchive", "gpg", "dpkg-shlibdeps")
# No package index for pip anywhere below: an install that tried to fetch would fail.
OFFLINE = {"PIP_NO_INDEX": "1", "PIP_INDEX_URL": "http://127.0.0.1:9/",
           "PIP_FIND_LINKS": "", "DEBIAN_FRONTEND": "noninteractive"}


def _unsafe() -> str | None:
    if os.geteuid() != 0:
        return "installs a .deb for real: needs root (CI runs as root)"
    missing = [t for t in TOOLS if shutil.which(t) is None]
    if missing:
        return f"missing {', '.join(missing)} (.ci/run installs them)"
    if not Path("/usr/bin/python3.11").exists():
        return "the package's venv needs Debian's /usr/bin/python3.11"
    if installed_version() is not None or DATA.exists():
        return f"{PKG} or {DATA} is already on this machine: a test would destroy it"
    return None


def run(*cmd: str | Path, env: dict[str, str] | None = None, check: bool = True,
        cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True,
                          timeout=timeout, cwd=cwd, env=dict(os.environ, **(env or {})),
                          check=False)
    if check and proc.returncode != 0:
        pytest.fail(f"{' '.join(map(str, cmd))} exited {proc.returncode}\n{proc.stdout}"
                    f"\n{proc.stderr}")
    return proc


def installed_version() -> str | None:
    proc = subprocess.run(["dpkg-query", "-W", "-f=${Status} ${Version}", PKG],
                          capture_output=True, text=True, check=False)
    fields = proc.stdout.split()
    return fields[-1] if proc.returncode == 0 and "installed" in fields[:3] else None


APT = ("apt-get", "-y", "-q", "--no-install-recommends", "-o", "DPkg::Lock::Timeout=600")
CONF_OLD = ("-o", "Dpkg::Options::=--force-confdef", "-o", "Dpkg::Options::=--force-confold")


def apt_install(deb: Path, *extra: str) -> subprocess.CompletedProcess[str]:
    return run(*APT, *CONF_OLD, *extra, "install", deb, env=OFFLINE)


def nsor(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    proc = run("nsor", *args, check=check, cwd=Path("/"))
    assert "Traceback" not in proc.stdout + proc.stderr, proc.stderr
    return proc


def as_service_user(code: str) -> str:
    """Python run by the *installed* code as the service user (as the service would)."""
    return run("runuser", "-u", "nsor", "--", LIB / "venv/bin/python", "-c", code,
               cwd=LIB / "app").stdout


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def user_version(path: Path) -> int:
    with sqlite3.connect(f"file:{path}?mode=ro", uri=True) as conn:
        return int(conn.execute("PRAGMA user_version").fetchone()[0])


# -- building -------------------------------------------------------------------------------

def source_copy(dest: Path) -> Path:
    for item in ("appliance", "firmware_config", "scripts", "packaging", "docs"):
        shutil.copytree(ROOT / item, dest / item,
                        ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for item in ("pyproject.toml", "requirements.txt", "README.md"):
        shutil.copy2(ROOT / item, dest / item)
    return dest


def next_release(dest: Path, *, compatible: bool) -> Path:
    """This checkout as the next release would change it: one more state.db column (or, not
    compatible, a change older code must not see), and new shipped configuration."""
    src = source_copy(dest)
    n = STATE_SCHEMA.current + 1
    step = (f'Step({n}, "outbound.next_release_note", add_column(_note))' if compatible else
            f'Step({n}, "kv values re-encoded", sql("UPDATE kv SET value = value"), '
            "compatible=False)")
    with (src / "appliance/state/store.py").open("a") as fh:
        fh.write(f"\n\n# The next release (tests/test_deb.py).\n"
                 f"from .migrate import Step, add_column, sql  # noqa: E402\n"
                 f"_note = pw.TextField(null=True)\n"
                 f"Outbound._meta.add_field('next_release_note', _note)\n"
                 f"STATE_SCHEMA = Schema('state.db', STATE_SCHEMA.steps + ({step},))\n")
    with (src / "firmware_config/replies.toml").open("a") as fh:
        fh.write("\n# Reworded in the next release.\n")
    with (src / "firmware_config/appliance.toml").open("a") as fh:
        fh.write("\n# A new default in the next release.\n")
    return src


def build(src: Path, out: Path, wheelhouse: Path, version: str) -> Path:
    started = time.monotonic()
    run("bash", src / "scripts/build_deb.sh", "--out", out, "--wheelhouse", wheelhouse,
        "--version", version, timeout=900)
    print(f"built {version} in {time.monotonic() - started:.1f} s")
    (deb,) = out.glob(f"{PKG}_{version}_*.deb")
    return deb


@pytest.fixture(scope="session")
def wheelhouse(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("wheelhouse")


@pytest.fixture(scope="session")
def deb_v1(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path) -> Path:
    if (why := _unsafe()) is not None:
        pytest.skip(why)
    return build(ROOT, tmp_path_factory.mktemp("v1"), wheelhouse, V1)


@pytest.fixture(scope="session")
def deb_v2(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, deb_v1: Path) -> Path:
    src = next_release(tmp_path_factory.mktemp("src2"), compatible=True)
    return build(src, tmp_path_factory.mktemp("v2"), wheelhouse, V2)


@pytest.fixture(scope="session")
def deb_v3(tmp_path_factory: pytest.TempPathFactory, wheelhouse: Path, deb_v1: Path) -> Path:
    src = next_release(tmp_path_factory.mktemp("src3"), compatible=False)
    return build(src, tmp_path_factory.mktemp("v3"), wheelhouse, V3)


@pytest.fixture
def clean_machine() -> Iterator[None]:
    """Leaves the machine as it found it: the package purged, the user it made removed."""
    if (why := _unsafe()) is not None:
        pytest.skip(why)
    had_user = subprocess.run(["getent", "passwd", "nsor"], capture_output=True).returncode == 0
    try:
        yield
    finally:
        subprocess.run([*APT, "purge", PKG], capture_output=True, check=False)
        if not had_user:
            subprocess.run(["deluser", "--quiet", "--system", "nsor"], capture_output=True,
                           check=False)
            subprocess.run(["delgroup", "--quiet", "--system", "nsor"], capture_output=True,
                           check=False)


# -- the package as a file ------------------------------------------------------------------

def test_package_info_and_contents(deb_v1: Path) -> None:
    info = run("dpkg-deb", "--info", deb_v1).stdout
    assert re.search(rf"(?m)^ Version: {re.escape(V1)}$", info)
    arch = run("dpkg", "--print-architecture").stdout.strip()
    assert deb_v1.name == f"{PKG}_{V1}_{arch}.deb"
    conffiles = run("dpkg-deb", "--info", deb_v1, "conffiles").stdout.split()
    assert conffiles == ["/etc/nsor/appliance.toml", "/etc/nsor/registry_root.json",
                         "/etc/nsor/replies.toml"]
    for script in ("preinst", "postinst", "prerm", "postrm"):
        assert f"{script}" in info
    depends = re.search(r"(?m)^ Depends: (.*)$", info)
    assert depends and "python3.11" in depends.group(1) and "libc6" in depends.group(1)

    paths = [line.split()[-1] for line in run("dpkg-deb", "--contents", deb_v1).stdout
             .splitlines()]
    listed = set(p.lstrip(".") for p in paths)
    for needed in ("/lib/systemd/system/nsor-appliance.service",
                   "/lib/udev/rules.d/99-nsor-modems.rules",
                   "/usr/lib/systemd/journald.conf.d/nsor.conf",
                   "/usr/lib/systemd/system.conf.d/nsor-watchdog.conf",
                   "/usr/lib/modules-load.d/nsor-serial.conf",
                   "/usr/bin/nsor", "/etc/nsor/appliance.toml",
                   f"{LIB}/app/appliance/__init__.py", f"{LIB}/app/pyproject.toml",
                   f"{LIB}/app/scripts/provision.sh", f"{LIB}/venv/pyvenv.cfg",
                   "/usr/share/doc/nsor-appliance/copyright"):
        assert needed in listed, needed
    # Only what runs: no test tools, no tests, no pip, no bytecode built elsewhere.
    site = [p for p in listed if "/site-packages/" in p]
    assert any("/site-packages/peewee.py" in p for p in site)
    for banned in ("pytest", "hypothesis", "smspdudecoder", "bitstring", "/pip/", "_pytest"):
        assert not [p for p in listed if banned in p.lower()], banned
    assert not [p for p in listed if p.startswith(f"{LIB}/app/tests")]
    assert not [p for p in listed if p.endswith(".pyc")]
    # Nothing under /var/lib/nsor: remove must not take the data.
    assert not [p for p in listed if p.startswith("/var/lib/nsor")]
    assert not [p for p in listed if p.startswith("/opt")]


def test_lintian_has_no_errors_and_no_warnings(deb_v1: Path) -> None:
    proc = run("lintian", "--fail-on", "error,warning", deb_v1, check=False)
    tags = [line for line in proc.stdout.splitlines() if line[:2] in ("E:", "W:")]
    assert proc.returncode == 0 and tags == [], proc.stdout + proc.stderr


# -- installed -------------------------------------------------------------------------------

def test_install_offline_then_version_doctor_lookup(deb_v1: Path, clean_machine: None) -> None:
    out = apt_install(deb_v1)
    assert installed_version() == V1, out.stdout
    assert nsor("--version").stdout == f"nsor-appliance {V1}\n"
    # No pip in the unit's environment: nothing could have been fetched, nothing can be.
    assert run(LIB / "venv/bin/python", "-m", "pip", "--version", check=False).returncode != 0
    assert (ETC / "appliance.toml").stat().st_mode & 0o777 == 0o640
    # An empty data folder: provision.sh --deb may still mount the data partition on it.
    assert (DATA.stat().st_mode & 0o777, DATA.owner(), list(DATA.iterdir())) == \
        (0o750, "nsor", [])

    doctor = nsor("doctor", check=False)
    assert "PASS  configuration: /etc/nsor/appliance.toml is valid" in doctor.stdout
    assert "PASS  data folder: /var/lib/nsor writable" in doctor.stdout

    sample = LIB / "app/appliance/data/sample_registry.csv"
    nsor("registry", "import", str(sample))
    cnics = demo_cnics(sample)
    hit = nsor("lookup", "--language", "en", cnics.hits[0])
    assert "convict" in hit.stdout.lower(), hit.stdout
    miss = nsor("lookup", "--language", "en", cnics.misses[0])
    assert "no record" in miss.stdout.lower(), miss.stdout
    assert "registry.db: schema 1 (current)" in nsor("db", "status").stdout


def test_upgrade_rollback_remove_purge(deb_v1: Path, deb_v2: Path, clean_machine: None) -> None:
    apt_install(deb_v1)
    # A unit in service: a queued reply in state.db, a technician's edit of appliance.toml.
    oid = as_service_user(
        "from appliance.state.store import Store\n"
        "from appliance.outbox.table import ReplyTable\n"
        "s = Store('/var/lib/nsor/state.db')\n"
        "print(ReplyTable().queue_reply(recipient='+923001234567', text='سلام', parts=1, "
        "preferred_modem='sim1'))\n"
        "from appliance.state.secret import load_or_create_secret\n"
        "load_or_create_secret('/var/lib/nsor/secret.key')\n").split()[0]
    secret = sha256(DATA / "secret.key")
    edited = (ETC / "appliance.toml").read_text().replace('name = "nsor-unit-01"',
                                                          'name = "nsor-lahore-03"')
    assert "nsor-lahore-03" in edited
    (ETC / "appliance.toml").write_text(edited)
    replies_v1 = sha256(ETC / "replies.toml")

    # v1 -> v2, unattended (what unattended-upgrades does).
    apt_install(deb_v2)
    assert installed_version() == V2
    assert nsor("--version").stdout == f"nsor-appliance {V2}\n"
    shipped_v2 = LIB / "app/firmware_config"
    assert sha256(ETC / "replies.toml") == sha256(shipped_v2 / "replies.toml") != replies_v1
    assert (ETC / "appliance.toml").read_text() == edited  # kept
    assert (ETC / "appliance.toml.dpkg-dist").read_bytes() == \
        (shipped_v2 / "appliance.toml").read_bytes()    # the new one beside it
    assert (ETC / "replies.toml").stat().st_mode & 0o777 == 0o640
    state = DATA / "state.db"
    assert user_version(state) == STATE_SCHEMA.current + 1  # migrated by postinst
    with sqlite3.connect(f"file:{state}?mode=ro", uri=True) as conn:
        assert conn.execute("SELECT id, text, next_release_note FROM outbound").fetchall() == \
            [(int(oid), "سلام", None)]
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
    assert "(current)" in nsor("db", "status").stdout

    # v2 -> v1: the later column is compatible, so v1 runs on the migrated file.
    apt_install(deb_v1, "--allow-downgrades")
    assert installed_version() == V1
    assert nsor("--version").stdout == f"nsor-appliance {V1}\n"
    assert "compatible, so it is used as is" in nsor("db", "status").stdout
    counts = as_service_user("from appliance.state.store import Store\n"
                             "print(Store('/var/lib/nsor/state.db').counts())")
    assert "'queued': 1" in counts
    assert (ETC / "appliance.toml").read_text() == edited

    # remove keeps the data and the configuration; purge deletes both.
    run(*APT, "remove", PKG)
    assert installed_version() is None and not (LIB / "venv").exists()
    assert state.is_file() and sha256(DATA / "secret.key") == secret
    assert (ETC / "appliance.toml").read_text() == edited
    run(*APT, "purge", PKG)
    assert not DATA.exists() and not ETC.exists()
    assert "nsor" not in run("dpkg-statoverride", "--list").stdout


def test_downgrade_past_an_incompatible_change_is_refused(
        deb_v1: Path, deb_v3: Path, clean_machine: None) -> None:
    apt_install(deb_v1)
    as_service_user("from appliance.state.store import Store\n"
                    "Store('/var/lib/nsor/state.db').kv_set('k', 'v')")
    apt_install(deb_v3)
    assert installed_version() == V3
    state = DATA / "state.db"
    as_service_user("from appliance.state.store import Store\n"
                    "Store('/var/lib/nsor/state.db').close()")  # checkpointed, closed
    before = sha256(state)
    proc = run(*APT, *CONF_OLD, "--allow-downgrades", "install", deb_v1, env=OFFLINE,
               check=False)
    assert proc.returncode != 0
    said = proc.stdout + proc.stderr
    assert f"not downgrading from {V3} to {V1}" in said, said
    assert f"state.db: schema {STATE_SCHEMA.current + 1} needs a release that reads" in said
    assert installed_version() == V3
    assert nsor("--version").stdout == f"nsor-appliance {V3}\n"
    assert sha256(state) == before


# -- the fleet's apt repository -------------------------------------------------------------

class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


def test_signed_apt_repository_on_localhost(deb_v1: Path, deb_v2: Path, tmp_path: Path,
                                            clean_machine: None) -> None:
    gnupg = tmp_path / "gnupg"
    gnupg.mkdir(mode=0o700)
    keyenv = {"GNUPGHOME": str(gnupg)}
    run("gpg", "--batch", "--passphrase", "", "--quick-gen-key", "NSOR test fleet",
        "ed25519", "sign", "never", env=keyenv)
    repo = tmp_path / "repo"
    run("bash", ROOT / "scripts/publish_apt_repo.sh", "--repo", repo, "--key",
        "NSOR test fleet", deb_v1, deb_v2, env=keyenv)
    release = (repo / "dists/stable/Release").read_text()
    assert "Origin: NSOR" in release and "Label: NSOR fleet" in release
    # unattended-upgrades is told to take exactly this origin and label.
    pattern = (ROOT / "packaging/apt/52nsor-unattended-upgrades").read_text()
    assert '"origin=NSOR,label=NSOR fleet";' in pattern
    with gzip.open(next(repo.glob("dists/stable/main/binary-*/Packages.gz")), "rt") as fh:
        assert sorted(re.findall(r"(?m)^Version: (.*)$", fh.read())) == sorted([V1, V2])

    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), partial(_Quiet, directory=str(repo)))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        lists, cache, parts = tmp_path / "lists", tmp_path / "cache", tmp_path / "parts"
        for d in (lists / "partial", cache / "archives/partial", parts):
            d.mkdir(parents=True)
        sources = tmp_path / "sources.list"
        sources.write_text(f"deb [signed-by={repo / 'nsor-fleet.gpg'}] "
                           f"http://127.0.0.1:{server.server_address[1]}/ stable main\n")
        private = ("-o", f"Dir::Etc::sourcelist={sources}", "-o", f"Dir::Etc::sourceparts={parts}",
                   "-o", f"Dir::State::Lists={lists}", "-o", f"Dir::Cache={cache}",
                   "-o", "APT::Get::List-Cleanup=0", "-o", "APT::Sandbox::User=root",
                   "-o", "Acquire::http::Proxy=DIRECT")
        machine_sources = sha256(Path("/etc/apt/sources.list")) \
            if Path("/etc/apt/sources.list").exists() else None
        update = run(*APT, *private, "update", env=OFFLINE)
        assert "NO_PUBKEY" not in update.stdout + update.stderr
        run(*APT, *private, *CONF_OLD, "install", PKG, env=OFFLINE)
        assert installed_version() == V2   # the newest
        run(*APT, *private, *CONF_OLD, "--allow-downgrades", "install", f"{PKG}={V1}",
            env=OFFLINE)
        assert installed_version() == V1   # rolled back through apt
        # A tampered index is refused: the signature covers it.
        inrelease = repo / "dists/stable/InRelease"
        inrelease.write_text(inrelease.read_text().replace("NSOR fleet", "NSOR fleeT"))
        bad = run(*APT, *private, "update", env=OFFLINE, check=False)
        assert "not signed" in bad.stdout + bad.stderr or "BADSIG" in bad.stdout + bad.stderr \
            or "invalid" in (bad.stdout + bad.stderr).lower(), bad.stdout + bad.stderr
    finally:
        server.shutdown()
        server.server_close()
    after = sha256(Path("/etc/apt/sources.list")) \
        if Path("/etc/apt/sources.list").exists() else None
    assert after == machine_sources


@pytest.mark.skipif(shutil.which("shellcheck") is None, reason="shellcheck not installed")
def test_packaging_scripts_are_shellcheck_clean() -> None:
    scripts = [ROOT / "scripts/build_deb.sh", ROOT / "scripts/publish_apt_repo.sh",
               *(ROOT / "packaging/deb" / s for s in ("preinst", "postinst", "prerm", "postrm"))]
    proc = run("shellcheck", "-x", *scripts, check=False)
    assert proc.returncode == 0, proc.stdout
