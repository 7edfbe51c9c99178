"""The technician's commands: ``status``, ``doctor``, ``probe`` and ``send-test``.

They talk to the *running* service wherever they can, never around it: ``status`` and
``doctor`` read its ``/status.json`` (the service alone owns the modem ports, and two
programs on one port lose SMS), and ``send-test`` queues its message in ``state.db``, where
the service's modem owners pick up work anyway. Only when the service is not running do
they fall back to the files (``state.db``, ``registry.db``) or, for ``doctor`` and
``probe``, open the ports themselves, and they say so plainly.

Every command returns an exit status; deliberate failures are one line, never a traceback
(the main CLI turns any ApplianceError into ``error: …``).
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from ..config.credentials import redact_credentials, redact_tree
from ..errors import ConfigError, StoreError
from ..rules.wording import plural
from ..status.format import MODEM_COLUMNS, fmt_duration, modem_cells, modem_level
from ..status.server import fetch_status
from ..version import __version__

#: Exit status when the service is not running (as ``systemctl status`` uses it).
NOT_RUNNING = 3
_STYLE = {"ok": "green", "warn": "yellow", "bad": "bold red"}


def add_parsers(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register the technician commands on the main parser's subparsers."""
    sp = sub.add_parser("status", help="modems, queue, registry, disk and alarms of the "
                        "running unit")
    config_arg(sp)
    sp.add_argument("--json", action="store_true", help="print the raw status as JSON")
    sp.add_argument("--wide", action="store_true", help="every column and whole error "
                    "texts (wider than 80 columns)")
    sp.set_defaults(func=cmd_status)

    sp = sub.add_parser("doctor", help="check everything a working unit needs; PASS/FAIL "
                        "with the fix to try")
    config_arg(sp)
    sp.add_argument("--timeout", type=float, default=3.0, metavar="S",
                    help="wait this long for each modem answer (3)")
    profile = sp.add_mutually_exclusive_group()
    profile.add_argument("--field", dest="field", action="store_const", const=True,
                         default=None, help="fail what a unit must not take to site (demo "
                         "root, no repository URL, placeholder correction number, sample "
                         "registry, no own_numbers); the default for /etc/nsor/appliance.toml")
    profile.add_argument("--lab", dest="field", action="store_const", const=False,
                         help="a rehearsal: those only warn (the default for any other "
                         "configuration file)")
    sp.set_defaults(func=cmd_doctor)

    sp = sub.add_parser("probe", help="find the modems on the serial ports and print a "
                        "[[modems]] block (stop the service first)")
    sp.add_argument("--ports", nargs="+", default=[], metavar="GLOB",
                    help="ports to probe: paths, globs or pySerial URLs (default: every "
                    "serial port, /dev/nsor/*, /dev/serial/by-path/*)")
    sp.add_argument("--baudrate", type=int, default=115200, help="serial speed (115200)")
    sp.add_argument("--timeout", type=float, default=3.0, metavar="S",
                    help="wait this long for a port to answer AT (3)")
    sp.add_argument("--json", action="store_true", help="print the findings as JSON")
    sp.add_argument("--config", type=Path, default=None,
                    help="the unit's configuration: its modems keep their names, its ports "
                    "are probed too, and own_numbers keeps the numbers it has")
    sp.set_defaults(func=cmd_probe)

    sp = sub.add_parser("send-test", help="send one test SMS through the running service")
    config_arg(sp)
    sp.add_argument("number", help="the phone to send to, e.g. 03001234567")
    sp.add_argument("--modem", default=None, metavar="NAME",
                    help="the modem to send from (its name in the configuration)")
    sp.add_argument("--text", default=None, help="message text (default: a short test text)")
    sp.add_argument("--wait", type=float, default=120.0, metavar="S",
                    help="wait this long for the outcome (120)")
    sp.set_defaults(func=cmd_send_test)

    from .backup import add_parsers as backup_parsers
    from .balance import add_parsers as balance_parsers
    balance_parsers(sub, config_arg)
    backup_parsers(sub, config_arg)


def _console() -> Console:
    # Piped output (scripts, tests, `| less`) gets a wide, colourless table rather than
    # one folded to 80 columns.
    return Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 140)


# -- status --------------------------------------------------------------------------------

def cmd_status(args: argparse.Namespace) -> int:
    from ..config import load_config

    config = load_config(args.config)
    snap, why = fetch_status(config.status.http_bind)
    live = snap is not None
    if snap is None:
        snap = offline_snapshot(config)
    snap = redact_tree(snap)  # the sync status file may name the repository with its password
    snap["source"] = "service" if live else "files"
    if args.json:
        print(json.dumps(snap, indent=1, default=str, ensure_ascii=False))
        return 0 if live else NOT_RUNNING
    if args.wide:
        con = _console()
    else:
        import shutil
        width = shutil.get_terminal_size((80, 24)).columns
        con = Console(highlight=False, width=width, no_color=not sys.stdout.isatty())
    if not live and not config.status.http_bind:
        con.print(f"[yellow]cannot ask the service[/]: {escape(why)}. Modem states are "
                  "unknown; queue and counts below are read from state.db.")
    elif not live:
        con.print(f"[bold red]service not running[/] ({escape(why)}).\n"
                  "Modem states are unknown; queue and counts below are read from state.db. "
                  "Start it: sudo systemctl start nsor-appliance")
        if snap.get("note"):
            con.print(escape(snap["note"]))
    if args.wide:
        render_status(con, snap)
    else:
        from ..status.text import render
        for line in render(snap, con.width):
            con.print(line, overflow="ellipsis", no_wrap=True, crop=True)
    return 0 if live else NOT_RUNNING


def render_status(con: Console, snap: dict[str, Any]) -> None:
    from ..status.text import summary

    version = f", version {snap['version']}" if snap.get("version") else ""
    if snap.get("uptime_s") is not None:
        version += f", up {fmt_duration(snap['uptime_s'])}"
    table = Table(title=f"unit {snap.get('unit', '')}{version}", title_justify="left")
    for col in MODEM_COLUMNS + ["port", "balance"]:
        table.add_column(col, overflow="fold")
    now = time.time()
    for m in snap.get("modems") or []:
        cells = [escape(c) for c in modem_cells(m)]
        level = modem_level(m) if snap.get("source") != "files" else "warn"
        cells[1] = f"[{_STYLE[level]}]{cells[1]}[/]"
        if m.get("last_error_at"):
            cells[-1] += f" ({fmt_duration(now - m['last_error_at'])} ago)"
        balance = "-"
        if m.get("balance_at"):
            amount = "?" if m.get("balance") is None else f"{m['balance']:.2f}"
            balance = f"{amount} ({fmt_duration(now - m['balance_at'])} ago)"
        table.add_row(*cells, escape(str(m.get("port") or "")), escape(balance))
    con.print(table)
    for label, text, level in summary(snap):
        con.print(f"{label:>9}: [{_STYLE[level]}]{escape(text)}[/]")
    from ..status.text import version_line

    text, level = version_line(snap)
    con.print(f"{'version':>9}: [{_STYLE[level]}]{escape(text)}[/]")
    alarms = snap.get("alarms") or []
    if alarms:
        for a in alarms:
            con.print(f"[bold red]   ALARM[/] {escape(str(a.get('kind')))}: "
                      f"{escape(str(a.get('message')))}")
    elif snap.get("source") != "files":
        con.print("   alarms: none")


def offline_snapshot(config: Any) -> dict[str, Any]:
    """What can be known without the service: counts from ``state.db`` (never created
    here), the registry file, the disk. Same shape as ``Service.snapshot()``."""
    import shutil
    from datetime import datetime, timedelta, timezone

    from ..registry.lookup import Registry, is_stale
    from ..registry.status import sync_status

    modems = [{"name": m.name, "port": m.port, "state": "not running", "rssi": None,
               "queue": 0, "sent_hour": None, "sent_day": None, "hourly_cap": m.hourly_cap,
               "daily_cap": m.daily_cap, "last_error": ""} for m in config.enabled_modems]
    snap: dict[str, Any] = {"unit": config.unit.name, "time": time.time(), "modems": modems,
                            "alarms": [], "version": __version__}
    if config.state_path.is_file():
        from ..outbox.table import ReplyTable
        from ..state.store import Outbound, Store

        store = Store(config.state_path)
        try:
            replies = ReplyTable()
            depth = replies.queue_depth()
            now = time.time()
            for m in modems:
                times = replies.part_times(m["name"], now - 86400)
                m.update(queue=depth.get(m["name"], 0), sent_day=len(times),
                         sent_hour=sum(t >= now - 3600 for t in times))
                row = (Outbound.select(Outbound.last_error)
                       .where((Outbound.modem == m["name"]) & Outbound.last_error.is_null(False))
                       .order_by(Outbound.updated_at.desc()).first())
                m["last_error"] = row.last_error if row is not None else ""
            snap["queue"] = {"pending": replies.pending_count(), "unassigned": depth.get(None, 0)}
            snap["counts"] = store.counts()
        finally:
            store.close()
    else:
        snap["note"] = f"no message store at {config.state_path} yet (made at first start)"
    with Registry(config.registry_path) as reg:
        info = reg.info()
    now_dt = datetime.now(timezone.utc)
    age = info.age(now_dt)
    stale = is_stale(info, timedelta(hours=config.registry.max_age_hours), now_dt)
    state = ("missing" if not info.exists else "corrupt" if not info.usable
             else "stale" if stale else "ok")
    snap["registry"] = {"state": state, "version": info.version, "records": info.record_count,
                        "age_s": age.total_seconds() if age is not None else None,
                        "max_age_s": config.registry.max_age_hours * 3600, "error": info.error,
                        "sync": sync_status(config.registry_path)}
    data_dir = Path(config.unit.data_dir)
    if data_dir.is_dir():
        disk = shutil.disk_usage(data_dir)
        snap["disk"] = {"path": str(data_dir), "total": disk.total, "used": disk.used,
                        "free": disk.free}
    return snap


# -- doctor --------------------------------------------------------------------------------

def cmd_doctor(args: argparse.Namespace) -> int:
    from .doctor import FAIL, field_profile, run_checks

    con = _console()
    failed = 0
    field = field_profile(args.config, args.field)
    con.print("profile: field (a unit going to site; --lab for a rehearsal)" if field else
              "profile: lab (a rehearsal; --field checks what a unit needs on site)")
    for check in run_checks(args.config, timeout=args.timeout, field=field):
        style = {"PASS": "green", "WARN": "yellow", "FAIL": "bold red"}.get(check.level, "cyan")
        con.print(f"[{style}]{check.level}[/]  {escape(check.what)}: "
                  f"{escape(redact_credentials(check.detail))}")
        if check.fix and check.level != "PASS":
            con.print(f"      fix: {escape(redact_credentials(check.fix))}")
        failed += check.level == FAIL
    con.print(f"\n{plural(failed, 'check', 'checks')} failed." if failed
              else "\nAll checks passed.")
    return 1 if failed else 0


# -- probe ---------------------------------------------------------------------------------

def cmd_probe(args: argparse.Namespace) -> int:
    from .probe import config_block, discover, own_numbers_line, probe_all

    config = None
    ports = discover(args.ports)
    if args.config is not None:
        from ..config import load_config
        config = load_config(args.config)
        if not args.ports:  # the configured ports too (a pty, a URL, a by-path name)
            ports += [m.port for m in config.modems if m.port not in ports]
    results = probe_all(ports, baudrate=args.baudrate, timeout=args.timeout)
    block = config_block(results, args.baudrate, config)
    own = own_numbers_line(results, config)
    answered = [r for r in results if r.answered]
    if args.json:
        print(json.dumps({"ports": [r.as_dict() for r in results], "config": block,
                          "own_numbers": own}, indent=1))
        return 0 if answered else 1
    con = _console()
    if not ports:
        con.print("No serial ports found. Is a modem plugged in (`lsusb`), and its driver "
                  "loaded (`ls /dev/ttyUSB* /dev/ttyACM*`)?")
        return 1
    table = Table(title="modems", title_justify="left")
    for col in ("port", "modem", "IMEI", "IMSI", "operator", "signal", "SIM", "SMS store"):
        table.add_column(col, overflow="fold")
    for r in answered:
        store = f"{r.storage} {r.sms_used}/{r.sms_total}" if r.sms_total is not None else "?"
        table.add_row(*(escape(x) for x in (
            r.stable, " ".join(x for x in (r.manufacturer, r.model, r.revision) if x),
            r.imei, r.imsi, r.operator or "not registered",
            f"{r.bars}/5 (rssi {r.rssi})", r.sim or "?", store)))
    if answered:
        con.print(table)
    for r in results:
        if not r.answered:
            con.print(f"[yellow]{escape(r.port)}[/]: {escape(r.error)}")
    if not answered:
        con.print("No port answered AT. Stop the service first if it runs "
                  "(sudo systemctl stop nsor-appliance); check power and cables.")
        return 1
    where = args.config or "/etc/nsor/appliance.toml"
    print(f"\n# In the [unit] table of {where}:\n")
    print(own, end="")
    print(f"\n# At the end of {where}:\n")
    print(block, end="")
    return 0


# -- send-test -----------------------------------------------------------------------------

def cmd_send_test(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..outbox.queue import queue_sms
    from ..state.store import Outbound, Store

    config = load_config(args.config)
    names = [m.name for m in config.enabled_modems]
    if args.modem is not None and args.modem not in names:
        raise ConfigError(f"--modem {args.modem}: no enabled modem of that name in "
                          f"{args.config}; choose one of: {', '.join(names) or '(none)'}")
    digits = args.number.replace(" ", "").replace("-", "")
    if not digits.lstrip("+").isdigit() or not 3 <= len(digits.lstrip("+")) <= 15:
        raise ConfigError(f"{args.number!r} is not a phone number; write e.g. 03001234567")
    if not config.state_path.is_file():
        raise StoreError(f"no message store at {config.state_path}: start the service once "
                         "(sudo systemctl start nsor-appliance), then try again")
    text = args.text or (f"NSOR test from unit {config.unit.name}"
                         f"{' modem ' + args.modem if args.modem else ''} at "
                         f"{time.strftime('%Y-%m-%d %H:%M')}")
    snap, why = fetch_status(config.status.http_bind)
    store = Store(config.state_path)
    try:
        oid, recipient = queue_sms(to=digits, country_code=config.unit.country_code,
                                   text=text, kind="test", preferred_modem=args.modem,
                                   ref16=any(m.concat_ref16 for m in config.enabled_modems))
        via = f"modem {args.modem}" if args.modem else "any modem"
        print(f"test SMS #{oid} to {recipient} queued for {via}.")
        if snap is None and config.status.http_bind:
            print(f"service not running ({why}): the test SMS stays queued and goes out "
                  "when the service starts (sudo systemctl start nsor-appliance).")
            return NOT_RUNNING
        return _wait_outcome(Outbound, oid, args.modem, args.wait)
    finally:
        store.close()


def _wait_outcome(outbound: Any, oid: int, modem: str | None, wait: float) -> int:
    start = time.monotonic()
    seen = ""
    while True:
        row = outbound.get_by_id(oid)
        note = f"{row.status}{': ' + row.last_error if row.last_error else ''}"
        if note != seen and row.status not in ("queued", "sent", "delivered", "failed"):
            print(f"  … {note}")
        seen = note
        took = time.monotonic() - start
        if row.status in ("sent", "delivered"):
            print(f"SENT by modem {row.modem} in {took:.0f} s "
                  f"({plural(row.parts, 'part', 'parts')}).")
            if modem and row.modem != modem:
                print(f"note: {modem} was not available, so {row.modem} sent it; "
                      "`nsor status` says why.")
            return 0
        if row.status == "failed":
            print(f"FAILED on modem {row.modem}: {row.last_error}")
            return 1
        if took >= wait:
            print(f"no outcome after {fmt_duration(wait)}: still {note}. It stays queued; "
                  "`nsor status` shows whether the modem is in service.")
            return 1
        time.sleep(0.25)
