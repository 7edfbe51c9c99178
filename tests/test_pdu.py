"""Outbound PDUs: encode_submit checked by our decoder AND by an independent one.

Every PDU encoded here is read back twice: by ``decode_submit`` and by smspdudecoder
(Qotto, written without reference to this code). Text, number, UDH and header flags must
agree. Where python-gsmmodem-new's encoder is correct (BMP text, 8-bit reference) our
octets must equal its octets, so the shim provably keeps the library's codec.
"""

from __future__ import annotations

from datetime import timedelta
from io import StringIO
from typing import Any

import pytest
from gsmmodem.pdu import encodeSmsSubmitPdu
from smspdudecoder.fields import SMSSubmit

from appliance.errors import PduError
from appliance.modem.pdu import (
    ConcatRefCounter, SubmitPart, count_parts, decode_submit, encode_submit,
    is_alphanumeric, normalise_number,
)

URDU = "خبردار! احمد ولد محمود سزا یافتہ مجرم ہے۔"
URDU_REPLY = (URDU + " اسے بچوں اور خواتین کے قریب نہ آنے دیں۔") * 2
ESCAPES = "^{}\\[~]|€"
EMOJI = "\U0001F600"


def independent(part: SubmitPart) -> dict[str, Any]:
    """smspdudecoder's reading of one part."""
    return SMSSubmit.decode(StringIO(part.pdu))  # type: ignore[no-any-return]


def independent_text(sms: dict[str, Any], ours: str) -> str:
    """smspdudecoder's text, minus its one known artefact.

    It cuts GSM-7 text at TP-UDL *characters* rather than septets, so a part with k
    escape sequences gains up to k padding '@' at its end (septet 0 of the fill).
    """
    text: str = sms["user_data"]["data"]
    extra = len(text) - len(ours)
    if sms["dcs"]["encoding"] == "gsm" and 0 < extra <= sum(ours.count(c) for c in ESCAPES):
        assert text[len(ours):] == "@" * extra
        return text[:len(ours)]
    return text


def septets(text: str) -> int:
    return len(text) + sum(text.count(c) for c in ESCAPES)


def utf16_units(text: str) -> int:
    return len(text.encode("utf-16-be")) // 2


ROUND_TRIPS = {
    "ascii": ("Hello, CNIC 35202-1234567-1", 1, "gsm7"),
    "escapes": ("Price 5€ [a] {b} ~|^\\", 1, "gsm7"),
    "gsm7 160": ("a" * 160, 1, "gsm7"),
    "gsm7 161": ("a" * 161, 2, "gsm7"),
    "gsm7 306": ("b" * 306, 2, "gsm7"),
    "gsm7 307": ("b" * 307, 3, "gsm7"),
    "escape at 153": ("c" * 152 + "€" + "d" * 10, 2, "gsm7"),
    "escapes only 80": ("€" * 80, 1, "gsm7"),
    "escapes only 81": ("€" * 81, 2, "gsm7"),
    "urdu": (URDU, 1, "ucs2"),
    "urdu reply": (URDU_REPLY, 3, "ucs2"),
    "ucs2 70": ("ب" * 70, 1, "ucs2"),
    "ucs2 71": ("ب" * 71, 2, "ucs2"),
    "ucs2 134": ("ب" * 134, 2, "ucs2"),
    "ucs2 135": ("ب" * 135, 3, "ucs2"),
    "emoji": (f"ok {EMOJI}", 1, "ucs2"),
    "emoji 35": (EMOJI * 35, 1, "ucs2"),
    "emoji 36": (EMOJI * 36, 2, "ucs2"),
    "emoji across 67": ("ب" * 66 + EMOJI + "ب" * 5, 2, "ucs2"),
    "mixed": ("ok " + EMOJI + " ۳۵۲۰۲" + URDU, 1, "ucs2"),
    "empty": ("", 1, "gsm7"),
}


@pytest.mark.parametrize("ref16", [False, True], ids=["ref8", "ref16"])
@pytest.mark.parametrize("name", sorted(ROUND_TRIPS))
def test_round_trip_agrees_with_independent_decoder(name: str, ref16: bool) -> None:
    text, parts_8bit, encoding = ROUND_TRIPS[name]
    reference = 0xBEEF if ref16 else 0xA7
    parts = encode_submit("0300-1234567", text, reference=reference, ref16=ref16)
    if not ref16:
        assert len(parts) == parts_8bit
    assert count_parts(text, ref16=ref16) == (len(parts), encoding)
    limit = {"gsm7": 153 - ref16, "ucs2": 67 - ref16}[encoding]
    rebuilt = []
    for seq, part in enumerate(parts, start=1):
        assert (part.seq, part.total, part.encoding) == (seq, len(parts), encoding)
        assert part.pdu == part.pdu.upper() and part.pdu.startswith("00")
        assert part.tpdu_length == len(part.pdu) // 2 - 1
        ours = decode_submit(part.pdu)
        theirs = independent(part)
        assert independent_text(theirs, ours.text) == ours.text
        assert ours.recipient == "+923001234567" == "+" + theirs["recipient"]["number"]
        assert theirs["recipient"]["toa"]["ton"] == "international"
        assert ours.encoding == encoding and ours.dcs == {"gsm7": 0, "ucs2": 8}[encoding]
        assert ours.reference == theirs["message-ref"] == 0
        if len(parts) == 1:
            assert part.reference is None and ours.concat is None and ours.udh is None
            assert not theirs["header"]["udhi"]
        else:
            assert part.reference == reference
            assert ours.concat is not None
            assert (ours.concat.reference, ours.concat.total, ours.concat.seq,
                    ours.concat.bits) == (reference, len(parts), seq, 16 if ref16 else 8)
            (element,) = theirs["user_data"]["header"]["elements"]
            assert element["iei"] == (0x08 if ref16 else 0x00)
            assert element["data"] == {"reference": reference, "parts_count": len(parts),
                                       "part_number": seq}
            size = septets(ours.text) if encoding == "gsm7" else utf16_units(ours.text)
            assert size <= limit
        rebuilt.append(ours.text)
    assert "".join(rebuilt) == text


def test_no_part_ends_inside_a_surrogate_pair_or_escape() -> None:
    for text in ("ب" * 66 + EMOJI * 3, "x" * 152 + "€" * 3):
        for part in encode_submit("+923001234567", text, reference=1):
            body = decode_submit(part.pdu).text
            assert "\ufffd" not in body
            assert body.encode("utf-8")


@pytest.mark.parametrize("status_report", [False, True])
@pytest.mark.parametrize("validity, tp_vp, back", [
    (None, None, None),
    (timedelta(minutes=5), 0, timedelta(minutes=5)),
    (timedelta(hours=1), 11, timedelta(hours=1)),
    (timedelta(hours=12), 143, timedelta(hours=12)),
    (timedelta(hours=13, minutes=40), 146, timedelta(hours=13, minutes=30)),
    (timedelta(days=1), 167, timedelta(days=1)),
    (timedelta(days=7), 173, timedelta(days=7)),
    (timedelta(weeks=63), 255, timedelta(weeks=63)),
])
def test_status_report_and_validity_flags(status_report: bool, validity: timedelta | None,
                                         tp_vp: int | None, back: timedelta | None) -> None:
    for text in ("short", "long " * 50):
        for part in encode_submit("+923001234567", text, reference=3,
                                  status_report=status_report, validity=validity):
            theirs = independent(part)
            ours = decode_submit(part.pdu)
            assert ours.status_report is status_report is theirs["header"]["srr"]
            assert theirs["header"]["vpf"] == (0 if validity is None else 2)
            assert theirs.get("vp") == tp_vp
            assert ours.validity == back


@pytest.mark.parametrize("validity", [timedelta(0), timedelta(minutes=4),
                                      timedelta(weeks=64), timedelta(days=-1)])
def test_unrepresentable_validity_is_refused(validity: timedelta) -> None:
    with pytest.raises(PduError, match="validity"):
        encode_submit("+923001234567", "x", validity=validity)


def test_smsc_prefix_is_excluded_from_the_cmgs_length() -> None:
    (part,) = encode_submit("03001234567", "hi", smsc="+92 300 0000001")
    assert part.pdu.startswith("0791290300000010")
    assert part.tpdu_length == len(part.pdu) // 2 - 8
    assert decode_submit(part.pdu).smsc == "+923000000001"


@pytest.mark.parametrize("text", ["Hello [world] €5", "x" * 300, URDU, URDU_REPLY])
def test_octets_equal_gsmmodem_where_it_is_right(text: str) -> None:
    """Single parts and 8-bit-reference parts of BMP text: byte-identical to the library.

    The library puts the concatenation reference in TP-MR too (docs/field-notes.md B9), so TP-MR
    (octet 2: after the SMSC byte and the first octet) is compared separately.
    """
    ours = encode_submit("+923001234567", text, reference=0x42, status_report=True,
                         validity=timedelta(days=2))
    theirs = [str(p) for p in encodeSmsSubmitPdu(
        "+923001234567", text, reference=0x42 if len(ours) > 1 else 0,
        validity=timedelta(days=2), requestStatusReport=True)]
    assert len(ours) == len(theirs)
    for mine, lib in zip(ours, theirs):
        assert mine.pdu[:4] + mine.pdu[6:] == lib[:4] + lib[6:]
        assert mine.pdu[4:6] == "00"


def test_gsmmodem_splits_emoji_and_we_do_not() -> None:
    with pytest.raises(ValueError):
        encodeSmsSubmitPdu("+923001234567", EMOJI * 40, reference=1)
    assert len(encode_submit("+923001234567", EMOJI * 40, reference=1)) == 2


def test_multipart_needs_a_reference_that_fits() -> None:
    with pytest.raises(PduError, match="reference"):
        encode_submit("+923001234567", "x" * 161)
    with pytest.raises(PduError, match="ref16"):
        encode_submit("+923001234567", "x" * 161, reference=256)
    with pytest.raises(PduError, match="16 bits"):
        encode_submit("+923001234567", "x" * 161, reference=65536, ref16=True)
    assert encode_submit("+923001234567", "x" * 160)[0].reference is None


def test_too_many_parts_is_refused() -> None:
    with pytest.raises(PduError, match="255"):
        encode_submit("+923001234567", "x" * (153 * 255 + 1), reference=1)
    assert len(encode_submit("+923001234567", "x" * (153 * 255), reference=1)) == 255


@pytest.mark.parametrize("number", ["JAZZ", "Telenor", "", "   ", "92+300"])
def test_destination_must_be_a_number(number: str) -> None:
    with pytest.raises(PduError):
        encode_submit(number, "x")


def test_concat_ref_counter_wraps_and_never_gives_zero() -> None:
    counter = ConcatRefCounter()
    assert [counter.next() for _ in range(3)] == [1, 2, 3]
    assert counter.value == 3
    resumed = ConcatRefCounter(start=counter.value)
    assert resumed.next() == 4
    near_end = ConcatRefCounter(start=254)
    assert [near_end.next() for _ in range(3)] == [255, 1, 2]
    wide = ConcatRefCounter(start=65534, bits=16)
    assert [wide.next() for _ in range(3)] == [65535, 1, 2]
    assert ConcatRefCounter(start=300).next() == 45  # a 16-bit value kept from before
    every = ConcatRefCounter()
    assert sorted({every.next() for _ in range(600)}) == list(range(1, 256))
    with pytest.raises(ValueError):
        ConcatRefCounter(bits=12)
    with pytest.raises(ValueError):
        ConcatRefCounter(start=-1)


NUMBERS = [
    ("03001234567", "+923001234567"),
    ("0300-1234567", "+923001234567"),
    ("0300 1234567", "+923001234567"),
    ("0300\u20111234567", "+923001234567"),   # non-breaking hyphen
    ("0300\u20141234567", "+923001234567"),   # em dash
    ("0300\u22121234567", "+923001234567"),   # minus sign
    ("(0300) 123.4567", "+923001234567"),
    ("\u200e0300-1234567\u200f", "+923001234567"),
    ("۰۳۰۰۱۲۳۴۵۶۷", "+923001234567"),        # Extended Arabic-Indic digits
    ("+923001234567", "+923001234567"),
    ("+92 300 1234567", "+923001234567"),
    ("923001234567", "+923001234567"),
    ("00923001234567", "+923001234567"),
    ("042-35761234", "+924235761234"),
    ("8008", "8008"),
    ("9999", "9999"),
    ("3001234567", "3001234567"),            # ambiguous: left alone
    ("JAZZ", "JAZZ"),
    (" Telenor-PK ", "Telenor-PK"),
    ("", ""),
]


@pytest.mark.parametrize("raw, normal", NUMBERS)
def test_normalise_number(raw: str, normal: str) -> None:
    assert normalise_number(raw) == normal
    assert normalise_number(normal) == normal


def test_country_code_is_a_parameter() -> None:
    assert normalise_number("0171-1234567", country_code="49") == "+491711234567"


@pytest.mark.parametrize("address, alpha", [
    ("JAZZ", True), ("Telenor-PK", True), ("O2", True), ("+923001234567", False),
    ("0300-1234567", False), ("(0300) 1234567", False), ("8008", False), ("", False),
])
def test_is_alphanumeric(address: str, alpha: bool) -> None:
    assert is_alphanumeric(address) is alpha


@pytest.mark.parametrize("raw", [r for r, n in NUMBERS if n == "+923001234567"])
def test_national_forms_are_sent_as_international_numbers(raw: str) -> None:
    """TP-DA = 0C 91 290310325476: 12 digits, TOA 0x91 (never 0xD0 alphanumeric)."""
    (part,) = encode_submit(raw, "x")
    assert part.pdu[6:22] == "0C91290310325476"
    assert independent(part)["recipient"] == {
        "length": 12, "toa": {"ton": "international", "npi": "isdn"},
        "number": "923001234567"}


def test_gsmmodem_alone_would_send_a_dashed_number_as_alphanumeric() -> None:
    """The defect the normalisation exists for (docs/field-notes.md, last row)."""
    (lib,) = encodeSmsSubmitPdu("0300-1234567", "x", requestStatusReport=False)
    assert str(lib)[6:10].endswith("D0")


def test_short_code_destination_uses_unknown_type_of_number() -> None:
    (part,) = encode_submit("8008", "x")
    assert part.pdu[6:10] == "0481"
    assert decode_submit(part.pdu).recipient == "8008"
