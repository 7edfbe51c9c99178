"""A verification does not clear a corrupt mark that a lookup made while it scanned.

The whole-content check (``Registry.verify``) reads every row in CNIC order on its own
connection, while lookups go on. Bytes damaged on disk after the scan read them pass the
scan, but a lookup of that row sees the damage (its digest) and marks the registry corrupt.
The scan's "ok" must not then clear that mark: it never read the damaged bytes. It is
forgotten instead, so that the change check verifies again within seconds, and that
verification, reading the damage, keeps the registry corrupt.

A real signed registry of 100,000 records (scripts/gen_registry.py, imported), damaged
with ``os.pwrite`` as a failing SD card would, about 10 s.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from appliance.errors import RegistryCorrupt
from appliance.registry.importer import import_file
from appliance.registry.lookup import Registry
from appliance.registry.seal import Verification

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 100_000


@pytest.fixture(scope="module")
def big_registry(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("race")
    export = work / "export.csv"
    subprocess.run([sys.executable, str(ROOT / "scripts" / "gen_registry.py"), str(RECORDS),
                    str(export), "--seed", "7"], check=True, stderr=subprocess.DEVNULL)
    path = work / "registry.db"
    import_file(export, path, version=1, source="test")
    return path


def first_row(path: Path) -> tuple[str, bytes]:
    """The lowest CNIC (read first by the scan) and its English name, as stored."""
    conn = sqlite3.connect(path)
    try:
        cnic, name = conn.execute("SELECT cnic, name_en FROM offender ORDER BY cnic "
                                  "LIMIT 1").fetchone()
    finally:
        conn.close()
    return cnic, name.encode()


def test_a_mark_made_during_the_scan_survives_it(big_registry: Path, tmp_path: Path) -> None:
    cnic, name = first_row(big_registry)
    raced = 0
    for attempt in range(5):
        path = tmp_path / f"registry-{attempt}.db"
        shutil.copyfile(big_registry, path)
        data = path.read_bytes()
        assert data.count(name) == 1, "the name must locate the row's bytes"
        offset = data.index(name)
        registry = Registry(path)
        try:
            result: list[Verification] = []
            scan = threading.Thread(target=lambda: result.append(registry.verify()))
            scan.start()
            time.sleep(0.02 + 0.02 * attempt)  # past the first leaf, before the end
            fd = os.open(path, os.O_WRONLY)
            try:
                os.pwrite(fd, b"X", offset)  # one letter of the name: its digest breaks
            finally:
                os.close(fd)
            try:
                registry.lookup(cnic)
                marked = False  # the scan had ended and its connection's cache answered
            except RegistryCorrupt:
                marked = True
            was_scanning = scan.is_alive()
            scan.join(30)
            if not (marked and was_scanning and result and result[0].ok):
                continue  # not the race: the scan ended first, or it read the damage
            raced += 1  # the scan read the row before the damage, the lookup after it
            assert registry.corrupt is not None, "a scan that never read the damage cleared it"
            assert registry.needs_verification(), "the scan was not forgotten"
            again = registry.verify()
            assert not again.ok and registry.corrupt is not None
        finally:
            registry.close()
    assert raced, "no attempt damaged the row after the scan had read it"
