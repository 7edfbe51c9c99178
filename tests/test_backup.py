"""``nsor backup``: SQLite's online backup of a state.db that a writer holds open in WAL
mode, against the ``cp`` a technician would otherwise use."""

from __future__ import annotations

import os
import shutil
import sqlite3
import stat
from pathlib import Path
from typing import Any

from tests.conftest import write_unit_toml
from tests.test_techcli import closed_port, nsor
from appliance.outbox.table import ReplyTable

replies = ReplyTable()  # stateless: the outbox's queries of the state.db a Store opened


def test_backup_has_what_cp_misses_while_the_unit_writes(tmp_path: Path, sim: Any,
                                                        sample_registry: Path) -> None:
    from appliance.state.store import Store

    store = Store(tmp_path / "data" / "state.db")  # stays open: the running service
    try:
        for i in range(5):
            replies.queue_reply(recipient=f"+92300111{i:04d}", text="x", parts=1,
                              preferred_modem=None)
        # What `cp` takes while the unit runs: the main file, not the WAL beside it.
        shutil.copy(tmp_path / "data" / "state.db", tmp_path / "cp-state.db")
        config = write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                                 http_bind=closed_port())
        (tmp_path / "usb").mkdir()
        proc = nsor("backup", str(tmp_path / "usb"), "--config", str(config))
    finally:
        store.close()
    assert proc.returncode == 0, proc.stderr
    assert "state.db:" in proc.stdout and "integrity ok" in proc.stdout
    [folder] = list((tmp_path / "usb").iterdir())
    assert folder.name.startswith("nsor-backup-test-")
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    copy = folder / "state.db"
    assert stat.S_IMODE(copy.stat().st_mode) == 0o600
    assert not (folder / "state.db-wal").exists() and not (folder / "secret.key").exists()
    with sqlite3.connect(copy) as db:
        assert db.execute("SELECT COUNT(*) FROM outbound").fetchone() == (5,)
        assert db.execute("PRAGMA journal_mode").fetchone() == ("delete",)
    try:
        with sqlite3.connect(tmp_path / "cp-state.db") as db:
            copied = db.execute("SELECT COUNT(*) FROM outbound").fetchone()[0]
    except sqlite3.DatabaseError:
        copied = 0
    assert copied < 5  # the rows still in state.db-wal are lost to a plain cp
    with sqlite3.connect(folder / "registry.db") as db:
        assert db.execute("PRAGMA integrity_check").fetchone() == ("ok",)


def test_backup_refuses_a_missing_destination(tmp_path: Path, sim: Any) -> None:
    config = write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                             http_bind=closed_port())
    proc = nsor("backup", str(tmp_path / "no-stick"), "--config", str(config))
    assert proc.returncode == 1 and "is not a folder" in proc.stderr
    os.makedirs(tmp_path / "usb")
    empty = nsor("backup", str(tmp_path / "usb"), "--config", str(config))
    assert empty.returncode == 1 and "nothing to back up" in empty.stderr
    assert not list((tmp_path / "usb").iterdir())
