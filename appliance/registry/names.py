"""The longest names among a registry's active records: what the reply budget plans for
(:func:`appliance.rules.reply_budget.lengths_of` turns them into its terms). Read-only,
outside the lookup connection, so that it works on a file the service has not opened
(``doctor``, the start-up check)."""

from __future__ import annotations

import logging
import sqlite3
from pathlib import Path
from typing import NamedTuple

log = logging.getLogger(__name__)


class LongestNames(NamedTuple):
    name: int           # characters, either script
    parent: int
    version: int | None


def longest_names(path: Path) -> LongestNames | None:
    """The longest name and parent's name among the active records of the registry at
    ``path``, or None when there is none or it cannot be read."""
    if not path.is_file():
        return None
    try:
        conn = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
        try:
            row = conn.execute(
                "SELECT MAX(MAX(LENGTH(name_ur), LENGTH(name_en))), "
                "MAX(MAX(LENGTH(parent_ur), LENGTH(parent_en))), "
                "(SELECT version FROM registry_meta WHERE id = 1) "
                "FROM offender WHERE status = 'active'").fetchone()
        finally:
            conn.close()
    except (sqlite3.Error, ValueError) as exc:  # ValueError: a damaged file's undecodable
        # schema or message (registry/lookup.py); the registry's own checks alarm on it
        log.warning("cannot read name lengths from %s: %s", path, exc)
        return None
    if row is None or row[0] is None:
        return None
    return LongestNames(int(row[0]), int(row[1] or 0),
                        None if row[2] is None else int(row[2]))
