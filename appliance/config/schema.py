"""What ``appliance.toml`` may contain: frozen dataclasses whose fields document themselves.

Every key is declared once, here, with its meaning, unit, default and allowed values in the
field's metadata (see :func:`key`). The one generic validator in :mod:`appliance.config`
walks the TOML tables against these classes, so adding a key is one line here plus its
comment in ``firmware_config/appliance.toml``; type checks, range checks, "did you mean"
and the error wording come for free. Durations carry their unit in the key name (``_s``,
``_minutes``, ``_hours``, ``_days``) so nobody has to guess whether 60 means seconds.

The classes are frozen: a running service shares one ``Config`` between threads, and a value
that cannot change after validation cannot become invalid.
"""

from __future__ import annotations

import difflib
import ipaddress
import pkgutil
import re
import zoneinfo
from collections.abc import Callable, Iterator
from dataclasses import MISSING, dataclass, field
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import serial.urlhandler

from appliance.errors import ConfigError

#: A value check: returns ``None`` when the value is fine, else what is wrong and what to do.
Check = Callable[[Any], "str | None"]

# The rates a UART or USB-serial bridge actually offers; a typo such as 11520 would open
# the port at a rate the modem never answers on, which looks like a dead modem.
BAUD_RATES = (9600, 19200, 38400, 57600, 115200, 230400, 460800, 921600)

# TS 23.040 §9.2.3.12.1: the relative validity period tops out at 63 weeks.
MAX_VALIDITY_HOURS = 63 * 7 * 24


def key(default: Any = MISSING, *, doc: str, unit: str = "",
        bounds: tuple[float, float] | None = None, choices: tuple[Any, ...] = (),
        what: str = "an allowed value", pattern: str = "", hint: str = "",
        check: Check | None = None, base: str = "", unique: Callable[[Any], Any] | None = None,
        example: str = "") -> Any:
    """Declare one configuration key: a dataclass field whose metadata drives validation.

    ``bounds`` is inclusive; ``choices`` lists the only accepted values (``what`` names them
    in messages: "is not a standard baud rate"); ``pattern`` must match the whole string
    (each element of an array), explained by ``hint``; ``check`` is a custom test; ``base``
    ("config" or "data_dir") anchors a relative path; ``unique`` maps the value to the
    identity that must be unique across an array of tables (``None``: not compared);
    ``example`` tells a technician what to write when a required key is missing.
    """
    meta = {"doc": doc, "unit": unit, "bounds": bounds, "choices": choices, "what": what,
            "pattern": re.compile(pattern) if pattern else None, "hint": hint,
            "check": check, "base": base, "unique": unique, "example": example}
    return field(default=default, metadata=meta)


# --- custom checks (each names what is wrong and what to write instead) -------------------


@cache
def _serial_url_schemes() -> tuple[str, ...]:
    # pySerial's serial_for_url() imports serial.urlhandler.protocol_<scheme>; listing those
    # modules gives exactly the schemes the installed pySerial can open.
    return tuple(sorted(m.name.removeprefix("protocol_")
                        for m in pkgutil.iter_modules(serial.urlhandler.__path__)
                        if m.name.startswith("protocol_")))


def check_serial_port(value: str) -> str | None:
    """A device path (``/dev/nsor/modem0``) or a pySerial URL (``spy:///dev/ttyUSB0``)."""
    if "://" in value:
        scheme = value.split("://", 1)[0].lower()
        schemes = _serial_url_schemes()
        if scheme in schemes:
            return None
        close = difflib.get_close_matches(scheme, schemes, n=1)
        tip = f"did you mean '{close[0]}://'? " if close else ""
        return (f"{scheme}:// is not a pySerial URL scheme; {tip}"
                f"choose one of {', '.join(s + '://' for s in schemes)} or a device path")
    if value.startswith("/"):
        return None
    return (f"not an absolute device path; write e.g. \"/dev/{value}\" or the stable udev "
            f"name \"/dev/nsor/modem0\"")


def serial_port_identity(value: Any) -> str | None:
    """The device behind a port setting, to find two modems sharing one port."""
    if not isinstance(value, str):
        return None
    scheme = value.split("://", 1)[0].lower() if "://" in value else ""
    if scheme == "loop":
        return None  # every loop:// is its own independent loopback
    if scheme in ("spy", "alt"):
        return urlsplit(value).path  # spy:///dev/ttyUSB0?file=x wraps /dev/ttyUSB0
    return value


def check_regex_with_group(value: str) -> str | None:
    """A regular expression with at least one group capturing the amount."""
    if value == "":
        return None
    try:
        compiled = re.compile(value)
    except re.error as exc:
        return (f"not a valid regular expression ({exc}); fix it and try it on a real "
                f"USSD answer")
    if compiled.groups < 1:
        return "has no (group) around the amount; e.g. 'Rs\\.?\\s*([0-9]+(?:\\.[0-9]+)?)'"
    return None


def check_timezone(value: str) -> str | None:
    """An IANA zone name that zoneinfo (system zoneinfo or the tzdata package) knows."""
    try:
        zoneinfo.ZoneInfo(value)
        return None
    except (zoneinfo.ZoneInfoNotFoundError, ValueError, OSError):
        pass
    zones = {z.lower(): z for z in zoneinfo.available_timezones()}
    close = difflib.get_close_matches(value.lower(), zones, n=1)
    tip = (f"did you mean '{zones[close[0]]}'?" if close
           else "use an IANA name such as 'Asia/Karachi'")
    return f"unknown time zone; {tip}"


def check_hhmm(value: str) -> str | None:
    """A local wall-clock time ``HH:MM`` (24-hour)."""
    if re.fullmatch(r"([01][0-9]|2[0-3]):[0-5][0-9]", value):
        return None
    return 'expected a 24-hour time "HH:MM", e.g. "02:30"'


_HOSTNAME = re.compile(r"(?!-)[A-Za-z0-9-]{1,63}(?<!-)(\.(?!-)[A-Za-z0-9-]{1,63}(?<!-))*")


def check_host_port(value: str) -> str | None:
    """``host:port`` to listen on (``[::1]:8080`` for IPv6), or ``""`` for off."""
    if value == "":
        return None
    usage = 'write host:port, e.g. "127.0.0.1:8080" or "[::1]:8080", or "" to turn it off'
    host, sep, port = value.rpartition(":")
    if not sep or not host:
        return f"no port; {usage}"
    if not port.isdigit() or not 1 <= int(port) <= 65535:
        return f"port {port!r} is not a number from 1 to 65535; {usage}"
    if host.startswith("[") and host.endswith("]"):
        try:
            ipaddress.IPv6Address(host[1:-1])
            return None
        except ValueError:
            return f"{host[1:-1]!r} is not an IPv6 address; {usage}"
    if ":" in host:
        return f"an IPv6 address needs brackets; {usage}"
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
            return None
        except ValueError:
            return f"{host!r} is not an IPv4 address; {usage}"
    return None if _HOSTNAME.fullmatch(host) else f"{host!r} is not a host name; {usage}"


# --- reusable key shapes ------------------------------------------------------------------

_PHONE = r"\+?[0-9]{3,15}"
_PHONE_HINT = 'a phone number: digits with an optional "+", e.g. "+923001234567"'
_SECONDS = "seconds"
_MINUTES = "minutes"
_HOURS = "hours"


# --- the sections -------------------------------------------------------------------------


@dataclass(frozen=True)
class UnitConfig:
    """[unit]: who this box is and where it keeps its state."""

    name: str = key("nsor-unit", doc="name of this unit in logs, alarms and status",
                    pattern=r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}",
                    hint="1-64 characters from A-Z a-z 0-9 _ . - (first a letter or digit)")
    data_dir: Path = key(Path("/var/lib/nsor"), base="config",
                         doc="directory for state.db, registry.db, secret.key")
    country_code: str = key("92", doc="country calling code for numbers written without it",
                            pattern=r"[1-9][0-9]{0,2}", hint='1-3 digits in quotes, e.g. "92"')
    own_numbers: tuple[str, ...] = key((), doc="the SIMs' own numbers: never answered (loop guard)",
                                       pattern=_PHONE, hint=_PHONE_HINT)


@dataclass(frozen=True)
class ModemConfig:
    """One [[modems]] table: a GSM modem, its SIM, and how hard the unit may drive it.

    Pacing and caps exist because operators suspend SIMs that send bulk SMS (about 200
    identical messages in 15 minutes has been reported to do it; docs/field-notes.md).
    """

    name: str = key(doc="short unique name used in logs and the store", pattern=r"[a-z0-9_-]{1,32}",
                    hint="1-32 characters from a-z, 0-9, _ and -", unique=lambda v: v,
                    example='name = "sim1"')
    port: str = key(doc="serial device path or pySerial URL", check=check_serial_port,
                    unique=serial_port_identity, example='port = "/dev/nsor/modem0"')
    pin: str | None = key(None, doc="SIM PIN, sent with AT+CPIN only if the SIM asks",
                          pattern=r"[0-9]{4,8}", hint="4-8 digits in quotes")
    smsc: str | None = key(None, doc="SMS centre number overriding the SIM's (AT+CSCA)",
                           pattern=r"\+[1-9][0-9]{6,14}",
                           hint='an international number with "+", e.g. "+923000000000"')
    baudrate: int = key(115200, doc="serial speed", unit="baud", choices=BAUD_RATES,
                        what="a standard baud rate")
    flow_control: str = key("none", doc="serial flow control",
                            choices=("none", "rtscts", "dsrdtr", "xonxoff"),
                            what="a flow control setting")
    min_interval_s: float = key(5.0, doc="pause between two sends on this SIM", unit=_SECONDS,
                                bounds=(0, 3600))
    hourly_cap: int = key(300, doc="most messages sent in any hour", bounds=(1, 100_000))
    daily_cap: int = key(2000, doc="most messages sent in any day", bounds=(1, 1_000_000))
    command_timeout_s: float = key(10.0, doc="wait for an ordinary AT command's answer",
                                   unit=_SECONDS, bounds=(0.5, 120))
    # A real network takes 3-15 s per AT+CMGS (docs/field-notes.md, real-network timing).
    send_timeout_s: float = key(60.0, doc="wait for +CMGS after a PDU", unit=_SECONDS,
                                bounds=(5, 300))
    storage: str = key("SM", doc="message storage (AT+CPMS)", choices=("SM", "ME", "MT"),
                      what="a message storage")
    cmms: bool = key(True, doc="keep the radio link open between parts (AT+CMMS=2)")
    send_mode: str = key("stored", doc="stored = write each part (AT+CMGW) then send it "
                         "(AT+CMSS), so that after a crash the modem tells whether it left "
                         "(no duplicate reply); direct = AT+CMGS, one round trip less",
                         choices=("stored", "direct"))
    status_reports: bool = key(True, doc="ask for delivery reports (TP-SRR)")
    concat_ref16: bool = key(False, doc="16-bit concatenation reference (IEI 0x08, "
                             "TS 23.040 §9.2.3.24.8)")
    validity_hours: int = key(24, doc="validity period of sent messages, 0 = not set", unit=_HOURS,
                              bounds=(0, MAX_VALIDITY_HOURS))
    sweep_interval_s: float = key(60.0, doc="interval of the storage check that reads "
                                  "whatever is left on the SIM (AT+CPMS?, then AT+CMGL)",
                                  unit=_SECONDS, bounds=(5, 3600))
    idle_check_s: float = key(5.0, doc="interval of the cheap check (AT+CPMS? used count) "
                              "that finds messages no +CMTI announced, 0 = off",
                              unit=_SECONDS, bounds=(0, 3600))
    health_interval_s: float = key(30.0, doc="health check interval (AT, AT+CSQ, AT+CREG?)",
                                   unit=_SECONDS, bounds=(5, 3600))
    balance_ussd: str = key("", doc='USSD code that answers with the balance, "" = off',
                            pattern=r"([*#][0-9*#]*#)?", hint='a USSD code such as "*111#"')
    balance_pattern: str = key("", doc="regex whose first group captures the amount",
                               check=check_regex_with_group)
    balance_threshold: float = key(0.0, doc="alarm below this balance, 0 = never", unit="rupees",
                                   bounds=(0, 1_000_000))
    balance_interval_minutes: float = key(360.0, doc="balance check interval", unit=_MINUTES,
                                          bounds=(5, 10_080))
    enabled: bool = key(True, doc="false keeps the entry but leaves the modem alone")

    def cross_check(self) -> Iterator[tuple[str, str]]:
        """Problems that involve two keys of one modem."""
        if self.balance_threshold > 0 and not (self.balance_ussd and self.balance_pattern):
            yield ("balance_threshold", "a balance alarm needs balance_ussd and balance_pattern; "
                   "set both or set balance_threshold = 0")


@dataclass(frozen=True)
class RegistryConfig:
    """[registry]: where the offender registry lives and how it is kept fresh (TUF)."""

    path: Path | None = key(None, doc="registry database; default data_dir/registry.db",
                            base="data_dir")
    # A stale registry must answer "unavailable", never "no record" (docs/design.md decision 6).
    max_age_hours: float = key(72.0, doc="refuse verdicts from a registry older than this",
                               unit=_HOURS, bounds=(1, 2160))
    repository_url: str = key("", doc='TUF repository base URL, "" = no sync',
                              pattern=r"(https?://\S+)?",
                              hint='an http(s):// URL, or "" for no sync')
    trusted_root: Path = key(Path("registry_root.json"), doc="the registry's TUF root metadata",
                             base="config")
    sync_time: str = key("02:30", doc="nightly sync time (local)", check=check_hhmm)
    timezone: str = key("Asia/Karachi", doc="zone for sync_time", check=check_timezone)
    jitter_minutes: float = key(60.0, doc="random delay added to sync_time", unit=_MINUTES,
                                bounds=(0, 720))
    # 5 min: ~1.1 kB and ~5 ms CPU a check; 1,000 units make ~7 requests/s on one static
    # server; a removal is honoured within ~6 min of publishing (docs/registry.md).
    check_interval_minutes: float = key(5.0, doc="urgent-update check interval, 0 = off",
                                        unit=_MINUTES, bounds=(0, 1440))
    retry_initial_s: float = key(60.0, doc="first retry delay after a failed sync", unit=_SECONDS,
                                 bounds=(1, 86_400))
    retry_max_s: float = key(3600.0, doc="longest retry delay", unit=_SECONDS, bounds=(1, 86_400))

    def cross_check(self) -> Iterator[tuple[str, str]]:
        """Problems that involve two keys of [registry]."""
        if self.retry_initial_s > self.retry_max_s:
            yield ("retry_max_s", f"{show_number(self.retry_max_s)} is below retry_initial_s "
                   f"({show_number(self.retry_initial_s)}); raise it or lower retry_initial_s")


@dataclass(frozen=True)
class RepliesConfig:
    """[replies]: what the citizen is told, in which language, and how much."""

    templates: Path = key(Path("replies.toml"), doc="reply templates file", base="config")
    language: str = key("ur", doc="reply language", choices=("ur", "en"),
                        what="a reply language")
    disclosure: str = key("full", doc="full = name and parentage; hit-only = no names",
                          choices=("full", "hit-only"), what="a disclosure level")
    max_cnics: int = key(3, doc="most CNICs answered from one message", bounds=(1, 10))
    # appliance.rules.reply_budget checks at start that every reply the templates make fits.
    max_parts: int = key(4, doc="most SMS parts in one reply; a longer verdict reply is "
                         "sent without names, then without footers", unit="parts",
                         bounds=(1, 10))


@dataclass(frozen=True)
class LimitsConfig:
    """[limits]: per-sender quotas and guards against loops with other machines."""

    per_sender_hourly: int = key(10, doc="queries answered per sender per hour", bounds=(1, 1000))
    per_sender_daily: int = key(30, doc="queries answered per sender per day", bounds=(1, 10_000))
    duplicate_window_hours: float = key(1.0, doc="a CNIC already answered to the same sender "
                                        "inside this window is not answered again",
                                        unit=_HOURS, bounds=(0, 720))
    short_code_max_len: int = key(6, doc="senders this short (service codes) are never answered",
                                  unit="digits", bounds=(0, 15))
    loop_guard_count: int = key(5, doc="messages from one sender within loop_guard_seconds that "
                                "mark an auto-responder", bounds=(2, 1000))
    loop_guard_seconds: float = key(60.0, doc="window of the loop guard", unit=_SECONDS,
                                    bounds=(1, 86_400))
    reassembly_timeout_s: float = key(120.0, doc="wait for the missing parts of a long SMS",
                                      unit=_SECONDS, bounds=(10, 86_400))
    history_margin_minutes: float = key(
        10.0, doc="a message sent more than this before the unit first started on its SIM "
        "is the SIM's history: recorded, never answered", unit=_MINUTES, bounds=(0, 525_600))
    late_after_minutes: float = key(
        60.0, doc="a message reaching the unit more than this after it was sent is answered "
        "only if it carries a CNIC", unit=_MINUTES, bounds=(1, 525_600))


@dataclass(frozen=True)
class ReliabilityConfig:
    """[reliability]: how failed sends are retried and failing modems rested."""

    # Operators answer +CMS ERROR 500/38 (congestion, network out of order) to a burst and
    # accept the same PDU seconds later: retries start at 1 s and double (1, 2, 4 … 60 s),
    # so a reply is complete in seconds rather than after a 30 s wait per refused part.
    max_attempts: int = key(20, doc="send attempts (all SIMs) before a reply is marked failed",
                            bounds=(1, 1000))
    retry_base_s: float = key(1.0, doc="first retry delay (doubles each time)", unit=_SECONDS,
                              bounds=(1, 86_400))
    retry_max_s: float = key(60.0, doc="longest retry delay", unit=_SECONDS, bounds=(1, 86_400))
    # A reply encoded for one SIM stays there: moving it means a new reference, and a part
    # that already left becomes an orphan on the citizen's phone.
    attempts_per_sim: int = key(8, doc="failed tries in a row (no part leaving) before a "
                                "reply moves to another SIM", bounds=(1, 1000))
    move_after_s: float = key(120.0, doc="a reply waits this long for its SIM to come back "
                              "before it moves to another SIM", unit=_SECONDS,
                              bounds=(0, 86_400))
    block_after_failures: int = key(5, doc="replies failing in a row on a modem (each counted "
                                    "once) that rest it", bounds=(1, 1000))
    block_cooldown_s: float = key(600.0, doc="rest time of a blocked modem", unit=_SECONDS,
                                  bounds=(0, 86_400))

    def cross_check(self) -> Iterator[tuple[str, str]]:
        """Problems that involve two keys of [reliability]."""
        if self.retry_base_s > self.retry_max_s:
            yield ("retry_max_s", f"{show_number(self.retry_max_s)} is below retry_base_s "
                   f"({show_number(self.retry_base_s)}); raise it or lower retry_base_s")


@dataclass(frozen=True)
class LoggingConfig:
    """[logging]: verbosity and output format."""

    level: str = key("INFO", doc="lowest level logged",
                     choices=("DEBUG", "INFO", "WARNING", "ERROR"),
                     what="a log level")
    format: str = key("journal", doc="journal = systemd priorities, plain = timestamps",
                      choices=("journal", "plain"), what="a log format")


@dataclass(frozen=True)
class StatusConfig:
    """[status]: the local HTTP status page and /metrics."""

    http_bind: str = key("127.0.0.1:8080", doc='host:port to listen on, "" = off',
                         check=check_host_port)


@dataclass(frozen=True)
class AlarmsConfig:
    """[alarms]: who is told by SMS when the unit needs a technician, and when."""

    sms_numbers: tuple[str, ...] = key((), doc="numbers that receive alarm SMS",
                                       pattern=_PHONE, hint=_PHONE_HINT)
    min_interval_minutes: float = key(60.0, doc="least time between two alarms of one kind",
                                      unit=_MINUTES, bounds=(1, 10_080))
    queue_warn: int = key(200, doc="alarm when this many replies wait", bounds=(1, 1_000_000))
    disk_warn_percent: float = key(90.0, doc="alarm when the data disk is this full",
                                   unit="percent",
                                   bounds=(1, 100))


@dataclass(frozen=True)
class AuditConfig:
    """[audit]: the append-only audit log, keyed by a keyed hash of each CNIC."""

    retention_days: int = key(365, doc="audit events kept this long", unit="days", bounds=(1, 3650))
    secret_file: Path = key(Path("secret.key"), doc="key for the CNIC hash", base="data_dir")


@dataclass(frozen=True)
class PrivacyConfig:
    """[privacy]: how long the message store keeps what identifies a person."""

    # appliance.state.retention: text and PDUs erased, numbers replaced by keyed pseudonyms.
    message_retention_days: float = key(
        7.0, doc="SMS text, PDUs and phone numbers are kept this long after the message "
        "is answered or the reply has left, then redacted (also the audit log's senders)",
        unit="days", bounds=(0, 365))


@dataclass(frozen=True)
class FleetConfig:
    """[fleet]: the optional outbound MQTT link to the centre's broker (docs/fleet.md).

    Off by default. The link never sits on a citizen's path: a hit report is one row
    committed with the answer, everything else happens on the link's own threads.
    """

    enabled: bool = key(False, doc="connect to the centre's MQTT broker")
    broker_host: str = key("", doc="the broker's host name or address",
                           pattern=r"([A-Za-z0-9][A-Za-z0-9.-]{0,252}|\[[0-9A-Fa-f:.]+\])?",
                           hint='a host name or address, e.g. "mqtt.nsor.example.pk"')
    broker_port: int = key(8883, doc="the broker's port (8883 = MQTT over TLS)",
                           bounds=(1, 65535))
    topic_root: str = key("nsor", doc="first level of every topic (must match the ACLs)",
                          pattern=r"[a-z0-9_-]{1,32}", hint="1-32 characters from a-z 0-9 _ -")
    tls: bool = key(True, doc="TLS to the broker; false only on a test bench")
    ca_file: Path | None = key(None, doc="CA certificate(s) that signed the broker's "
                               "certificate; default: the system's CAs", base="config")
    cert_file: Path | None = key(None, doc="this unit's client certificate (PEM)",
                                 base="config")
    key_file: Path | None = key(None, doc="this unit's client key (PEM, mode 0600)",
                                base="config")
    username: str = key("", doc='broker user name, "" = the unit name (or none with a '
                        "client certificate)", pattern=r"[A-Za-z0-9_.@-]{0,64}",
                        hint="up to 64 characters from A-Z a-z 0-9 _ . @ -")
    password_file: Path | None = key(None, doc="file holding the broker password (mode 0600)",
                                     base="config")
    keepalive_s: int = key(60, doc="MQTT keep-alive; the broker declares the unit offline "
                           "after 1.5 times this", unit=_SECONDS, bounds=(10, 3600))
    reconnect_min_s: float = key(1.0, doc="first reconnection delay (doubles each time)",
                                 unit=_SECONDS, bounds=(0.1, 3600))
    reconnect_max_s: float = key(120.0, doc="longest reconnection delay", unit=_SECONDS,
                                 bounds=(1, 3600))
    offline_alarm_after_s: float = key(900.0, doc="alarm when the link has been down this "
                                       "long", unit=_SECONDS, bounds=(10, 604_800))
    heartbeat_interval_s: float = key(300.0, doc="publish the status at least this often",
                                      unit=_SECONDS, bounds=(5, 86_400))
    heartbeat_min_interval_s: float = key(10.0, doc="publish a changed status at most this "
                                          "often", unit=_SECONDS, bounds=(1, 3600))
    district: str = key("", doc="district named in this unit's hit reports",
                        pattern=r"[^\x00-\x1f]{0,64}", hint="up to 64 printable characters")
    hit_reports: bool = key(True, doc="report queries that matched an active record")
    hit_fields: tuple[str, ...] = key(("cnic", "district", "time", "number_hash"),
                                      doc="what a hit report carries besides its id and unit",
                                      choices=("cnic", "district", "time", "number_hash",
                                               "modem"), what="a hit report field")
    hit_clear_number: bool = key(False, doc="also send the citizen's number in clear; needs "
                                 "a legal basis (docs/fleet.md)")
    push_sync: bool = key(True, doc="sync the registry at once when the centre announces a "
                          "new version (verified by TUF as always)")

    def cross_check(self) -> Iterator[tuple[str, str]]:
        """Problems that involve two keys of [fleet]."""
        if self.enabled and not self.broker_host:
            yield ("broker_host", "the fleet link is enabled but has no broker; set "
                   'broker_host (e.g. "mqtt.nsor.example.pk") or enabled = false')
        if (self.cert_file is None) != (self.key_file is None):
            yield ("key_file", "a client certificate needs both cert_file and key_file")
        if self.cert_file is not None and not self.tls:
            yield ("tls", "a client certificate needs tls = true")
        if self.reconnect_min_s > self.reconnect_max_s:
            yield ("reconnect_max_s", f"{show_number(self.reconnect_max_s)} is below "
                   f"reconnect_min_s ({show_number(self.reconnect_min_s)}); raise it")


@dataclass(frozen=True)
class Config:
    """The whole validated configuration of one unit (``appliance.toml``).

    ``source`` is the file it came from (``None`` when built in code, e.g. by the demo).
    Paths are absolute once loaded: relative ones were resolved against the config file's
    directory, or against ``unit.data_dir`` for data files.
    """

    source: Path | None = field(default=None, metadata={"internal": True})
    unit: UnitConfig = field(default_factory=UnitConfig)
    modems: tuple[ModemConfig, ...] = ()
    registry: RegistryConfig = field(default_factory=RegistryConfig)
    replies: RepliesConfig = field(default_factory=RepliesConfig)
    limits: LimitsConfig = field(default_factory=LimitsConfig)
    reliability: ReliabilityConfig = field(default_factory=ReliabilityConfig)
    logging: LoggingConfig = field(default_factory=LoggingConfig)
    status: StatusConfig = field(default_factory=StatusConfig)
    alarms: AlarmsConfig = field(default_factory=AlarmsConfig)
    audit: AuditConfig = field(default_factory=AuditConfig)
    privacy: PrivacyConfig = field(default_factory=PrivacyConfig)

    fleet: FleetConfig = field(default_factory=FleetConfig)

    @property
    def registry_path(self) -> Path:
        """The registry database: ``registry.path`` or ``data_dir/registry.db``."""
        return self.unit.data_dir / (self.registry.path or "registry.db")

    @property
    def state_path(self) -> Path:
        """The message store database."""
        return self.unit.data_dir / "state.db"

    @property
    def secret_path(self) -> Path:
        """The audit hash key (``audit.secret_file``, relative to ``data_dir``)."""
        return self.unit.data_dir / self.audit.secret_file

    @property
    def enabled_modems(self) -> tuple[ModemConfig, ...]:
        """The modems the service should drive."""
        return tuple(m for m in self.modems if m.enabled)

    def require_modems(self) -> None:
        """Raise :class:`ConfigError` unless at least one modem is enabled (needed by ``run``)."""
        if self.enabled_modems:
            return
        name = str(self.source) if self.source else "<config>"
        what = ("every [[modems]] entry has enabled = false" if self.modems
                else "no [[modems]] table")
        raise ConfigError(f"{name}: modems: {what}; add a [[modems]] table with name and port "
                          f"(see firmware_config/appliance.toml) or set enabled = true")


def show_number(value: float) -> str:
    """A number as a technician writes it: 60 rather than 60.0."""
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)
