"""One registry entry as the rest of the appliance sees it: a plain, frozen value.

The Peewee models (``registry/models.py``) convert rows into :class:`OffenderRecord` so that
the responder and its tests never touch a database, and so that a record read from a
corrupted or hand-edited ``registry.db`` is refused here, at the boundary, instead of
turning into a wrong reply (a relation word that does not exist, a CNIC that is not one).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

from appliance.errors import RegistryError

#: Relation of the offender to the parent/husband named in ``parent_*`` ("son of",
#: "daughter of", "wife of"), as printed on the CNIC card. The reply takes it from here,
#: never from the CNIC's last digit (docs/field-notes.md: "never guess it from the last digit").
RELATIONS: tuple[str, ...] = ("s/o", "d/o", "w/o")

#: "removed" records are kept so that a sync can honour a removal; they answer as no record.
STATUSES: tuple[str, ...] = ("active", "removed")

_ASCII_DIGITS = frozenset("0123456789")


@dataclass(frozen=True, slots=True)
class OffenderRecord:
    """A convicted offender as published in the signed registry.

    ``name_ur``/``parent_ur`` are in Urdu script for Urdu replies, ``name_en``/``parent_en``
    in Latin script for English replies. No victim or offence details exist here on purpose:
    what is not stored cannot leak into a reply.
    """

    cnic: str
    name_ur: str
    name_en: str
    parent_ur: str
    parent_en: str
    relation: str
    status: str
    recorded_on: date | None = None
    updated_on: date | None = None

    def __post_init__(self) -> None:
        problems: list[str] = []
        if len(self.cnic) != 13 or not set(self.cnic) <= _ASCII_DIGITS:
            problems.append(f"cnic {self.cnic!r} is not 13 ASCII digits")
        if self.relation not in RELATIONS:
            problems.append(f"relation {self.relation!r} is not one of {', '.join(RELATIONS)}")
        if self.status not in STATUSES:
            problems.append(f"status {self.status!r} is not one of {', '.join(STATUSES)}")
        if not (self.name_ur or self.name_en):
            problems.append("no name in either script")
        if not (self.parent_ur or self.parent_en):
            problems.append("no parent's name in either script")
        if problems:
            raise RegistryError(
                f"registry record {self.cnic!r}: {'; '.join(problems)}; "
                "the registry file is damaged or from an incompatible publisher, "
                "re-sync it (python -m appliance sync)")

    @property
    def is_active(self) -> bool:
        """True when the record may produce a "convict" reply."""
        return self.status == "active"
