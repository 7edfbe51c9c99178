"""Find the modems on a unit and say what each one is, before any configuration exists.

A technician with a hub of identical modems needs three facts per serial port: does it
speak AT (a Quectel EC25 shows four ports and answers on one), which SIM is behind it, and
what to write in ``appliance.toml``. :func:`probe_port` opens one port the way the service
does (:class:`~appliance.modem.port.Port`, exclusive lock, the sans-I/O session) and asks
read-only questions only: no PIN is ever sent (three wrong ones lock a SIM) and nothing is
written to the SIM. :func:`doctor <appliance.tools.doctor>` uses the same function for its modem
checks, so both commands describe a modem in the same words.

The suggested ``port`` is the stable name (``/dev/nsor/…`` from the unit's udev rules,
else ``/dev/serial/by-path/…``) because ``/dev/ttyUSB*`` numbers follow the order in which
modems happen to start (docs/field-notes.md: Pi practice).
"""

from __future__ import annotations

import glob
import json
import logging
import os
import queue
import re
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from ..errors import ModemCommandError, ModemError, ModemGone, ModemTimeout
from ..modem.atregistration import STAT_TEXT, sms_service
from ..modem.atsms import parse_storage_use
from ..modem.atvalues import Signal, own_number, parse_sim_state
from ..modem.families import registration_reports
from ..modem.interview import identify, read_imsi, read_network
from ..modem.port import Item, Port
from ..modem.session import ATSession

log = logging.getLogger(__name__)

#: Where stable names live, most preferred first: the unit's own udev names, then the
#: kernel's per-USB-socket links.
ALIAS_DIRS = (Path("/dev/nsor"), Path("/dev/serial/by-path"))

_NAME = re.compile(r"[a-z0-9_-]{1,32}")

#: TS 27.007 §7.2 <stat> of +CREG.
CREG_TEXT = STAT_TEXT


@dataclass
class ProbeResult:
    """What one port told us. ``error`` says in plain words why a field is missing."""

    port: str
    stable: str
    present: bool = True
    busy: bool = False
    answered: bool = False
    error: str = ""
    manufacturer: str = ""
    model: str = ""
    revision: str = ""
    imei: str = ""
    imsi: str = ""
    number: str = ""
    sim: str = ""              # +CPIN: READY / SIM PIN / SIM PUK / "not inserted"
    operator: str = ""
    rssi: int | None = None
    creg: int | None = None
    network: str = ""          # the SMS verdict in words (atregistration.sms_service)
    sms_ready: bool = False
    storage: str = ""
    sms_used: int | None = None
    sms_total: int | None = None
    notes: list[str] = field(default_factory=list)

    @property
    def registered(self) -> bool:
        """Registered for SMS, decided as the engine decides (SMS only, CSFB not
        preferred and LTE count; a GPRS/EPS state alone never takes it away)."""
        return self.sms_ready

    @property
    def bars(self) -> int:
        """0-5 bars from +CSQ rssi (0..31; 99 unknown), as the engine counts them."""
        return 0 if self.rssi is None else Signal(self.rssi).bars

    def as_dict(self) -> dict[str, Any]:
        return dict(asdict(self), registered=self.registered, bars=self.bars)


def is_url(port: str) -> bool:
    return "://" in port


def stable_name(device: str, alias_dirs: Sequence[Path] = ALIAS_DIRS) -> str:
    """The most stable name of ``device``: a symlink in the first of ``alias_dirs`` that
    has one resolving to the same device (``device`` itself if it is such a link), else
    ``device`` unchanged."""
    if is_url(device):
        return device
    try:
        target = Path(device).resolve(strict=True)
    except OSError:
        return device
    for d in alias_dirs:
        try:
            links = sorted(d.iterdir())
        except OSError:
            continue
        matches = [link for link in links if _resolves_to(link, target)]
        if matches:
            return device if Path(device) in matches else str(matches[0])
    return device


def _resolves_to(link: Path, target: Path) -> bool:
    try:
        return link.resolve(strict=True) == target
    except OSError:
        return False


def discover(patterns: Sequence[str] = (), alias_dirs: Sequence[Path] = ALIAS_DIRS) -> list[str]:
    """Ports to probe: the ``patterns`` given (globs, paths, pySerial URLs), else every
    serial port pySerial lists plus the stable names; one entry per device."""
    found: list[str] = []
    if patterns:
        for pat in patterns:
            if is_url(pat):
                found.append(pat)
                continue
            matches = sorted(glob.glob(pat))
            found.extend(matches or ([pat] if not glob.has_magic(pat) else []))
    else:
        from serial.tools import list_ports

        found = [p.device for p in list_ports.comports()]
        for d in alias_dirs:
            found.extend(sorted(glob.glob(str(d / "*"))))
    if patterns:
        return list(dict.fromkeys(found))  # what the technician named, in that order
    by_device: dict[str, str] = {}
    for port in found:
        by_device.setdefault(os.path.realpath(port), stable_name(port, alias_dirs))
    return list(by_device.values())


def probe_port(port: str, *, baudrate: int = 115200, flow_control: str = "none",
               timeout: float = 3.0, alias_dirs: Sequence[Path] = ALIAS_DIRS) -> ProbeResult:
    """Open ``port``, ask the read-only questions, close it. Never raises for a modem fault:
    a port that is missing, held or silent comes back with ``error`` saying so."""
    res = ProbeResult(port=port, stable=stable_name(port, alias_dirs))
    if not is_url(port) and not os.path.exists(port):
        res.present = False
        res.error = "not present (no such device)"
        return res
    plog = logging.getLogger(f"{__name__}.port")
    for attempt in (1, 2):
        mailbox: queue.Queue[Item] = queue.Queue()
        try:
            p = Port(port, baudrate=baudrate, flow_control=flow_control, mailbox=mailbox,
                     generation=1, logger=plog)
        except ModemError as exc:
            text = str(exc.__cause__ or exc)
            res.busy = "lock" in text.lower() or "busy" in text.lower()
            res.error = ("held by another process (the service, ModemManager, picocom…)"
                         if res.busy else f"cannot open: {text}")
            return res
        try:
            sess = ATSession(p, mailbox, plog, lambda: None)
            if not sess.resync(timeout):
                res.error = (f"does not answer AT at {baudrate} baud (not the modem's AT "
                             "port, modem off, or wrong baud rate)")
                return res
            res.answered = True
            _interview(sess, res, timeout)
            return res
        except ModemGone as exc:
            # A port that hangs up before its first answer is often a device still
            # enumerating (or a pty just created): one fresh open settles it.
            if attempt == 2 or res.answered:
                res.error = f"stopped answering: {exc}"
        except ModemError as exc:
            res.error = f"stopped answering: {exc}"
            return res
        finally:
            p.close()
        if res.error:
            return res
    return res


def _ask(sess: ATSession, res: ProbeResult, command: str, timeout: float) -> tuple[str, ...]:
    """Run one command; a refusal or silence becomes a note, not an exception."""
    try:
        return sess.run(command, timeout)
    except ModemCommandError as exc:
        res.notes.append(str(exc))
    except ModemTimeout:
        res.notes.append(f"{command}: no answer")
        if not sess.resync(timeout):
            raise
    return ()


def _interview(sess: ATSession, res: ProbeResult, t: float) -> None:
    _ask(sess, res, "ATE0", t)
    _ask(sess, res, "AT+CMEE=1", t)  # numeric +CME errors (TS 27.007 §9.1)
    def ask(command: str) -> tuple[str, ...]:
        return _ask(sess, res, command, t)
    ident = identify(ask)
    res.manufacturer, res.model, res.revision, res.imei = (
        ident.manufacturer, ident.model, ident.revision, ident.imei)
    try:
        res.sim = parse_sim_state(sess.run("AT+CPIN?", t))
    except ModemCommandError as exc:
        # TS 27.007 §9.2.1: CME 10 SIM not inserted, 13 SIM failure, 14 SIM busy.
        res.sim = {10: "NOT INSERTED", 13: "SIM FAILURE", 14: "SIM BUSY"}.get(
            exc.code or -1, f"error ({exc})")
    if res.sim == "READY":
        res.imsi = read_imsi(ask)
        res.number = own_number(_ask(sess, res, "AT+CNUM", t))  # TS 27.007 §7.1
        use = parse_storage_use(_ask(sess, res, "AT+CPMS?", t))
        if use:
            res.storage, res.sms_used, res.sms_total = use[0].memory, use[0].used, \
                use[0].total
    others = [n for n in registration_reports(res.manufacturer, res.model) if n != "+CREG"]
    # A 2G-only modem refuses +CEREG: not worth a note, so those are asked quietly.
    reading = read_network(ask, ("+CREG", *others), quiet=lambda command: sess.run(command, t))
    if reading.signal is not None:
        res.rssi = reading.signal.rssi
    regs = reading.registrations
    if "+CREG" in regs:
        res.creg = regs["+CREG"].stat
    service = sms_service(regs)
    res.sms_ready, res.network = service.able, service.reason
    if reading.operator is not None:
        res.operator = reading.operator.name


def probe_all(ports: Sequence[str], *, baudrate: int = 115200, timeout: float = 3.0,
              alias_dirs: Sequence[Path] = ALIAS_DIRS) -> list[ProbeResult]:
    """Probe every port at once (one owner thread per port, as in the service): a silent
    port costs its timeout once, not once per port."""
    if not ports:
        return []
    with ThreadPoolExecutor(max_workers=min(8, len(ports)), thread_name_prefix="probe") as pool:
        return list(pool.map(lambda p: probe_port(p, baudrate=baudrate, timeout=timeout,
                                                  alias_dirs=alias_dirs), ports))


def modem_name(stable: str, taken: set[str]) -> str:
    """The shipped configuration's naming: ``/dev/nsor/modemN`` (hub socket N+1) is
    ``simN``; another port keeps its own short name when it is a valid one (a simulator's
    ``sim2``); else the next free ``simN``."""
    base = Path(stable).name.lower() if not is_url(stable) else ""
    if base.startswith("modem"):
        base = "sim" + base[len("modem"):]
    if _NAME.fullmatch(base) and base not in taken:
        return base
    n = 0
    while f"sim{n}" in taken:
        n += 1
    return f"sim{n}"


def config_block(results: Sequence[ProbeResult], baudrate: int = 115200,
                 config: Any = None) -> str:
    """Ready-to-paste ``[[modems]]`` tables for the ports that answered AT. With ``config``
    (the unit's configuration), a port it already has keeps that modem's name and only new
    ports get a table."""
    blocks: list[str] = []
    configured = {m.port: m.name for m in config.modems} if config is not None else {}
    names: set[str] = set(configured.values())
    for res in (r for r in results if r.answered):
        known = configured.get(res.stable) or configured.get(res.port)
        name = known or modem_name(res.stable, names)
        names.add(name)
        if known:
            blocks.append(f"# {name} ({res.stable}) is already in the configuration")
            continue
        what = " ".join(x for x in (res.manufacturer, res.model) if x) or "modem"
        lines = [f"# {what}, IMEI {res.imei or '?'}, IMSI {res.imsi or '?'}"
                 + (f", number {res.number}" if res.number else "")
                 + f", {res.operator or 'no operator'}, signal {res.bars}/5",
                 "[[modems]]", f'name = "{name}"', f'port = "{res.stable}"']
        if baudrate != 115200:
            lines.append(f"baudrate = {baudrate}")
        if res.sim == "SIM PIN":
            lines.append('pin = "0000"  # this SIM asks for a PIN: write the real one here')
        elif res.sim and res.sim != "READY":
            lines.append(f"# SIM state {res.sim}: fix the SIM before the unit can use it")
        if res.stable == res.port and not is_url(res.port) and "/dev/nsor/" not in res.port \
                and "/by-path/" not in res.port and res.port.startswith("/dev/"):
            lines.append("# this name may change at the next boot: give the modem a stable "
                         "name (docs/technician.md, section 6)")
        blocks.append("\n".join(lines))
    return "\n\n".join(blocks) + ("\n" if blocks else "")


def own_numbers_line(results: Sequence[ProbeResult], config: Any = None) -> str:
    """``own_numbers = [...]`` for ``[unit]``: the configuration's numbers and every SIM's
    own number (``AT+CNUM``), with a note for the SIMs that do not store theirs."""
    numbers: list[str] = list(config.unit.own_numbers) if config is not None else []
    configured = {m.port: m.name for m in config.modems} if config is not None else {}
    names: set[str] = set(configured.values())
    unknown: list[str] = []
    for res in (r for r in results if r.answered):
        name = (configured.get(res.stable) or configured.get(res.port)
                or modem_name(res.stable, names))
        names.add(name)
        if res.number and res.number not in numbers:
            numbers.append(res.number)
        elif not res.number:
            unknown.append(name)
    line = f"own_numbers = [{', '.join(json.dumps(n) for n in numbers)}]"
    if unknown:
        line += (f"\n# the SIM of {', '.join(unknown)} does not store its own number: send "
                 "an SMS from it to a phone and add the number that phone shows")
    return line + "\n"
