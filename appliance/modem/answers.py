"""Stored messages as typed values: the ``+CMTI``/``+CDSI`` notice, the ``+CMGR`` and
``+CMGL`` answers (TS 27.005 §3.4.1, §3.4.2, §3.4.3, PDU mode), each header with the PDU
line that belongs to it, and the number a send or write answers with (``+CMGS: <mr>``,
``+CMSS: <mr>``, ``+CMGW: <index>``, §3.5.1-3.5.3).

Pure, like atvalues.py: lines in, frozen values out (tests/test_answers.py feeds them
line by line, with the odd forms real modems send). The engine and the sender only act on
these values: what to read, deliver or delete.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from .atvalues import answer_args, split_fields

_HEXLINE = re.compile(r"[0-9A-Fa-f]+")


@dataclass(frozen=True)
class Notice:
    """``+CMTI: <mem>,<index>`` (or ``+CDSI``): a message stored at ``index`` of ``memory``."""

    memory: str
    index: int


def parse_notice(args: str) -> Notice | None:
    """The arguments of a ``+CMTI``/``+CDSI`` notice (``"SM",3``, ``SM, 3``); None when they
    name no two-letter memory and numeric index (the caller then sweeps)."""
    fields = split_fields(args)
    if len(fields) < 2:
        return None
    memory, index = fields[0].text.upper(), fields[1].as_int
    if len(memory) != 2 or not memory.isalpha() or not memory.isascii() or index is None:
        return None
    return Notice(memory, index)


@dataclass(frozen=True)
class StoredMessage:
    """One message header with its PDU. ``index`` is None for ``+CMGR`` (the index asked
    for); ``stat`` is TS 27.005 §3.1 <stat>: 0/1 received unread/read, 2/3 stored
    outgoing unsent/sent. ``pdu`` is None when no hex line followed the header."""

    stat: int
    pdu: str | None
    index: int | None = None

    @property
    def received(self) -> bool:
        return self.stat in (0, 1)


def _header(line: str, name: str, need: int) -> tuple[int, ...] | None:
    """The leading numeric fields of a ``+CMGR:``/``+CMGL:`` header, or None if ``line``
    is not one (it must start the line, as a PDU line never does, and carry at least
    ``need`` numbers: <stat>, or <index>,<stat>)."""
    if not line.startswith(name):
        return None
    args = answer_args(line, name)
    if args is None:
        return None
    out: list[int] = []
    for f in split_fields(args):
        if f.as_int is None:
            break
        out.append(f.as_int)
    return tuple(out) if len(out) >= need else None


def _pdu_after(lines: Sequence[str], start: int, name: str, need: int) -> str | None:
    """The PDU that belongs to the header at ``start``: the next line made only of hex
    digits. Anything between (a vendor URC the core did not recognise) is skipped, never
    taken for the PDU; the next header ends the search."""
    for follower in lines[start + 1:]:
        if _header(follower, name, need) is not None:
            return None
        if _HEXLINE.fullmatch(follower.strip()):
            return follower.strip()
    return None


def parse_cmgr(lines: Iterable[str]) -> StoredMessage | None:
    """``+CMGR: <stat>,[<alpha>],<length>`` then the PDU → the message; None when no line
    is a ``+CMGR`` header (an empty slot answers a bare OK; anything else is someone
    else's answer)."""
    seq = tuple(lines)
    for i, line in enumerate(seq):
        head = _header(line, "+CMGR", 1)
        if head is not None:
            return StoredMessage(head[0], _pdu_after(seq, i, "+CMGR", 1))
    return None


def parse_cmgl(lines: Iterable[str]) -> tuple[StoredMessage, ...]:
    """``+CMGL: <index>,<stat>,[<alpha>],<length>`` each followed by its PDU → every
    listed message, in order. A header without a PDU is kept with ``pdu`` None: whether
    to skip or delete it is the caller's decision."""
    seq = tuple(lines)
    out: list[StoredMessage] = []
    for i, line in enumerate(seq):
        head = _header(line, "+CMGL", 2)
        if head is not None:
            out.append(StoredMessage(head[1], _pdu_after(seq, i, "+CMGL", 2), head[0]))
    return tuple(out)


def parse_reference(lines: Iterable[str], answer: str) -> int | None:
    """The number in the first ``answer`` line (``+CMGS``, ``+CMSS`` or ``+CMGW``) of
    ``lines``: ``+CMGS: 17``, ``+CMGS:17,"0412…"`` (the optional <ackpdu> after it is
    ignored); None when no such line carries one."""
    for line in lines:
        if not line.upper().startswith(answer.upper()):
            continue
        args = answer_args(line, answer)
        if args is None:
            continue
        lead = len(args) - len(args.lstrip("0123456789"))
        if lead:
            return int(args[:lead])
    return None
