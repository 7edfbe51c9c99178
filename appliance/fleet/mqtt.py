"""One paho-mqtt client built from ``[fleet]``: TLS, credentials, will, backoff.

Shared by the unit's link and the centre's tools so that both authenticate the same way.
Files are read here, at start, and a missing or unreadable one is a
:class:`~appliance.errors.ConfigError` naming its key, not a failure deep in a network
thread later.
"""

from __future__ import annotations

import os
import ssl
import stat
import threading
from pathlib import Path

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from appliance.config import FleetConfig
from appliance.errors import ConfigError, FleetError


def _password(path: Path) -> str:
    try:
        st = path.stat()
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"fleet.password_file {path}: cannot read it "
                          f"({exc.strerror or exc}); check the path and its owner") from exc
    if st.st_mode & 0o077:
        raise ConfigError(f"fleet.password_file {path}: mode {stat.S_IMODE(st.st_mode):04o} "
                          f"lets group or others read the broker password; run: chmod 600 "
                          f"{path}")
    password = text.strip()
    if not password:
        raise ConfigError(f"fleet.password_file {path}: the file is empty")
    return password


def tls_context(cfg: FleetConfig) -> ssl.SSLContext:
    """A client context: the broker's certificate checked against ``ca_file`` (or the
    system's CAs) and its host name; this unit's certificate when one is configured."""
    for name in ("ca_file", "cert_file", "key_file"):
        path = getattr(cfg, name)
        if path is not None and not os.access(path, os.R_OK):
            raise ConfigError(f"fleet.{name} {path}: missing or not readable by the service "
                              "user")
    if cfg.key_file is not None and cfg.key_file.stat().st_mode & 0o077:
        mode = stat.S_IMODE(cfg.key_file.stat().st_mode)
        raise ConfigError(f"fleet.key_file {cfg.key_file}: mode {mode:04o} lets group or "
                          f"others read the unit's private key; run: chmod 600 "
                          f"{cfg.key_file}")
    try:
        ctx = ssl.create_default_context(cafile=str(cfg.ca_file) if cfg.ca_file else None)
        ctx.minimum_version = ssl.TLSVersion.TLSv1_2
        if cfg.cert_file is not None and cfg.key_file is not None:
            ctx.load_cert_chain(str(cfg.cert_file), str(cfg.key_file))
    except (ssl.SSLError, OSError, ValueError) as exc:
        raise ConfigError(f"fleet: the TLS files (ca_file {cfg.ca_file}, cert_file "
                          f"{cfg.cert_file}, key_file {cfg.key_file}) are not usable: {exc}; "
                          "check that they are PEM and that the key matches the "
                          "certificate") from exc
    return ctx


def make_client(cfg: FleetConfig, client_id: str, *, default_username: str = "",
                clean_session: bool = True,
                will: tuple[str, bytes] | None = None) -> mqtt.Client:
    """A configured, not yet connected client (MQTT 3.1.1, callbacks API version 2)."""
    client = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id,
                         clean_session=clean_session, protocol=mqtt.MQTTv311)
    if cfg.tls:
        client.tls_set_context(tls_context(cfg))
    username = cfg.username or ("" if cfg.cert_file is not None else default_username)
    if username:
        password = _password(cfg.password_file) if cfg.password_file is not None else None
        client.username_pw_set(username, password)
    if will is not None:
        client.will_set(will[0], will[1], qos=1, retain=True)
    client.reconnect_delay_set(min_delay=max(1, round(cfg.reconnect_min_s)),
                               max_delay=max(1, round(cfg.reconnect_max_s)))
    return client


def connect_blocking(client: mqtt.Client, cfg: FleetConfig, timeout_s: float = 15.0) -> None:
    """Connect and start the network thread; :class:`FleetError` unless the broker accepts
    us within ``timeout_s`` (for the centre's commands, where waiting is what the operator
    asked for; the unit's link never blocks like this)."""
    done = threading.Event()
    result: list[str] = []

    def on_connect(_c: mqtt.Client, _u: object, _f: object, reason: object,
                   _p: object) -> None:
        result.append(str(reason))
        done.set()

    def on_disconnect(_c: mqtt.Client, _u: object, _f: object, reason: object,
                      _p: object) -> None:
        if not done.is_set():  # closed before any CONNACK: a TLS or protocol mismatch
            result.append(f"connection closed before the broker answered ({reason}); is "
                          "this a TLS port and tls = true, or the other way round?")
            done.set()

    client.on_connect = on_connect
    client.on_disconnect = on_disconnect
    where = f"{cfg.broker_host}:{cfg.broker_port}"
    try:
        client.connect(cfg.broker_host, cfg.broker_port, keepalive=cfg.keepalive_s)
    except (OSError, ssl.SSLError) as exc:
        raise FleetError(f"broker {where}: cannot connect ({exc}); check broker_host, "
                         "broker_port, tls and ca_file") from exc
    client.loop_start()
    if not done.wait(timeout_s):
        client.loop_stop()
        raise FleetError(f"broker {where}: no answer to CONNECT in {timeout_s:.0f} s")
    if result[0] != "Success":
        client.loop_stop()
        client.on_disconnect = None
        raise FleetError(f"broker {where} refused the connection: {result[0]}; check "
                         "username, password_file or the client certificate")
