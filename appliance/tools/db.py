"""``python -m appliance db status|migrate|check``: the schema versions of ``state.db`` and
``registry.db`` (appliance.state.migrate), for technicians and the Debian package's scripts.

* ``status`` says where each file stands against this release.
* ``migrate`` runs the forward migrations now (postinst does, so that a migration that
  cannot run fails the upgrade in the technician's terminal, not the service at 3 a.m.).
* ``check --state-schema N --registry-schema M`` answers, read-only, "can a release that
  reads these schema versions use the files?": the preinst of an *older* package asks the
  installed (newer) code before anything is unpacked, and refuses the downgrade on "no".

Exit status: 0 usable, 1 not usable (the message says why and what to do).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import Any

from ..errors import SchemaError
from ..state.migrate import Schema, Status, check_file, open_and_upgrade

NOT_USABLE = 1


def add_parsers(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    db = sub.add_parser("db", help="schema versions of state.db and registry.db: status, "
                                   "migrate, check")
    dbsub = db.add_subparsers(dest="db_command", required=True, metavar="COMMAND")

    def where(sp: argparse.ArgumentParser) -> None:
        config_arg(sp)
        sp.add_argument("--data-dir", type=Path, default=None,
                        help="the folder of state.db and registry.db (default: the "
                             "configuration's unit.data_dir)")

    sp = dbsub.add_parser("status", help="each file's schema version against this release's")
    where(sp)
    sp.set_defaults(func=cmd_status)
    sp = dbsub.add_parser("migrate", help="run the forward migrations now")
    where(sp)
    sp.set_defaults(func=cmd_migrate)
    sp = dbsub.add_parser("check", help="can a release reading these schema versions use "
                                        "the files? (read-only; for a downgrade)")
    where(sp)
    sp.add_argument("--state-schema", type=int, required=True)
    sp.add_argument("--registry-schema", type=int, required=True)
    sp.set_defaults(func=cmd_check)


def _files(args: argparse.Namespace) -> list[tuple[Path, Schema]]:
    from ..registry.models import REGISTRY_SCHEMA
    from ..state.store import STATE_SCHEMA

    if args.data_dir is not None:
        state, registry = args.data_dir / "state.db", args.data_dir / "registry.db"
    else:
        from ..config import load_config
        config = load_config(args.config)
        state, registry = config.state_path, config.registry_path
    return [(state, STATE_SCHEMA), (registry, REGISTRY_SCHEMA)]


def _statuses(files: list[tuple[Path, Schema]]) -> list[Status]:
    return [check_file(path, schema) for path, schema in files if path.is_file()]


def cmd_status(args: argparse.Namespace) -> int:
    files = _files(args)
    for path, _ in files:
        if not path.is_file():
            print(f"{path.name}: none yet at {path}")
    results = _statuses(files)
    for st in results:
        print(st.describe())
    return 0 if all(st.readable for st in results) else NOT_USABLE


def cmd_migrate(args: argparse.Namespace) -> int:
    from ..state.store import PRAGMAS

    failed = 0
    for path, schema in _files(args):
        if not path.is_file():
            continue
        try:
            steps = open_and_upgrade(path, schema, PRAGMAS if schema.name == "state.db" else None)
        except SchemaError as exc:
            print(f"error: {exc}")
            failed += 1
            continue
        done = ", ".join(f"{s.version} ({s.description})" for s in steps)
        print(f"{schema.name}: schema {schema.current}" + (f", applied {done}" if steps else
                                                           ", nothing to do"))
    return NOT_USABLE if failed else 0


def cmd_check(args: argparse.Namespace) -> int:
    wanted = {"state.db": args.state_schema, "registry.db": args.registry_schema}
    verdict = 0
    for path, schema in _files(args):
        if not path.is_file():
            continue
        n = wanted[schema.name]
        if n > schema.current:
            continue  # a release newer than this code: it migrates the file itself
        # That release's view: the steps up to n, as this (newer) code describes them.
        older = replace(schema, steps=schema.steps[:n])
        st = check_file(path, older)
        print(st.describe(reader=f"a release reading schema {n}"))
        if not st.readable:
            verdict = NOT_USABLE
    return verdict
