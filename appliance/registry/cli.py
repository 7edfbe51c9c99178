"""Command-line front of the registry: ``registry …`` subcommands and ``sync``.

The appliance's main parser calls :func:`add_parsers` with its subparsers; every command
sets ``func`` (``handler(args) -> int``) and returns an exit status, printing one clear
line for a technician or operator instead of a traceback on any ``ApplianceError``.

Unit-side commands (``import``, ``info``, ``lookup``, ``status``, ``sync``) take the
registry settings from ``--db/--url/--root`` when given, else from the ``[registry]``
section of the configuration file in ``args.config`` (the main parser's ``--config``).
Publisher commands (``publish``, ``keys …``) need ``--repo`` and ``--keys`` and no
configuration: they run on the operator's machine, not on a unit.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Callable
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from appliance.errors import ApplianceError
from appliance.registry.importer import import_file
from appliance.registry.lookup import Registry, is_stale

Handler = Callable[[argparse.Namespace], int]


def add_parsers(subparsers: Any,
                config_arg: Callable[[argparse.ArgumentParser], None] | None = None) -> None:
    """Add ``registry`` (with its subcommands) and ``sync`` to the main parser.

    ``config_arg(parser)`` adds the main CLI's ``--config`` option to a unit-side command;
    without it a ``--config`` defaulting to ``$NSOR_CONFIG`` or /etc/nsor/appliance.toml
    is added here.
    """
    global _config_arg
    _config_arg = config_arg or _default_config_arg
    reg = subparsers.add_parser("registry", help="inspect, import and publish the registry")
    sub = reg.add_subparsers(dest="registry_command", required=True, metavar="COMMAND")

    p = sub.add_parser("import", help="build registry.db from a CSV/NDJSON export")
    p.add_argument("file", type=Path)
    p.add_argument("--version", type=int, default=None, help="version to record")
    p.add_argument("--source", default=None, help="provenance to record")
    p.add_argument("--drop-removed", action="store_true",
                   help="leave out records whose status is 'removed'")
    _mass_removal_option(p)
    _unit_options(p)
    p.set_defaults(func=cmd_import)

    p = sub.add_parser("info", help="version, record count and age of registry.db")
    p.add_argument("--json", action="store_true")
    _unit_options(p)
    p.set_defaults(func=cmd_info)

    p = sub.add_parser("lookup", help="look one CNIC up in registry.db")
    p.add_argument("cnic")
    _unit_options(p)
    p.set_defaults(func=cmd_lookup)

    p = sub.add_parser("status", help="registry and last sync (version, errors)")
    p.add_argument("--json", action="store_true")
    _unit_options(p)
    p.set_defaults(func=cmd_status)

    p = sub.add_parser("publish", help="operator: sign a new registry version")
    p.add_argument("export", type=Path, help="CSV or NDJSON export")
    p.add_argument("--version", type=int, default=None,
                   help="version number (default: the published one + 1)")
    p.add_argument("--keep-deltas", type=int, default=30)
    p.add_argument("--notify", type=Path, default=None, metavar="CENTRE_TOML",
                   help="then post the retained 'latest version' hint through the broker "
                   "in this file's [fleet] section (docs/fleet.md)")
    p.add_argument("--source", default=None)
    _mass_removal_option(p)
    _publisher_options(p)
    p.set_defaults(func=cmd_publish)

    keys = sub.add_parser("keys", help="operator: create, rotate keys; re-sign timestamp")
    ksub = keys.add_subparsers(dest="keys_command", required=True, metavar="COMMAND")
    p = ksub.add_parser("init", help="create keys and an empty signed repository")
    p.add_argument("--export-root", type=Path, default=None,
                   help="write the trusted root for firmware_config/ here")
    _publisher_options(p)
    p.set_defaults(func=cmd_keys_init)
    p = ksub.add_parser("rotate", help="replace a role's key (new root version)")
    p.add_argument("role", choices=("root", "targets", "snapshot", "timestamp"))
    p.add_argument("--export-root", type=Path, default=None)
    _publisher_options(p)
    p.set_defaults(func=cmd_keys_rotate)
    p = ksub.add_parser("timestamp", help="re-sign timestamp.json (run from cron)")
    _publisher_options(p)
    p.set_defaults(func=cmd_keys_timestamp)
    p = ksub.add_parser("export-root", help="write the current root metadata")
    p.add_argument("out", type=Path)
    _publisher_options(p)
    p.set_defaults(func=cmd_keys_export_root)

    p = subparsers.add_parser("sync", help="pull the signed registry now (progress bar)")
    p.add_argument("--no-progress", action="store_true")
    _unit_options(p)
    p.set_defaults(func=cmd_sync)


def _default_config_arg(p: argparse.ArgumentParser) -> None:
    default = Path(os.environ.get("NSOR_CONFIG", "/etc/nsor/appliance.toml"))
    p.add_argument("--config", type=Path, default=default,
                   help=f"configuration file (default {default}, or $NSOR_CONFIG)")


_config_arg: Callable[[argparse.ArgumentParser], None] = _default_config_arg


def _unit_options(p: argparse.ArgumentParser) -> None:
    _config_arg(p)
    p.add_argument("--db", type=Path, default=None, help="registry.db (default: config)")
    p.add_argument("--url", default=None, help="repository URL (default: config)")
    p.add_argument("--root", type=Path, default=None, help="trusted root (default: config)")


def _mass_removal_option(p: argparse.ArgumentParser) -> None:
    p.add_argument("--allow-mass-removal", metavar="REASON", default=None,
                   help="accept an export with no active record, or one removing more than "
                        "5 %% of the active records; REASON (who decided, why) is recorded "
                        "in the signed registry")


def _publisher_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--repo", type=Path, required=True, help="publisher directory")
    p.add_argument("--keys", type=Path, required=True, help="private key directory")
    p.add_argument("--targets-days", type=float, default=None,
                   help="validity of targets/snapshot metadata (default 14)")
    p.add_argument("--timestamp-days", type=float, default=None,
                   help="validity of timestamp metadata (default 2)")


def _guarded(handler: Handler) -> Handler:
    def run(args: argparse.Namespace) -> int:
        try:
            return int(handler(args))
        except ApplianceError as exc:
            from appliance.config.credentials import redact_credentials
            print(f"error: {redact_credentials(str(exc))}", file=sys.stderr)
            return 1
    run.__name__ = handler.__name__
    run.__doc__ = handler.__doc__
    return run


def _settings(args: argparse.Namespace, *, remote: bool = False) -> Any:
    """Registry settings: flags first, else the [registry] section of ``args.config``
    (``remote``: the repository URL and trusted root are needed too)."""
    cfg: Any = None
    if args.db is None or (remote and not (args.url and args.root)):
        config_path = getattr(args, "config", None)
        if config_path is None:
            raise ApplianceError("no configuration: pass --config FILE (or --db, and for "
                                 "sync also --url and --root)")
        from appliance.config import load_config  # late: the CLI must start without it
        config = load_config(Path(config_path))
        cfg = config.registry
    return SimpleNamespace(
        path=args.db or config.registry_path,
        repository_url=args.url or (cfg.repository_url if cfg else ""),
        trusted_root=args.root or (cfg.trusted_root if cfg else None),
        max_age_hours=cfg.max_age_hours if cfg else 72)


@_guarded
def cmd_import(args: argparse.Namespace) -> int:
    s = _settings(args)
    n = import_file(args.file, s.path, version=args.version, source=args.source,
                    include_removed=not args.drop_removed,
                    allow_mass_removal=args.allow_mass_removal)
    with Registry(s.path) as registry:
        active = registry.info().record_count or 0
    # Removed records are kept (so a later delta can say "removed"), but only active ones
    # can ever be a verdict: say both, not a total a technician would misread.
    print(f"imported {n} records from {args.file} into {s.path}: {active} active, "
          f"{n - active} removed (never answered)")
    return 0


@_guarded
def cmd_info(args: argparse.Namespace) -> int:
    s = _settings(args)
    with Registry(s.path) as registry:
        info = registry.info()
    now = datetime.now(timezone.utc)
    stale = is_stale(info, timedelta(hours=s.max_age_hours), now)
    fields = {"path": str(info.path), "exists": info.exists, "version": info.version,
              "record_count": info.record_count, "source": info.source,
              "signed_at": info.signed_at, "imported_at": info.imported_at,
              "expires_at": info.expires_at, "age": info.age(now), "stale": stale,
              "error": info.error}
    _show("registry", fields, args.json)
    return 0 if info.usable else 1


@_guarded
def cmd_lookup(args: argparse.Namespace) -> int:
    from appliance.rules.cnic import normalise_cnic
    cnic = normalise_cnic(args.cnic)
    if cnic is None:
        print(f"error: {args.cnic!r} is not a 13-digit CNIC", file=sys.stderr)
        return 2
    with Registry(_settings(args).path) as registry:
        record = registry.lookup(cnic)
    if record is None:
        print(f"{cnic}: no active record")
        return 0
    print(f"{cnic}: {record.name_en} {record.relation} {record.parent_en} | "
          f"{record.name_ur} {record.relation} {record.parent_ur} "
          f"(recorded {record.recorded_on or '?'})")
    return 0


@_guarded
def cmd_status(args: argparse.Namespace) -> int:
    from appliance.registry.status import sync_status
    status = sync_status(_settings(args).path)
    _show("registry sync", status, args.json)
    return 0 if status["healthy"] else 1


@_guarded
def cmd_sync(args: argparse.Namespace) -> int:
    from appliance.registry.sync import RegistrySync
    s = _settings(args, remote=True)
    if args.no_progress or not sys.stdout.isatty():
        result = RegistrySync(s.path, s.repository_url, s.trusted_root).sync()
    else:
        from rich.progress import (
            BarColumn, DownloadColumn, Progress, TextColumn, TransferSpeedColumn,
        )
        with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(),
                      TransferSpeedColumn(), transient=False) as bar:
            tasks: dict[str, Any] = {}

            def progress(label: str, done: int, total: int) -> None:
                if label not in tasks:
                    tasks[label] = bar.add_task(label, total=total)
                bar.update(tasks[label], completed=done)

            result = RegistrySync(s.path, s.repository_url, s.trusted_root,
                                  progress=progress).sync()
    verb = {"current": "already current at", "delta": "updated by delta to",
            "snapshot": "installed snapshot"}[result.action]
    print(f"registry {verb} version {result.to_version} ({result.record_count} records, "
          f"{result.seconds:.1f} s)")
    return 0


def _publisher(args: argparse.Namespace, **kwargs: Any) -> Any:
    from appliance.registry.publish import Publisher
    expiry: dict[str, timedelta] = {}
    if args.targets_days is not None:
        expiry["targets"] = expiry["snapshot"] = timedelta(days=args.targets_days)
    if args.timestamp_days is not None:
        expiry["timestamp"] = timedelta(days=args.timestamp_days)
    return Publisher(args.repo, args.keys, expiry=expiry, **kwargs)


@_guarded
def cmd_publish(args: argparse.Namespace) -> int:
    result = _publisher(args, keep_deltas=args.keep_deltas).publish(
        args.export, version=args.version, source=args.source,
        allow_mass_removal=args.allow_mass_removal)
    delta = (f"delta {result.delta.upserts} upserts / {result.delta.removals} removals "
             f"({result.delta_bytes} bytes)" if result.delta else "no delta")
    print(f"published version {result.version}: {result.record_count} records, snapshot "
          f"{result.snapshot_bytes} bytes, {delta}; upload {args.repo / 'public'}")
    if args.notify is not None:
        # After the files: a unit told before they are served would find nothing new.
        from appliance.fleet.centre import centre_settings, publish_hint
        publish_hint(centre_settings(args.notify), result.version,
                     datetime.now(timezone.utc).isoformat(timespec="seconds"))
        print(f"posted the retained hint: version {result.version} is the latest")
    return 0


@_guarded
def cmd_keys_init(args: argparse.Namespace) -> int:
    _publisher(args).init(args.export_root)
    where = args.export_root or "(use `registry keys export-root` to write it)"
    print(f"created keys in {args.keys} and repository {args.repo / 'public'}; "
          f"trusted root for units: {where}")
    return 0


@_guarded
def cmd_keys_rotate(args: argparse.Namespace) -> int:
    keyid = _publisher(args).rotate(args.role, args.export_root)
    print(f"{args.role} key rotated to {keyid[:12]}; publish or upload "
          f"{args.repo / 'public'} now")
    return 0


@_guarded
def cmd_keys_timestamp(args: argparse.Namespace) -> int:
    version = _publisher(args).resign_timestamp()
    print(f"timestamp re-signed (version {version}); upload "
          f"{args.repo / 'public' / 'metadata' / 'timestamp.json'}")
    return 0


@_guarded
def cmd_keys_export_root(args: argparse.Namespace) -> int:
    data = _publisher(args).repo.root_bytes()
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_bytes(data)
    print(f"wrote trusted root to {args.out}")
    return 0


def _show(title: str, fields: dict[str, Any], as_json: bool) -> None:
    if as_json:
        print(json.dumps(fields, default=str, indent=1, ensure_ascii=False))
        return
    from rich.console import Console
    from rich.table import Table
    table = Table(title=title, show_header=False)
    for key, value in fields.items():
        table.add_row(_LABELS.get(key, key.replace("_", " ")), _shown(value))
    Console().print(table)


#: Words for a person in place of the JSON keys (``--json`` keeps the keys).
_LABELS = {"path": "file", "exists": "installed", "record_count": "active records",
           "signed_at": "signed", "expires_at": "expires", "imported_at": "installed at",
           "last_attempt": "last sync attempt", "last_success": "last successful sync",
           "last_result": "last sync result", "last_error": "last sync error",
           "consecutive_failures": "failed syncs in a row", "healthy": "healthy",
           "age": "age", "stale": "too old to answer"}


def _shown(value: Any) -> str:
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, datetime):
        return value.astimezone(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    if isinstance(value, timedelta):
        from appliance.status.format import fmt_duration
        return fmt_duration(value.total_seconds())
    if isinstance(value, dict) and "message" in value:
        return f"{value.get('message')} ({value.get('kind') or '?'}, {value.get('at') or '?'})"
    return str(value)
