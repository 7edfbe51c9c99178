"""How a modem stores and announces new messages, from its own ``=?`` answers: +CNMI
(TS 27.005 §3.4.1, new message indications) and +CPMS (§3.2.2, preferred storage).

Pure, like :mod:`.atvalues`: the engine asks ``AT+CNMI=?`` and ``AT+CPMS=?`` and sets what
:func:`choose_cnmi` and :func:`choose_storage` pick (store first, then announce); the
``AT+CPMS?`` counts (:func:`parse_storage_use`) drive the cheap used-count check.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .atvalues import answer_args, is_number, split_fields

# -- +CNMI (TS 27.005 §3.4.1) -----------------------------------------------------------

def parse_range(text: str) -> frozenset[int]:
    """``(0-2)``, ``(0,1)``, ``(0-1,3)``, ``0`` → the set of values; junk → empty."""
    out: set[int] = set()
    for part in text.strip().strip("()").split(","):
        part = part.strip().strip('"')
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if is_number(lo.strip()) and (not sep or is_number(hi.strip())):
            a, b = int(lo), int(hi) if sep else int(lo)
            out.update(range(a, min(b, a + 255) + 1))
    return frozenset(out)


@dataclass(frozen=True)
class CnmiRanges:
    """What ``AT+CNMI=?`` offers: <mode>, <mt>, <bm>, <ds>, <bfr>."""

    mode: frozenset[int]
    mt: frozenset[int]
    bm: frozenset[int]
    ds: frozenset[int]
    bfr: frozenset[int]


def parse_cnmi_ranges(lines: Iterable[str]) -> CnmiRanges | None:
    for line in lines:
        args = answer_args(line, "+CNMI")
        if args is None:
            continue
        fields = [parse_range(f.text) for f in split_fields(args)]
        fields += [frozenset({0})] * (5 - len(fields))  # omitted trailing fields: 0 only
        if all(fields[:2]):
            return CnmiRanges(*[f if f else frozenset({0}) for f in fields[:5]])
    return None


@dataclass(frozen=True)
class CnmiChoice:
    mode: int
    mt: int
    bm: int
    ds: int
    bfr: int
    why: str = ""

    @property
    def command(self) -> str:
        return f"AT+CNMI={self.mode},{self.mt},{self.bm},{self.ds},{self.bfr}"


def _first(offered: frozenset[int], preference: Iterable[int]) -> int | None:
    return next((v for v in preference if v in offered), None)


def choose_cnmi(r: CnmiRanges, *, status_reports: bool = True) -> CnmiChoice | None:
    """The best +CNMI setting the modem offers, or None if it offers nothing usable.

    * <mode> 2 (buffer URCs while the link is busy, then flush) over 1 (discard when busy)
      over 3; 0 keeps every indication in the modem, so only the SIM sweep finds messages.
    * <mt> 1 (store, then announce with +CMTI): the message is on the SIM before we hear of
      it, so nothing is lost if we are busy or restarting. 3 is 1 for all but class 3.
      0 stores without a word (the sweep finds it); 2 (+CMT, not stored) comes last: a
      message routed to a unit that is not listening is gone.
    * <bm> 0: cell broadcasts are not ours.
    * <ds> 2 (status report stored, +CDSI) over 1 (+CDS inline) over 0, when delivery
      reports are wanted.
    * <bfr> 0 (flush what the modem buffered to us) where offered; 1 (clear it) otherwise,
      as on Cinterion modules that offer only 1: what was buffered was stored (<mt> 1) and
      the start-up sweep reads it.
    """
    mode = _first(r.mode, (2, 1, 3, 0))
    mt = _first(r.mt, (1, 3, 0, 2))
    if mode is None or mt is None:
        return None
    bm = _first(r.bm, (0, 2, 1, 3)) or 0
    ds = _first(r.ds, (2, 1, 0) if status_reports else (0, 2, 1)) or 0
    bfr = _first(r.bfr, (0, 1)) or 0
    notes = []
    if mt != 1:
        notes.append({3: "mt=3: class 3 messages routed directly",
                      0: "mt=0: no +CMTI, messages found by the SIM sweep",
                      2: "mt=2: messages routed directly (+CMT), not stored"}[mt])
    if mode == 0:
        notes.append("mode=0: no indications, messages found by the SIM sweep")
    if status_reports and ds != 2:
        notes.append({1: "ds=1: status reports inline (+CDS)",
                      0: "ds=0: no delivery reports offered"}[ds])
    if bfr == 1:
        notes.append("bfr=1: only buffer clearing offered")
    return CnmiChoice(mode, mt, bm, ds, bfr, "; ".join(notes))


#: Tried in order when the modem does not answer ``AT+CNMI=?`` (or refuses its own
#: choice): stored announcements first, each with both <bfr> values.
CNMI_FALLBACKS = ("2,1,0,2,0", "2,1,0,1,0", "1,1,0,2,0", "2,1,0,0,0", "1,1,0,0,0",
                  "2,1,0,2,1", "2,1,0,0,1", "1,1,0,0,1")


# -- +CPMS (TS 27.005 §3.2.2) -----------------------------------------------------------

@dataclass(frozen=True)
class StorageOptions:
    """What ``AT+CPMS=?`` offers for <mem1> (read/delete), <mem2> (write/send) and
    <mem3> (where received messages are stored)."""

    mem1: tuple[str, ...]
    mem2: tuple[str, ...]
    mem3: tuple[str, ...]


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip().strip('"').upper() for n in text.strip().strip("()").split(",")
                 if n.strip().strip('"'))


def parse_storage_options(lines: Iterable[str]) -> StorageOptions | None:
    for line in lines:
        args = answer_args(line, "+CPMS")
        if args is None:
            continue
        groups = re.findall(r"\(([^)]*)\)", args)
        if not groups:
            continue
        lists = [_names(g) for g in groups]
        lists += [lists[-1]] * (3 - len(lists))
        return StorageOptions(*lists[:3])
    return None


@dataclass(frozen=True)
class StorageChoice:
    memory: str
    why: str = ""


#: SIM first (survives moving the SIM, as the configuration's default), then module flash.
_STORAGE_PREFERENCE = ("SM", "ME", "MT")


def choose_storage(opts: StorageOptions | None, wanted: str) -> StorageChoice:
    """One memory for all three roles, so a message is read and deleted where it was
    received and where our replies are written: ``wanted`` when the modem offers it for
    all three, else the first of SM, ME, MT that it does, else ``wanted`` anyway (the
    modem's refusal of ``AT+CPMS`` then names the problem)."""
    wanted = wanted.upper()
    if opts is None:
        return StorageChoice(wanted, "AT+CPMS=? not answered")
    common = [m for m in opts.mem3 if m in opts.mem1 and m in opts.mem2]
    if wanted in common:
        return StorageChoice(wanted)
    for m in (*_STORAGE_PREFERENCE, *common):
        if m in common:
            return StorageChoice(m, f"{wanted} not offered for all of read, write and "
                                    f"receive ({', '.join(opts.mem3)}); using {m}")
    return StorageChoice(wanted, "no storage offered for all three roles")


@dataclass(frozen=True)
class StorageUse:
    memory: str
    used: int
    total: int


def parse_storage_use(lines: Iterable[str]) -> tuple[StorageUse, ...]:
    """``+CPMS: "SM",3,30,"SM",3,30,"ME",0,255`` (the read form) → one value per role."""
    for line in lines:
        args = answer_args(line, "+CPMS", anywhere=True)
        if args is None:
            continue
        fields = split_fields(args)
        out = []
        for i in range(0, len(fields) - 2, 3):
            name, used, total = fields[i:i + 3]
            if used.as_int is not None and total.as_int is not None and name.text \
                    and not name.text.isdigit():
                out.append(StorageUse(name.text.upper(), used.as_int, total.as_int))
        if out:
            return tuple(out)
    return ()
