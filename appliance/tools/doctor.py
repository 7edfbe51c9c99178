"""``doctor``: every precondition of a working unit, one PASS/WARN/FAIL line each, with a fix.

A technician alone at a provincial office runs this first and after every change. Each
check names what it looked at and, when it fails, the one next step to try (the same words
as docs/technician.md, section 11). WARN is for what works but deserves attention (a
registry imported by hand, ModemManager running where the udev rules should keep it off
our ports); only FAIL makes the exit status non-zero.

Modem checks must not fight the service for a port: while ``/status.json`` answers, the
modem facts come from the running service; the ports are opened (with the same exclusive
lock the service takes) only when it is not running.
"""

from __future__ import annotations

import os
import shutil
import stat
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from ..errors import ConfigError
from ..rules.wording import plural
from ..service.alarms import disk_alarm
from ..status.format import disk_percent, fmt_bytes, fmt_duration
from ..status.server import fetch_status

#: Earliest believable date: a Pi without RTC boots at 1970 or at its last shutdown.
EARLIEST = datetime(2024, 1, 1, tzinfo=timezone.utc)

PASS, WARN, FAIL, INFO = "PASS", "WARN", "FAIL", "INFO"

FIX_PORT_MISSING = ("check the cable and the hub's power, then `ls -l /dev/nsor/` and "
                    "`dmesg | tail -30`; see docs/technician.md section 6 (naming the modems)")
FIX_PORT_HELD = ("stop whatever holds it: `sudo fuser -v PORT` shows it (a running service, "
                 "picocom, ModemManager: `sudo systemctl mask ModemManager`)")
FIX_MM = ("sudo systemctl disable --now ModemManager && sudo systemctl mask ModemManager")


@dataclass(frozen=True)
class Check:
    level: str
    what: str
    detail: str = ""
    fix: str = ""


#: The configuration that provisioning installs and systemd runs. Checking *this* file
#: means checking a unit meant for the field; a copy elsewhere is a rehearsal (the demo,
#: simulated modems, a laptop).
INSTALLED_CONFIG = Path("/etc/nsor/appliance.toml")


def field_profile(config_path: Path, choice: bool | None = None) -> bool:
    """The profile: ``choice`` when the technician gave one (``--field`` / ``--lab``),
    else "field" exactly when the checked file is the installed configuration."""
    if choice is not None:
        return choice
    try:
        return Path(config_path).resolve() == INSTALLED_CONFIG.resolve()
    except OSError:
        return False


def run_checks(config_path: Path, *, timeout: float = 3.0,
               field: bool = False) -> Iterator[Check]:
    """Every check, in the order a technician fixes things. With ``field``, what a unit
    must not take to site (the demo root, no repository, the placeholder correction
    number, the sample registry, no own_numbers) FAILs instead of WARNing."""
    from ..config import load_config

    try:
        config = load_config(config_path)
    except ConfigError as exc:
        for problem in exc.problems:
            yield Check(FAIL, "configuration", problem,
                        f"edit {config_path}; every key is explained in "
                        "firmware_config/appliance.toml")
        return
    enabled = config.enabled_modems
    yield Check(PASS if enabled else FAIL, "configuration",
                f"{config_path} is valid, {plural(len(enabled), 'modem', 'modems')} enabled",
                "" if enabled else "add a [[modems]] table (`nsor probe` prints one)")
    yield from _modem_manager()
    snap, why = fetch_status(config.status.http_bind, timeout=2.0)
    if snap is not None:
        yield Check(INFO, "service", "running; modem facts below come from its status page "
                    "(the ports are not opened while it holds them)")
        yield from _modems_live(enabled, snap)
    else:
        yield Check(INFO, "service", f"not running or not reachable ({why}); "
                    "opening the ports directly")
        for m in enabled:
            yield from _modem_direct(m, timeout)
    yield from _registry(config, field)
    yield from _deployment(config, field)
    yield from _reply_budget(config)
    yield _disk(config)
    yield _data_dir(config)
    yield _secret(config)


def _modem_manager() -> Iterator[Check]:
    if shutil.which("systemctl") is None:
        return
    try:
        out = subprocess.run(["systemctl", "is-active", "ModemManager"], capture_output=True,
                             text=True, timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return
    if not out:
        return  # systemd is not running here (a container, a chroot): nothing to ask
    if out == "active":
        yield Check(WARN, "ModemManager", "is running: it opens serial ports and sends AT "
                    "commands unless the udev rules tell it to ignore them", FIX_MM)
    else:
        yield Check(PASS, "ModemManager", f"not running ({out})")


def _modem_direct(m: Any, timeout: float) -> Iterator[Check]:
    from .probe import probe_port

    who = f"modem {m.name}"
    r = probe_port(m.port, baudrate=m.baudrate, flow_control=m.flow_control, timeout=timeout)
    if not r.present:
        yield Check(FAIL, f"{who}: port", f"{m.port} is not present", FIX_PORT_MISSING)
        return
    if r.busy:
        yield Check(FAIL, f"{who}: port", f"{m.port} is held by another process",
                    FIX_PORT_HELD.replace("PORT", m.port))
        return
    if r.error and not r.answered and r.error.startswith("cannot open"):
        yield Check(FAIL, f"{who}: port", f"{m.port}: {r.error}",
                    "check permissions (the service user must be in `dialout`) and the cable")
        return
    yield Check(PASS, f"{who}: port", f"{m.port} present and free")
    if not r.answered:
        yield Check(FAIL, f"{who}: answers AT", r.error,
                    f"check the modem's power and antenna, baudrate = {m.baudrate} and that "
                    "the udev rule picked the AT interface (section 6)")
        return
    ident = " ".join(x for x in (r.manufacturer, r.model) if x) or "modem"
    yield Check(PASS, f"{who}: answers AT", f"{ident}, IMEI {r.imei or '?'}")
    if r.sim == "READY":
        yield Check(PASS, f"{who}: SIM", f"ready, IMSI {r.imsi or '?'}")
    elif r.sim == "SIM PIN" and m.pin:
        yield Check(PASS, f"{who}: SIM", "asks for its PIN; the service sends the configured "
                    "pin (a wrong one shows as 'SIM state' errors in status)")
    elif r.sim == "SIM PIN":
        yield Check(FAIL, f"{who}: SIM", "not ready: asks for a PIN and the configuration "
                    "has none",
                    f'put pin = "…" in the [[modems]] table of {m.name}, or switch the PIN '
                    "off in a phone")
    else:
        yield Check(FAIL, f"{who}: SIM", f"not ready ({r.sim or 'no answer'})",
                    "SIM PUK: unlock it in a phone; not inserted: power off, reseat the SIM")
    signal = f"signal {r.bars}/5 (rssi {r.rssi})"
    if r.registered:
        yield Check(PASS, f"{who}: network", f"{r.operator or 'registered'}, {signal}")
    else:
        from .probe import CREG_TEXT
        why = r.network or (CREG_TEXT.get(r.creg, "unknown") if r.creg is not None
                            else "no answer")
        yield Check(FAIL, f"{who}: network", f"not registered ({why}), {signal}",
                    "check the antenna, move the unit near a window, check the SIM works in a "
                    "phone here (2G-only modems fail where 2G is off)")


def _modems_live(enabled: Any, snap: dict[str, Any]) -> Iterator[Check]:
    live = {m.get("name"): m for m in snap.get("modems") or []}
    for cfg in enabled:
        who = f"modem {cfg.name}"
        m = live.get(cfg.name)
        if m is None:
            yield Check(WARN, who, "configured but not in the running service",
                        "restart the service to apply the configuration: "
                        "sudo systemctl restart nsor-appliance")
            continue
        state, err = m.get("state"), m.get("last_error") or ""
        signal = f"signal {m.get('bars', 0)}/5, {m.get('operator') or 'no operator'}"
        if state == "ready" and not m.get("unavailable"):
            yield Check(PASS, who, f"in service, {signal}")
        elif state == "ready":
            yield Check(WARN, who, f"ready but out of rotation: {m['unavailable']}",
                        "after failed sends it returns by itself after the cooldown, over a "
                        "cap at the next hour/day; a credit problem returns after a recharge "
                        "(the next balance check) or a service restart")
        elif state == "no network":
            yield Check(FAIL, who, f"not registered on the network, {signal}",
                        "check the antenna and the SIM (section 11, No network)")
        elif state == "gone":
            yield Check(FAIL, who, f"port {m.get('port')} gone: {err}", FIX_PORT_MISSING)
        elif state == "starting":
            yield Check(WARN, who, f"starting{': ' + err if err else ''}",
                        "wait a minute and run doctor again")
        else:
            fix = ("fix the SIM or its pin (section 11, SIM PIN)"
                   if "SIM" in err or "PIN" in err
                   else "read `journalctl -u nsor-appliance -n 50`")
            yield Check(FAIL, who, f"{state}: {err}", fix)


def _registry(config: Any, field: bool = False) -> Iterator[Check]:
    from ..registry.lookup import CLOCK_SKEW, Registry, is_stale
    from ..registry.status import sync_status

    with Registry(config.registry_path) as reg:
        info = reg.info()
        # The whole content against the publisher's signed digest (one scan: ~2.4 s at 1M
        # records on the dev box); SQLite's integrity_check would not see a changed digit.
        verification = reg.verify() if info.usable else None
    now = datetime.now(timezone.utc)
    if not info.exists:
        yield Check(FAIL, "registry", f"no usable registry at {info.path} ({info.error})",
                    "run `sudo nsor sync` (needs internet)" if config.registry.repository_url
                    else SYNC_FIX)
        yield check_clock(now, None, CLOCK_SKEW)
        return
    if verification is None or not verification.ok:
        problem = info.error or (verification.problem if verification else None)
        yield Check(FAIL, "registry: intact", f"{problem}: every query is answered "
                    "'service temporarily unavailable'",
                    "run `sudo nsor sync` to install a fresh signed copy; if this recurs, "
                    "replace the SD card")
    else:
        yield Check(PASS, "registry: intact", f"content matches the signed digest "
                    f"({verification.rows} records, {verification.seconds:.1f} s)")
    sample = _is_sample(config.registry_path)
    if sample:
        yield Check(FAIL if field else WARN, "registry: verified", "is the SAMPLE registry "
                    "(fictional people): citizens would get answers about test records",
                    SYNC_FIX)
    elif info.signed_at is not None:
        checked = (f", last confirmed current {info.verified_at:%Y-%m-%d %H:%M} UTC"
                   if info.verified_at else "")
        yield Check(PASS, "registry: verified", f"version {info.version}, {info.record_count} "
                    f"records, signed {info.signed_at:%Y-%m-%d %H:%M} UTC{checked}")
    else:
        yield Check(WARN, "registry: verified", f"version {info.version or '(none)'} was "
                    "imported by hand "
                    f"(source {info.source or '?'}), not signed by the publisher",
                    "run `sudo nsor sync` to install the signed registry")
    max_age = timedelta(hours=config.registry.max_age_hours)
    age = info.age(now)
    if is_stale(info, max_age, now):
        yield Check(FAIL, "registry: fresh", "not fresh: age "
                    f"{fmt_duration(age.total_seconds() if age else None)}"
                    f", limit {config.registry.max_age_hours:g} h: every query is answered "
                    "'service temporarily unavailable'",
                    "check the internet and the clock, then `sudo nsor sync`")
    else:
        yield Check(PASS, "registry: fresh",
                    f"age {fmt_duration(age.total_seconds() if age else None)}")
    st = sync_status(config.registry_path)
    if st.get("consecutive_failures"):
        err = st.get("last_error") or {}
        yield Check(WARN, "registry: last sync", plural(st["consecutive_failures"],
                    "failed attempt", "failed attempts") + f": {err.get('message', '?')}",
                    "`sudo nsor registry status` shows the details; `sudo nsor sync` retries")
    yield check_clock(now, info.signed_at, CLOCK_SKEW)


#: Key id of the DEMO root shipped in firmware_config/ (its private keys were discarded).
DEMO_ROOT_KEYID = "32410d8461f3e9e4940c12e81eb158bf215fcbc7877c65bf2ca058087597411c"
#: The placeholder correction number in the shipped replies.toml.
PLACEHOLDER_CORRECTION = "0800-00000"


SYNC_FIX = ("set [registry] repository_url and flash the operator's registry_root.json, then "
            "`sudo nsor sync` (docs/technician.md, \"Before you go to site\")")


def _is_sample(registry_path: Path) -> bool:
    """True when the installed registry holds the sample's fictional people (whatever
    name it was imported under): one of them is looked up, by CNIC and name."""
    from ..registry.importer import SAMPLE_REGISTRY, demo_cnics
    from ..registry.lookup import Registry

    try:
        probe = demo_cnics(SAMPLE_REGISTRY).hits[0]
        with Registry(registry_path) as reg:
            record = reg.lookup(probe)
    except Exception:  # no registry, a damaged one: the other checks say so
        return False
    return record is not None and str(record.name_en).startswith("Test Person")


def _deployment(config: Any, field: bool = False) -> Iterator[Check]:
    """What the shipped files leave for the operator to fill in before a unit goes live:
    WARN on a rehearsal, FAIL in the field profile."""
    import json

    must = FAIL if field else WARN

    syncing = bool(config.registry.repository_url)
    try:
        root = json.loads(Path(config.registry.trusted_root).read_text())
        keyids = set(root["signed"]["roles"]["root"]["keyids"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        if syncing:  # without a repository the root is never used
            yield Check(FAIL, "registry: trusted root", f"{config.registry.trusted_root} "
                        f"unreadable ({exc})", "flash the operator's registry_root.json "
                        "(firmware_config/README-registry-keys.md)")
        keyids = set()
    if DEMO_ROOT_KEYID in keyids:
        yield Check(must, "registry: trusted root", "is the DEMO root: no signed registry "
                    "will ever be accepted", "flash the operator's registry_root.json "
                    "(firmware_config/README-registry-keys.md)")
    if not syncing:
        yield Check(must, "registry: sync", "repository_url is empty: the registry is never "
                    "updated and goes stale after max_age_hours",
                    "set [registry] repository_url to the publisher's address")
    try:
        replies = Path(config.replies.templates).read_text(encoding="utf-8")
    except OSError:
        replies = ""
    if PLACEHOLDER_CORRECTION in replies:
        yield Check(must, "replies: correction number", f"still the placeholder "
                    f"{PLACEHOLDER_CORRECTION}: citizens are told to call a number that "
                    "does not exist", f"set the real number in {config.replies.templates}")
    if not config.unit.own_numbers:
        yield Check(must, "unit: own numbers", "own_numbers is empty: two modems (or this "
                    "unit and another) could answer each other in a loop",
                    "put the SIMs' numbers in [unit] own_numbers (`sudo nsor probe` prints "
                    "the line)")


def _reply_budget(config: Any) -> Iterator[Check]:
    """The templates' placeholders, and every reply within replies.max_parts (as at start)."""
    from ..errors import ConfigError
    from ..registry.names import longest_names
    from ..rules.reply_budget import BOUND, check, lengths_of
    from ..rules.responder import Policy, load_templates

    try:
        templates = load_templates(config.replies.templates)
        policy = Policy(config.replies.language, config.replies.disclosure,
                        config.replies.max_cnics, config.replies.max_parts,
                        any(m.concat_ref16 for m in config.enabled_modems))
    except ConfigError as exc:
        for problem in exc.problems:
            yield Check(FAIL, "replies: templates", problem, "fix replies.toml; "
                        "the service will not start until then")
        return
    lengths = lengths_of(longest_names(config.registry_path)) or BOUND
    problems = check(templates, policy, lengths)
    for problem in problems:
        yield Check(FAIL, "replies: length", problem, "the service refuses to start with "
                    "a reply longer than replies.max_parts")
    if not problems:
        yield Check(PASS, "replies: length", f"every reply fits {policy.max_parts} SMS "
                    f"part(s), names as long as {lengths.origin}")


def check_clock(now: datetime, signed_at: datetime | None, skew: timedelta) -> Check:
    fix = ("set the time: `timedatectl` must say 'System clock synchronized: yes' "
           "(section 11, Clock wrong)")
    if now < EARLIEST:
        return Check(FAIL, "clock", f"not sane: reads {now:%Y-%m-%d %H:%M} UTC, before 2024",
                     fix)
    if signed_at is not None and now < signed_at - skew:
        return Check(FAIL, "clock", f"not sane: reads {now:%Y-%m-%d %H:%M} UTC, before the "
                     f"registry's signing time {signed_at:%Y-%m-%d %H:%M} UTC", fix)
    return Check(PASS, "clock", f"{now:%Y-%m-%d %H:%M} UTC")


def _disk(config: Any) -> Check:
    path = Path(config.unit.data_dir)
    probe = path
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    usage = shutil.disk_usage(probe)
    alarm = disk_alarm(usage, config.alarms.disk_warn_percent, str(path))
    if alarm:
        text, _, fix = alarm.partition("; ")
        return Check(FAIL, "disk", text, fix)
    pct = disk_percent({"used": usage.used, "free": usage.free})
    return Check(PASS, "disk", f"{pct:.0f}% used, {fmt_bytes(usage.free)} free ({path})")


def _data_dir(config: Any) -> Check:
    path = Path(config.unit.data_dir)
    if not path.is_dir():
        return Check(FAIL, "data folder", f"{path} does not exist",
                     "re-run `sudo scripts/provision.sh` (it makes it with the right owner)")
    if not os.access(path, os.W_OK):
        return Check(FAIL, "data folder", f"{path} is not writable by this user",
                     "run doctor as the service user (`sudo nsor doctor`), or re-run "
                     "provisioning to fix the owner")
    return Check(PASS, "data folder", f"{path} writable")


def _secret(config: Any) -> Check:
    path = Path(config.secret_path)
    try:
        st = path.stat()
    except FileNotFoundError:
        return Check(WARN, "secret", f"{path} does not exist yet; the service makes one at "
                     "its first start", "provisioning normally makes it: re-run it if the "
                     "data disk was replaced")
    except OSError as exc:
        return Check(FAIL, "secret", f"{path}: {exc.strerror or exc}",
                     "run doctor as the service user: `sudo nsor doctor`")
    if not stat.S_ISREG(st.st_mode):
        return Check(FAIL, "secret", f"{path} is not a regular file", "remove it and re-run "
                     "provisioning")
    if st.st_mode & 0o077:
        return Check(FAIL, "secret", f"{path} has mode {stat.S_IMODE(st.st_mode):04o}; the "
                     "service refuses a key others can read", f"sudo chmod 600 {path}")
    return Check(PASS, "secret", f"{path} present, mode 0600")
