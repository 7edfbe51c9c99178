"""Reassembly of concatenated inbound SMS (TS 23.040 §9.2.3.24.1).

Parts of one message share (sender, reference, total). The service keeps each part in
state.db as it arrives and groups them there, per modem too, because two modems' SIMs are
different recipients (``Store.parts_of``); so a restart loses none. Parts arrive out of
order, twice (a +CMTI and a CMGL sweep see the same part) or never; after a timeout the
parts at hand are handled as they are, so a citizen still gets an answer. This module joins
one group's parts into one message.

Missing parts are marked with ``…`` (U+2026) in the merged text. Besides telling a reader
that something is missing, the mark keeps the digits either side of a gap apart, so two
halves of different numbers never join into a CNIC-shaped string.

Pure: nothing here does I/O.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence

from appliance.modem.pdu_decode import Deliver, user_data_body
from appliance.modem.pdu_text import GSM7, MISSING, UCS2, decode_gsm7, decode_utf16

def _joined_text(parts: Sequence[Deliver]) -> str:
    """Texts of consecutive parts, joined at the code level when they share an alphabet.

    Joining the septets / UTF-16 units (not the texts) keeps an escape sequence or a
    surrogate pair that a sender's phone split across two parts whole.
    """
    bodies = [user_data_body(p) for p in parts]
    encodings = {b[0] for b in bodies if b is not None}
    if None in bodies or len(encodings) != 1 or encodings & {GSM7, UCS2} == set():
        return "".join(p.text for p in parts)
    raw = b"".join(b[1] for b in bodies if b is not None)
    return decode_gsm7(raw) if GSM7 in encodings else decode_utf16(raw)


def join_parts(parts: Sequence[Deliver]) -> Deliver:
    """Merge parts of one message into one Deliver (``concat=None``, ``udh=None``).

    Parts are ordered by sequence number; a repeated number counts once (the first);
    each number missing from 1..total becomes one ``…``. Sender, SMSC, DCS and alphabet
    are the first part's; the time stamp is the earliest known; ``pdu`` is the parts'
    PDUs in order, space-separated (``pdu_hash`` ignores the spaces).
    """
    if not parts:
        raise ValueError("join_parts needs at least one part")
    by_seq: dict[int, Deliver] = {}
    loose: list[Deliver] = []
    for part in parts:
        if part.concat is None:
            loose.append(part)
        else:
            by_seq.setdefault(part.concat.seq, part)
    total = max([p.concat.total for p in by_seq.values() if p.concat] + [0])
    texts: list[str] = []
    run: list[Deliver] = []
    for seq in range(1, max([total, *by_seq]) + 1):
        if seq in by_seq:
            run.append(by_seq[seq])
            continue
        if run:
            texts.append(_joined_text(run))
            run = []
        texts.append(MISSING)
    if run:
        texts.append(_joined_text(run))
    texts.extend(p.text for p in loose)
    ordered = [by_seq[s] for s in sorted(by_seq)] + loose
    stamps = [p.timestamp for p in ordered if p.timestamp is not None]
    return dataclasses.replace(
        ordered[0], text="".join(texts), concat=None, udh=None,
        timestamp=min(stamps) if stamps else None,
        pdu=" ".join(p.pdu for p in ordered))

