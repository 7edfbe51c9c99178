"""Reassembly of concatenated inbound messages, fed with real encoded and decoded parts."""

from __future__ import annotations

import re
from datetime import datetime, timedelta, timezone

import pytest

from appliance.modem.pdu import (
    MISSING, Deliver, Reassembler, decode, encode_deliver, join_parts, pdu_hash,
)

STAMP = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=5)))
LONG = "".join(f"{i:03d} " for i in range(100))  # 400 septets: 3 parts, each distinct
URDU = ("شناختی کارڈ نمبر ۳۵۲۰۲۱۲۳۴۵۶۷۱"
        " کے بارے میں معلومات درکار ہیں۔ ") * 3


def parts(text: str, *, sender: str = "+923001234567", reference: int = 7,
          ref16: bool = False, minutes: int = 0) -> list[Deliver]:
    out = []
    for pdu in encode_deliver(sender, text, timestamp=STAMP + timedelta(minutes=minutes),
                              reference=reference, ref16=ref16):
        msg = decode(pdu)
        assert isinstance(msg, Deliver)
        out.append(msg)
    return out


def test_single_part_returns_at_once() -> None:
    asm = Reassembler(timeout=60)
    (only,) = parts("35202-1234567-1")
    assert asm.add("sim1", only, now=0.0) is only
    assert asm.pending() == 0


@pytest.mark.parametrize("text, count", [(LONG, 3), (URDU, 3)])
def test_in_order(text: str, count: int) -> None:
    asm = Reassembler(timeout=60)
    pieces = parts(text)
    assert len(pieces) == count
    results = [asm.add("sim1", p, now=float(i)) for i, p in enumerate(pieces)]
    assert results[:-1] == [None] * (count - 1)
    merged = results[-1]
    assert merged is not None and merged.text == text
    assert merged.concat is None and merged.udh is None
    assert merged.sender == "+923001234567" and merged.timestamp == STAMP
    assert asm.pending() == 0


def test_out_of_order_and_duplicates() -> None:
    asm = Reassembler(timeout=60)
    p1, p2, p3 = parts(LONG)
    assert asm.add("sim1", p3, now=0) is None
    assert asm.add("sim1", p3, now=1) is None      # the CMGL sweep saw it again
    assert asm.add("sim1", p1, now=2) is None
    assert asm.add("sim1", p1, now=3) is None
    assert asm.pending() == 1
    merged = asm.add("sim1", p2, now=4)
    assert merged is not None and merged.text == LONG
    assert merged.pdu == " ".join(p.pdu for p in (p1, p2, p3))
    assert pdu_hash(merged.pdu) == pdu_hash("".join(p.pdu for p in (p1, p2, p3)))
    assert asm.add("sim1", p2, now=5) is None       # a late duplicate starts a new group
    assert asm.pending() == 1


def test_two_senders_same_reference_stay_apart() -> None:
    asm = Reassembler(timeout=60)
    a = parts("A" * 200, sender="+923001111111")
    b = parts("B" * 200, sender="03002222222")
    assert asm.add("sim1", a[0], now=0) is None
    assert asm.add("sim1", b[1], now=0) is None
    assert asm.pending() == 2
    done_b = asm.add("sim1", b[0], now=1)
    done_a = asm.add("sim1", a[1], now=1)
    assert done_a is not None and done_a.text == "A" * 200
    assert done_b is not None and done_b.text == "B" * 200
    assert done_b.sender == "+923002222222"


def test_two_modems_and_two_reference_widths_stay_apart() -> None:
    asm = Reassembler(timeout=60)
    narrow = parts("N" * 200, reference=5)
    wide = parts("W" * 200, reference=5, ref16=True)
    assert asm.add("sim1", narrow[0], now=0) is None
    assert asm.add("sim2", narrow[1], now=0) is None
    assert asm.add("sim1", wide[1], now=0) is None
    assert asm.pending() == 3
    merged = asm.add("sim1", narrow[1], now=0)
    assert merged is not None and merged.text == "N" * 200


def test_timeout_hands_over_what_arrived_with_a_mark_for_the_gap() -> None:
    asm = Reassembler(timeout=30)
    p1, _lost, p3 = parts(LONG)
    (other,) = parts("x" * 200, sender="+923009999999")[1:]
    asm.add("sim1", p1, now=100)
    asm.add("sim1", p3, now=110)
    asm.add("sim1", other, now=125)
    assert asm.expire(now=129.9) == []
    (merged,) = asm.expire(now=130)
    assert merged.text == p1.text + MISSING + p3.text
    assert merged.concat is None
    assert asm.pending() == 1
    (tail,) = asm.expire(now=1000)
    assert tail.text == MISSING + other.text
    assert asm.pending() == 0 and asm.expire(now=2000) == []


def test_gap_keeps_digits_apart() -> None:
    """Digits either side of a missing part must not read as one 13-digit CNIC."""
    text = "a" * 146 + "3520212" + "b" * 153 + "345671 end"
    p1, _lost, p3 = parts(text)
    merged = join_parts([p3, p1])
    assert merged.text == p1.text + MISSING + p3.text
    assert re.search(r"\d{13}", merged.text) is None
    assert re.search(r"\d{13}", p1.text + p3.text) is not None


def test_expiry_order_is_oldest_first() -> None:
    asm = Reassembler(timeout=5)
    late = parts("L" * 200, sender="+923001111111")[0]
    early = parts("E" * 200, sender="+923002222222")[0]
    asm.add("sim1", late, now=3)
    asm.add("sim1", early, now=1)
    assert [m.sender for m in asm.expire(now=100)] == ["+923002222222", "+923001111111"]


def test_join_parts_directly() -> None:
    pieces = parts(URDU)
    merged = join_parts(list(reversed(pieces)) + [pieces[0]])
    assert merged.text == URDU
    assert merged.timestamp == STAMP
    with pytest.raises(ValueError):
        join_parts([])


def test_negative_timeout_is_refused() -> None:
    with pytest.raises(ValueError):
        Reassembler(timeout=-1)
