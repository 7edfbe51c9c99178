"""Phone numbers and the semi-octet fields of a PDU: addresses, time stamps, validity.

Why our own number normalisation: gsmmodem's ``_encodeAddressField`` sends anything that
is not ``[0-9]+`` or ``+[0-9]+`` as an *alphanumeric* address (docs/field-notes.md, "numbers
encoded as alphanumeric"), so ``0300-1234567`` would be delivered nowhere. Every number is
normalised first (``+923001234567``) and an alphanumeric destination is refused outright.
"""

from __future__ import annotations

import re
import unicodedata
from datetime import datetime, timedelta, timezone

from gsmmodem.pdu import _decodeRelativeValidityPeriod, _encodeRelativeValidityPeriod

from appliance.errors import PduError
from appliance.modem.pdu_text import decode_gsm7, unpack_septets

# TS 23.040 §9.1.2.5: type-of-number, bits 6-4 of the type-of-address octet.
TON_UNKNOWN, TON_INTERNATIONAL, TON_NATIONAL = 0, 1, 2
TON_NETWORK, TON_SUBSCRIBER, TON_ALPHANUMERIC, TON_ABBREVIATED = 3, 4, 5, 6
TOA_INTERNATIONAL = 0x91  # extension bit, international, ISDN/E.164
TOA_UNKNOWN = 0x81        # extension bit, unknown, ISDN/E.164 (short codes)

# An address field carries at most 20 digits (TS 23.040 §9.1.2.5: 2-12 octets).
MAX_DIGITS = 20
# Numbers this short are service/short codes ('8008', '9999'): never rewritten.
SHORT_CODE_MAX = 6
_NUMBER = re.compile(r"\+?[0-9]+")
# Semi-octet values 0xA-0xE (TS 23.040 §9.1.2.3); 0xF is the filler.
_BCD = "0123456789*#abc"
# Marks phones put around numbers (docs/field-notes.md: bidi marks, U+2010-2015, U+2212).
_INVISIBLE = {"\u200e", "\u200f", "\u061c", "\u202a", "\u202b", "\u202c", "\u2066",
              "\u2067", "\u2068", "\u2069", "\ufeff"}


def _strip_number(text: str) -> str:
    """Drop separators (spaces, any dash, dots, parentheses, bidi marks); ASCII digits."""
    out: list[str] = []
    for ch in text:
        if (ch.isspace() or ch in ".()\u2212" or ch in _INVISIBLE
                or unicodedata.category(ch) == "Pd"):
            continue
        digit = unicodedata.decimal(ch, None)
        out.append(str(digit) if digit is not None else ch)
    return "".join(out)


def is_alphanumeric(address: str) -> bool:
    """True if ``address`` is a name (``"JAZZ"``), not a number in any written form."""
    stripped = _strip_number(address)
    return bool(stripped) and _NUMBER.fullmatch(stripped) is None


def normalise_number(text: str, country_code: str = "92") -> str:
    """One canonical form per number: ``'0300-1234567'`` → ``'+923001234567'``.

    ``+CC…`` stays; ``00CC…`` (international prefix) and ``CC…`` (12 digits written
    without the plus) get a ``+``; ``0…`` (national trunk prefix, 9 digits or more) becomes
    ``+CC…``. Short codes (up to 6 digits) and other digit strings keep their digits;
    alphanumeric names are returned unchanged (only surrounding whitespace removed).
    """
    stripped = _strip_number(text)
    if not stripped:
        return ""
    if _NUMBER.fullmatch(stripped) is None:
        return text.strip()
    if stripped.startswith("+"):
        return stripped
    if len(stripped) <= SHORT_CODE_MAX:
        return stripped
    if stripped.startswith("00") and len(stripped) >= 10:
        return "+" + stripped[2:]
    if stripped.startswith("0") and len(stripped) >= 9:
        return "+" + country_code + stripped[1:]
    if stripped.startswith(country_code) and len(stripped) >= len(country_code) + 9:
        return "+" + stripped
    return stripped


def sender_kind(toa: int, address: str) -> str:
    """``Deliver.sender_type`` for a decoded address and its type-of-address octet."""
    ton = (toa >> 4) & 0x7
    if ton == TON_ALPHANUMERIC:
        return "alphanumeric"
    if not address:
        return "unknown"
    if ton in (TON_NETWORK, TON_ABBREVIATED) or len(address.lstrip("+")) <= SHORT_CODE_MAX:
        return "short"
    if ton == TON_INTERNATIONAL:
        return "international"
    if ton == TON_NATIONAL:
        return "national"
    return "unknown"


def normalise_decoded(toa: int, digits: str, country_code: str) -> str:
    """The canonical form of a numeric address as received, per its type of number."""
    ton = (toa >> 4) & 0x7
    if ton == TON_INTERNATIONAL:
        return "+" + digits if digits else ""
    if ton == TON_NATIONAL and len(digits) > SHORT_CODE_MAX and not digits.startswith("0"):
        # A national number is sent without its trunk prefix (ITU-T E.164 §2.5).
        return normalise_number("0" + digits, country_code)
    if ton in (TON_NETWORK, TON_ABBREVIATED):
        return digits
    return normalise_number(digits, country_code) if digits else ""


def encode_semi_octets(digits: str) -> bytes:
    """Swapped-nibble BCD with an F filler (TS 23.040 §9.1.2.3)."""
    if len(digits) % 2:
        digits += "F"
    return bytes(int(digits[i + 1] + digits[i], 16) for i in range(0, len(digits), 2))


def decode_semi_octets(data: bytes, count: int) -> str:
    """``count`` digits; the F filler (or an early F) ends the number."""
    out: list[str] = []
    for octet in data:
        for nibble in (octet & 0x0F, octet >> 4):
            if len(out) == count or nibble == 0xF:
                return "".join(out)
            out.append(_BCD[nibble])
    return "".join(out)


def encode_destination(number: str, country_code: str) -> bytes:
    """TP-DA for a normalised number; alphanumeric destinations are refused."""
    normal = normalise_number(number, country_code)
    if not normal:
        raise PduError("no destination number given; the reply has nowhere to go")
    if _NUMBER.fullmatch(normal) is None:
        raise PduError(f"destination {number!r} is not a phone number; an SMS cannot be "
                       "sent to an alphanumeric sender, so do not reply to it")
    digits = normal.lstrip("+")
    if len(digits) > MAX_DIGITS:
        raise PduError(f"destination {number!r} has {len(digits)} digits; at most "
                       f"{MAX_DIGITS} fit in TP-DA (TS 23.040 §9.1.2.5)")
    toa = TOA_INTERNATIONAL if normal.startswith("+") else TOA_UNKNOWN
    return bytes([len(digits), toa]) + encode_semi_octets(digits)


def encode_smsc(smsc: str | None, country_code: str) -> bytes:
    """The SMSC prefix of an AT+CMGS PDU; ``00`` lets the modem use AT+CSCA's number."""
    if not smsc:
        return b"\x00"
    normal = normalise_number(smsc, country_code)
    if _NUMBER.fullmatch(normal) is None or len(normal.lstrip("+")) > MAX_DIGITS:
        raise PduError(f"SMSC {smsc!r} is not a phone number; fix it in the modem "
                       "configuration or leave it empty to use the SIM's (AT+CSCA?)")
    digits = normal.lstrip("+")
    body = encode_semi_octets(digits)
    toa = TOA_INTERNATIONAL if normal.startswith("+") else TOA_UNKNOWN
    return bytes([1 + len(body), toa]) + body


def decode_address_value(toa: int, length: int, data: bytes) -> str:
    """Digits (``length`` semi-octets) or, for TON alphanumeric, GSM-7 text.

    Alphanumeric: ``length`` counts the semi-octets the packed septets occupy
    (TS 23.040 §9.1.2.5), so there are ``length * 4 // 7`` characters.
    """
    if (toa >> 4) & 0x7 == TON_ALPHANUMERIC:
        return decode_gsm7(unpack_septets(data, length * 4 // 7))
    return decode_semi_octets(data, length)


def decode_timestamp(data: bytes) -> datetime | None:
    """TP-SCTS / TP-DT (TS 23.040 §9.2.3.11): aware datetime, or None if malformed.

    A malformed stamp must not cost the citizen an answer (docs/field-notes.md B12), so it yields
    None instead of an error. Years 90-99 are 1990s, the rest 2000s (Gammu's convention).
    """
    nibbles = [(octet & 0x0F, octet >> 4) for octet in data]
    if any(lo > 9 or hi > 9 for lo, hi in nibbles[:6]):
        return None
    yy, mo, dd, hh, mi, ss = (lo * 10 + hi for lo, hi in nibbles[:6])
    tz_lo, tz_hi = nibbles[6]
    tz_tens = tz_lo & 0x7  # bit 3 of the first semi-octet is the sign
    if tz_hi > 9:
        return None
    quarters = tz_tens * 10 + tz_hi
    if quarters >= 96:
        return None
    sign = -1 if tz_lo & 0x8 else 1
    try:
        return datetime(1900 + yy if yy >= 90 else 2000 + yy, mo, dd, hh, mi, ss,
                        tzinfo=timezone(timedelta(minutes=15 * quarters * sign)))
    except ValueError:
        return None


def encode_validity(validity: timedelta) -> int:
    """Relative TP-VP (TS 23.040 §9.2.3.12.1), rounded down to a value it can express.

    Between 5 minutes and 63 weeks; gsmmodem's encoder is used inside that range (below
    5 minutes it would produce -1).
    """
    seconds = validity.total_seconds()
    if seconds < 300 or validity > timedelta(weeks=63):
        raise PduError(f"validity {validity} is outside 5 minutes .. 63 weeks, the range "
                       "of a relative TP-VP; fix the configured validity")
    return int(_encodeRelativeValidityPeriod(validity))


def decode_validity(octet: int) -> timedelta:
    """A relative TP-VP octet as a duration."""
    result: timedelta = _decodeRelativeValidityPeriod(octet)
    return result

