"""The GSM 7-bit default alphabet and its extension table (TS 23.038 §6.2.1, §6.2.1.1),
code point by code point, both directions, against an independent source: the ``gsm0338``
codec from PyPI (its own table, built from Unicode character names), never against the
table the appliance uses. Septet 0x5F is '§' (python-gsmmodem-new, where our table came
from, had a backtick there)."""

from __future__ import annotations

import gsm0338  # noqa: F401  (registers the "gsm03.38" codec)
import pytest

from appliance.modem.pdu import decode, encode_submit
from appliance.modem.pdu_text import decode_gsm7, gsm7_codes

ESC = 0x1B
BASIC = [code for code in range(128) if code != ESC]


def reference(octets: bytes) -> str:
    return octets.decode("gsm03.38")


def extension_code(code: int) -> bool:
    try:
        return len(reference(bytes([ESC, code]))) == 1
    except UnicodeDecodeError:  # gsm0338 refuses an escape the table lacks
        return False


# Every code after ESC that gsm0338 gives a character of its own (the extension table).
EXTENSION = [code for code in range(128) if code != ESC and extension_code(code)]


def test_the_reference_has_the_spec_shape() -> None:
    """A guard on the oracle itself: 127 basic characters and the ten extension ones."""
    assert len({reference(bytes([c])) for c in BASIC}) == 127
    assert [f"{c:02X}" for c in EXTENSION] == ["0A", "14", "28", "29", "2F", "3C", "3D",
                                               "3E", "40", "65"]
    assert reference(b"\x5f") == "\u00a7"


@pytest.mark.parametrize("code", BASIC, ids=lambda c: f"{c:02X}")
def test_basic_table_decodes_as_the_reference(code: int) -> None:
    assert decode_gsm7(bytes([code])) == reference(bytes([code]))


@pytest.mark.parametrize("code", BASIC, ids=lambda c: f"{c:02X}")
def test_basic_table_encodes_as_the_reference(code: int) -> None:
    ch = reference(bytes([code]))
    assert gsm7_codes(ch) == [(code,)]
    assert ch.encode("gsm03.38") == bytes([code])


@pytest.mark.parametrize("code", EXTENSION, ids=lambda c: f"1B{c:02X}")
def test_extension_table_both_directions(code: int) -> None:
    ch = reference(bytes([ESC, code]))
    assert decode_gsm7(bytes([ESC, code])) == ch
    assert gsm7_codes(ch) == [(ESC, code)]


def test_unknown_escape_falls_back_to_the_basic_character() -> None:
    """TS 23.038 §6.2.1.1: a receiving entity shows the basic-table character for an
    escape code the extension table lacks."""
    fallbacks = [code for code in BASIC if code not in EXTENSION]
    assert len(fallbacks) == 117
    for code in fallbacks:
        assert decode_gsm7(bytes([ESC, code])) == reference(bytes([code]))


def test_characters_outside_the_alphabet_are_not_gsm7() -> None:
    """A backtick is not in the alphabet: a reply holding one goes as UCS-2, so the citizen
    sees a backtick, not the '§' at its old septet."""
    with pytest.raises(UnicodeError):
        "`".encode("gsm03.38")
    assert gsm7_codes("`") is None
    (part,) = encode_submit("+923001234567", "a`b")
    assert part.encoding == "ucs2"


def test_section_sign_round_trips_through_a_pdu() -> None:
    (part,) = encode_submit("+923001234567", "§ 302 PPC")
    assert part.encoding == "gsm7"
    # An SMS-DELIVER carrying the same user data, read back by our decoder.
    septets = "§ 302 PPC".encode("gsm03.38")
    value = sum(s << (7 * i) for i, s in enumerate(septets))
    ud = value.to_bytes((7 * len(septets) + 7) // 8, "little").hex().upper()
    deliver = ("0791291300000000" "04" "0C91" "290300111223" "00" "00" "62211131000000"
               f"{len(septets):02X}" + ud)
    assert decode(deliver).text == "§ 302 PPC"
