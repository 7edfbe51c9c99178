"""Joining the parts of a concatenated inbound message (``join_parts``, the one the service
uses), fed with parts built by the simulator's independent codec and decoded by ours."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from appliance.modem.pdu import MISSING, Deliver, decode, join_parts, pdu_hash
from appliance.simulator import pdu as sim_pdu

STAMP = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=5)))
SMSC = "+923000000099"
LONG = "".join(f"{i:03d} " for i in range(100))  # 400 septets: 3 parts, each distinct
URDU = ("شناختی کارڈ نمبر ۳۵۲۰۲۱۲۳۴۵۶۷۱"
        " کے بارے میں معلومات درکار ہیں۔ ") * 3


def parts(text: str, *, sender: str = "+923001234567", reference: int = 7,
          ref16: bool = False) -> list[Deliver]:
    out = []
    for encoded in sim_pdu.encode_deliver(sender, text, smsc=SMSC, timestamp=STAMP,
                                          reference=reference, ref16=ref16):
        msg = decode(encoded.pdu)
        assert isinstance(msg, Deliver)
        out.append(msg)
    return out


def test_a_single_part_comes_back_whole() -> None:
    (only,) = parts("35202-1234567-1")
    merged = join_parts([only])
    assert merged.text == "35202-1234567-1" and merged.pdu == only.pdu


@pytest.mark.parametrize("text, count, ref16", [(LONG, 3, False), (URDU, 3, False),
                                                (LONG, 3, True)])
def test_in_order(text: str, count: int, ref16: bool) -> None:
    pieces = parts(text, ref16=ref16)
    assert len(pieces) == count
    merged = join_parts(pieces)
    assert merged.text == text
    assert merged.concat is None and merged.udh is None
    assert merged.sender == "+923001234567" and merged.timestamp == STAMP


def test_out_of_order_and_duplicates() -> None:
    p1, p2, p3 = parts(LONG)
    # the CMGL sweep saw parts 3 and 1 again: a repeated number counts once
    merged = join_parts([p3, p3, p1, p1, p2])
    assert merged.text == LONG
    assert merged.pdu == " ".join(p.pdu for p in (p1, p2, p3))
    assert pdu_hash(merged.pdu) == pdu_hash("".join(p.pdu for p in (p1, p2, p3)))


def test_a_missing_part_is_marked() -> None:
    p1, _lost, p3 = parts(LONG)
    assert join_parts([p1, p3]).text == p1.text + MISSING + p3.text
    assert join_parts([p3]).text == MISSING + MISSING + p3.text


def test_gap_keeps_digits_apart() -> None:
    """Digits either side of a missing part must not read as one 13-digit CNIC."""
    text = "a" * 146 + "3520212" + "b" * 153 + "345671 end"
    p1, _lost, p3 = parts(text)
    merged = join_parts([p3, p1])
    assert merged.text == p1.text + MISSING + p3.text
    assert re.search(r"\d{13}", merged.text) is None
    assert re.search(r"\d{13}", p1.text + p3.text) is not None


def test_join_parts_directly() -> None:
    pieces = parts(URDU)
    merged = join_parts(list(reversed(pieces)) + [pieces[0]])
    assert merged.text == URDU
    assert merged.timestamp == STAMP
    with pytest.raises(ValueError):
        join_parts([])
