"""Mass removal needs an explicit, signed decision (issue 12, item 4).

A header-only export once wiped a whole fleet's registry with exit code 0: every active
offender answered "no record". A removal is legitimate (acquittals, expiry), a mass one is
almost always a broken export. So the importer and the publisher refuse a version that
leaves no active record, or that removes more than ``max_percent`` of the active records
of the version before it, unless the operator gives a reason (``--allow-mass-removal
REASON``). The reason, the number removed and the number before are recorded in the
signed metadata (``index.json``, the delta header, the snapshot's ``registry_seal``), and
a unit refuses such a version unless that signed decision is there.
"""

from __future__ import annotations

import sqlite3
import unicodedata
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from appliance.errors import MassRemovalRefused, RegistryError

#: The share of the active records one version may remove without a signed reason.
DEFAULT_MAX_REMOVAL_PERCENT = 5.0
#: Removing this many records or fewer is never a mass removal (unless nothing is left):
#: in a district's registry of 40 people, two acquittals are 5 % and need no ceremony.
MASS_REMOVAL_FLOOR = 10
MAX_REASON_CHARS = 500

_REMOVED = ("SELECT count(*) FROM old.offender o WHERE o.status = 'active' AND NOT EXISTS "
            "(SELECT 1 FROM main.offender n WHERE n.cnic = o.cnic AND n.status = 'active')")
_ACTIVE = "SELECT count(*) FROM {schema}.offender WHERE status = 'active'"


@dataclass(frozen=True, slots=True)
class Removal:
    """Active records before, how many of them the new version no longer has as active,
    and the new version's active count."""

    previous: int
    removed: int
    remaining: int

    def is_mass(self, max_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> bool:
        if self.remaining == 0:
            return True
        return (self.removed > MASS_REMOVAL_FLOOR
                and self.removed * 100 > max_percent * self.previous)

    def describe(self) -> str:
        share = 100 * self.removed / self.previous if self.previous else 100.0
        return (f"removes {self.removed} of {self.previous} active records ({share:.1f} %), "
                f"leaving {self.remaining}")


def compare(conn: sqlite3.Connection, old: Path | None) -> Removal:
    """The removal from the registry file ``old`` (None or unreadable: nothing before)
    to the database open in ``conn``."""
    remaining = int(conn.execute(_ACTIVE.format(schema="main")).fetchone()[0])
    if old is None or not old.is_file():
        return Removal(0, 0, remaining)
    # ValueError: SQLite's message about a damaged schema can itself be undecodable UTF-8.
    try:
        conn.execute("ATTACH DATABASE ? AS old", (str(old),))
    except (sqlite3.Error, ValueError):
        return Removal(0, 0, remaining)
    try:
        previous = int(conn.execute(_ACTIVE.format(schema="old")).fetchone()[0])
        removed = int(conn.execute(_REMOVED).fetchone()[0])
    except (sqlite3.Error, ValueError):
        # The file before is damaged (which is why a snapshot replaces it): its count
        # cannot be trusted either way, and the snapshot itself is signed.
        return Removal(0, 0, remaining)
    finally:
        conn.execute("DETACH DATABASE old")
    return Removal(previous, removed, remaining)


def check_reason(reason: str | None) -> str | None:
    """The operator's reason, cleaned; RegistryError when it is empty or unprintable."""
    if reason is None:
        return None
    cleaned = " ".join(reason.split())
    if not cleaned or len(cleaned) > MAX_REASON_CHARS or any(
            unicodedata.category(ch) in ("Cc", "Cf") for ch in cleaned):
        raise RegistryError(f"--allow-mass-removal needs a reason of 1-{MAX_REASON_CHARS} "
                            "printable characters (who decided, and why)")
    return cleaned


def decide(removal: Removal, reason: str | None, *, what: str,
           max_percent: float = DEFAULT_MAX_REMOVAL_PERCENT) -> dict[str, Any] | None:
    """The decision to record (None when nothing needs recording), or
    :class:`MassRemovalRefused` for a mass removal without a reason."""
    reason = check_reason(reason)
    if removal.is_mass(max_percent) and reason is None:
        empty = "has no active record" if removal.remaining == 0 else removal.describe()
        raise MassRemovalRefused(
            f"{what} {empty}; more than {max_percent:g} % of the active records is refused "
            "unless you confirm it with --allow-mass-removal \"REASON\" (the reason is "
            "recorded in the signed registry). Check the export first")
    if reason is None:
        return None
    return {"reason": reason, "removed": removal.removed, "previous": removal.previous}


def signed_reason(decision: object) -> str | None:
    """The reason in a decision read from signed metadata, or None if it carries none."""
    if isinstance(decision, dict):
        reason = decision.get("reason")
        if isinstance(reason, str) and reason.strip():
            return reason
    return None
