"""``nsor backup DIR``: a consistent copy of the unit's databases while the service runs.

``state.db`` runs in WAL mode: the newest committed messages live in ``state.db-wal``
until a checkpoint folds them in, so a plain ``cp state.db`` taken while the unit runs
misses them (or copies a file caught mid-checkpoint). SQLite's online backup API
(:meth:`sqlite3.Connection.backup`, ``sqlite3_backup_*``) reads the database as one
transaction, WAL included, while the service keeps writing: WAL readers do not block
writers. Each copy is then checked with ``PRAGMA integrity_check``.

The copy holds citizens' numbers in clear, as ``state.db`` does: the folder is made 0700
and the files 0600. ``secret.key`` (the key of the audit log's CNIC hashes) is copied only
with ``--with-secret``: a backup that carries it must be kept like the unit itself.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sqlite3
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from ..errors import ApplianceError, StoreError


def add_parsers(sub: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    sp = sub.add_parser("backup", help="copy state.db and registry.db consistently, even "
                        "while the service runs (SQLite online backup)")
    config_arg(sp)
    sp.add_argument("dest", type=Path, help="folder to put the backup in (a new subfolder "
                    "nsor-backup-UNIT-DATE is made there), e.g. a USB stick")
    sp.add_argument("--with-secret", action="store_true",
                    help="also copy secret.key (needed to match audit hashes after a "
                    "restore; keep such a backup as safe as the unit)")
    sp.set_defaults(func=cmd_backup)


def backup_database(src: Path, dest: Path) -> int:
    """Copy the SQLite database ``src`` to ``dest`` with the online backup API and check
    the copy; returns its size in bytes. ``dest`` must not exist."""
    try:
        source = sqlite3.connect(f"file:{src}?mode=ro", uri=True, timeout=30)
    except sqlite3.Error as exc:
        raise StoreError(f"{src}: cannot open ({exc})") from exc
    fd = os.open(dest, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    os.close(fd)
    try:
        target = sqlite3.connect(dest)
        try:
            # pages=-1: the whole database in one step, so one read transaction sees one
            # state (a stepwise copy restarts whenever another process writes meanwhile).
            source.backup(target, pages=-1)
            # A WAL source leaves the copy in WAL mode: fold it into one standalone file.
            target.execute("PRAGMA journal_mode=DELETE")
            (result,) = target.execute("PRAGMA integrity_check").fetchone()
        finally:
            target.close()
    except sqlite3.Error as exc:
        dest.unlink(missing_ok=True)
        raise StoreError(f"backup of {src} failed ({exc}); nothing was changed on the "
                         "unit") from exc
    finally:
        source.close()
    if result != "ok":
        raise StoreError(f"the copy of {src} fails its integrity check ({result}); the "
                         "database on the unit may be damaged: run `sudo nsor doctor`")
    return dest.stat().st_size


def cmd_backup(args: argparse.Namespace) -> int:
    from ..config import load_config
    from ..status.format import fmt_bytes

    config = load_config(args.config)
    if not args.dest.is_dir():
        raise ApplianceError(f"{args.dest} is not a folder; mount the USB stick or make the "
                             "folder first")
    stamp = time.strftime("%Y%m%d-%H%M%S")
    folder = args.dest / f"nsor-backup-{config.unit.name}-{stamp}"
    try:
        folder.mkdir(mode=0o700)
    except OSError as exc:
        raise ApplianceError(f"cannot make {folder} ({exc.strerror or exc}); is the "
                             "destination writable?") from exc
    done = 0
    for path in (config.state_path, config.registry_path):
        if not path.is_file():
            print(f"{path.name}: not there, skipped")
            continue
        size = backup_database(path, folder / path.name)
        print(f"{path.name}: {fmt_bytes(size)}, integrity ok")
        done += 1
    if args.with_secret:
        secret = Path(config.secret_path)
        if secret.is_file():
            fd = os.open(folder / secret.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out, secret.open("rb") as src:
                shutil.copyfileobj(src, out)
            print(f"{secret.name}: copied (mode 0600): keep this backup as safe as the unit")
    if not done:
        if not any(folder.iterdir()):
            folder.rmdir()
        raise StoreError(f"nothing to back up in {config.unit.data_dir}")
    print(f"backup in {folder}")
    return 0
