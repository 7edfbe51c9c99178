"""A real mosquitto for the fleet tests (no tests here).

The broker runs on the shipped configuration, ``firmware_config/fleet/nsor-fleet.conf``
and ``acl``, with only its paths and ports rewritten: 127.0.0.1, free ports, files in the
test's directory. It is our own process with our own config file (Debian's packaged
service, if any, is neither used nor touched) and is killed at teardown. A throwaway CA,
the broker's certificate and the units' client certificates are made with the
``cryptography`` package.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from tests.conftest import FIRMWARE_CONFIG, wait_until

FLEET_DIR = FIRMWARE_CONFIG / "fleet"
CENTRE_PASSWORD = "centre-secret"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def _write_key(key: ec.EllipticCurvePrivateKey, path: Path) -> None:
    path.write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                       serialization.PrivateFormat.PKCS8,
                                       serialization.NoEncryption()))
    path.chmod(0o600)


class Pki:
    """A throwaway CA that signs the broker's certificate and units' client certificates."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        directory.mkdir(parents=True, exist_ok=True)
        self.now = datetime.datetime.now(datetime.timezone.utc)
        self.ca_key = ec.generate_private_key(ec.SECP256R1())
        self.ca_cert = (x509.CertificateBuilder().subject_name(_name("NSOR test CA"))
                        .issuer_name(_name("NSOR test CA"))
                        .public_key(self.ca_key.public_key())
                        .serial_number(x509.random_serial_number())
                        .not_valid_before(self.now - datetime.timedelta(hours=1))
                        .not_valid_after(self.now + datetime.timedelta(days=2))
                        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
                        .sign(self.ca_key, hashes.SHA256()))
        self.ca = directory / "ca.crt"
        self.ca.write_bytes(self.ca_cert.public_bytes(serialization.Encoding.PEM))
        self.server_cert, self.server_key = self.issue("server", server=True)

    def issue(self, cn: str, *, server: bool = False) -> tuple[Path, Path]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (x509.CertificateBuilder().subject_name(_name(cn))
                   .issuer_name(self.ca_cert.subject).public_key(key.public_key())
                   .serial_number(x509.random_serial_number())
                   .not_valid_before(self.now - datetime.timedelta(hours=1))
                   .not_valid_after(self.now + datetime.timedelta(days=1)))
        if server:
            builder = builder.add_extension(x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                False)
        cert = builder.sign(self.ca_key, hashes.SHA256())
        cert_path, key_path = self.dir / f"{cn}.crt", self.dir / f"{cn}.key"
        cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
        _write_key(key, key_path)
        return cert_path, key_path


class Broker:
    """mosquitto on the shipped config: ``port`` (password), ``cert_port`` (certificate)."""

    def __init__(self, directory: Path, users: Sequence[str] = ("centre",)) -> None:
        self.dir = directory
        self.proc: subprocess.Popen[bytes] | None = None
        directory.mkdir(parents=True, exist_ok=True)
        self.pki = Pki(directory / "pki")
        self.port, self.cert_port = free_port(), free_port()
        self.passwd = directory / "passwd"
        self.passwords: dict[str, str] = {}
        for user in users:
            self.add_user(user)
        shutil.copy(FLEET_DIR / "acl", directory / "acl")
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(self._config())
        self.log = directory / "mosquitto.log"

    def add_user(self, user: str, password: str | None = None) -> str:
        """Add (or change) a broker user with mosquitto's own tool; a running broker
        rereads the file on SIGHUP."""
        password = password or (CENTRE_PASSWORD if user == "centre" else f"pw-{user}")
        create = [] if self.passwd.exists() else ["-c"]
        subprocess.run(["mosquitto_passwd", *create, "-b", str(self.passwd), user, password],
                       check=True, capture_output=True)
        self.passwd.chmod(0o600)
        self.passwords[user] = password
        if self.proc is not None and self.proc.poll() is None:
            reloads = self._log_count("Reloading config")
            self.proc.send_signal(signal.SIGHUP)
            assert wait_until(lambda: self._log_count("Reloading config") > reloads, 10), \
                "mosquitto did not reload on SIGHUP"
        return password

    def _log_count(self, text: str) -> int:
        try:
            return self.log.read_text(errors="replace").count(text)
        except FileNotFoundError:
            return 0

    def _config(self) -> str:
        lines = (FLEET_DIR / "nsor-fleet.conf").read_text().splitlines()
        text = "".join(line + "\n" for line in lines if line.strip()
                       and not line.lstrip().startswith("#"))
        pki = self.dir / "pki"
        text = text.replace("/etc/mosquitto/nsor/passwd", str(self.passwd))
        text = text.replace("/etc/mosquitto/nsor/acl", str(self.dir / "acl"))
        text = text.replace("/etc/mosquitto/nsor/server.crt", str(self.pki.server_cert))
        text = text.replace("/etc/mosquitto/nsor/server.key", str(self.pki.server_key))
        text = text.replace("/etc/mosquitto/nsor/ca.crt", str(pki / "ca.crt"))
        text = re.sub(r"^listener 8883$", f"listener {self.port} 127.0.0.1", text, flags=re.M)
        text = re.sub(r"^listener 8884$", f"listener {self.cert_port} 127.0.0.1", text,
                      flags=re.M)
        assert "/etc/mosquitto" not in text and "8883" not in text, text
        # What Debian's main mosquitto.conf adds around the drop-in. Started as root (CI),
        # mosquitto would drop to the "mosquitto" user, who cannot read the test's files.
        return text + (f"\npersistence_location {self.dir}/\n"
                       f"log_dest file {self.dir / 'mosquitto.log'}\n"
                       + ("user root\n" if os.geteuid() == 0 else ""))

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)],
                                     stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError("mosquitto exited: " + self.proc.stderr.read().decode()
                                   if self.proc.stderr else "")
            if all(_listening(p) for p in (self.port, self.cert_port)):
                return
            time.sleep(0.02)
        raise RuntimeError("mosquitto did not listen within 10 s")

    def stop(self, sig: int = signal.SIGTERM) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        self.proc = None

    def restart(self) -> None:
        self.stop()
        self.start()

    def usage(self) -> tuple[float, int]:
        """(CPU seconds used so far, resident memory in KiB) of the broker, from /proc."""
        assert self.proc is not None
        stat = Path(f"/proc/{self.proc.pid}/stat").read_text()
        fields = stat.rsplit(")", 1)[1].split()
        ticks = os.sysconf("SC_CLK_TCK")
        cpu = (int(fields[11]) + int(fields[12])) / ticks
        rss = 0
        for line in Path(f"/proc/{self.proc.pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                rss = int(line.split()[1])
        return cpu, rss

    # -- [fleet] sections for units and the centre -----------------------------------------

    def fleet(self, user: str | None = None, *, cert: bool = False, **extra: Any) -> dict[str, Any]:
        """A ``[fleet]`` table (as a dict) for ``user`` on this broker."""
        section: dict[str, Any] = {"enabled": True, "broker_host": "127.0.0.1",
                                   "broker_port": self.cert_port if cert else self.port,
                                   "tls": True, "ca_file": str(self.pki.ca),
                                   "reconnect_min_s": 0.2, "reconnect_max_s": 1.0}
        if cert:
            assert user is not None
            crt, key = self.pki.issue(user)
            section.update(cert_file=str(crt), key_file=str(key))
        elif user is not None:
            if user not in self.passwords:
                self.add_user(user)
            pw_file = self.dir / f"{user}.password"
            pw_file.write_text(self.passwords[user] + "\n")
            pw_file.chmod(0o600)
            section.update(username=user, password_file=str(pw_file))
        section.update(extra)
        return section

    def centre_toml(self, path: Path) -> Path:
        """The centre's own TOML: only a [fleet] section, user "centre"."""
        f = self.fleet("centre")
        lines = ["[fleet]"] + [f"{k} = {_toml(v)}" for k, v in f.items()]
        path.write_text("\n".join(lines) + "\n")
        return path


def _toml(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, (int, float)):
        return repr(value)
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return '"' + str(value).replace("\\", "\\\\").replace('"', '\\"') + '"'


def fleet_toml(section: dict[str, Any]) -> str:
    return "[fleet]\n" + "".join(f"{k} = {_toml(v)}\n" for k, v in section.items())


def _listening(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.2)
        return s.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Broker]:
    if shutil.which("mosquitto") is None and not os.environ.get("CI"):
        pytest.skip("needs Debian's mosquitto (apt install mosquitto mosquitto-clients)")
    b = Broker(tmp_path / "broker")
    b.start()
    try:
        yield b
    finally:
        b.stop(signal.SIGKILL)
