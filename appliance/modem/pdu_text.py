"""Alphabets of the SMS user data: GSM-7 and UCS-2, splitting into parts, DCS normalisation.

The character tables are TS 23.038 §6.2.1 and §6.2.1.1 typed in here. They used to be
python-gsmmodem-new's (``gsmmodem.pdu.GSM7_BASIC`` / ``GSM7_EXTENDED``), which are wrong in
two places: septet 0x5F is a backtick there (the spec has '§', so an inbound '§' read as
'`' and a reply's '`' reached the citizen as '§'), and ESC 0x0A is 'ÿ' (the spec has FORM
FEED). tests/test_gsm7_alphabet.py checks every code point against the gsm0338 codec. The
bit-level work is ours too, because the library's versions fail on cases this unit meets
(measured against gsmmodem 0.13.0, see tests/test_pdu.py):

* ``encodeGsm7('ÿ')`` raises ``TypeError`` (its extension table maps ``'ÿ'`` to an int);
  ``'\\x1b'`` is "encoded" as a bare ESC that corrupts the next character.
* ``unpackSeptets`` drops a final ``'@'`` (septet 0) that ends on an octet boundary, and
  reads past TP-UDL into trailing padding.
* ``divideTextUcs2`` splits surrogate pairs and ``encodeUcs2`` raises ``ValueError`` on any
  character outside the BMP (an emoji), docs/field-notes.md B13.

Everything here is pure: values in, values out.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence

from appliance.errors import PduError

GSM7 = "gsm7"
UCS2 = "ucs2"
BINARY = "8bit"
# Marks text that is not there: a concatenated part that never came, or user data cut
# short by the phone. Also keeps digits either side of a gap from joining into a CNIC.
MISSING = "\u2026"

_ESC = 0x1B

# TS 23.038 §6.2.1: the default alphabet, indexed by septet. 0x1B is the escape to the
# extension table; it decodes as a space only where the spec says so (see decode_gsm7).
GSM7_BASIC = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(GSM7_BASIC) == 128
# TS 23.038 §6.2.1.1: the extension table, by the code that follows ESC.
GSM7_EXTENSION: dict[int, str] = {
    0x0A: "\x0c", 0x14: "^", 0x28: "{", 0x29: "}", 0x2F: "\\", 0x3C: "[", 0x3D: "~",
    0x3E: "]", 0x40: "|", 0x65: "€",
}
# Basic table minus ESC itself (a literal U+001B in text must not become an escape
# prefix), then the extension characters as ESC + code.
_GSM7_ENCODE: dict[str, tuple[int, ...]] = {
    ch: (code,) for code, ch in enumerate(GSM7_BASIC) if code != _ESC
}
_GSM7_EXT_DECODE = GSM7_EXTENSION
for _code, _ch in _GSM7_EXT_DECODE.items():
    _GSM7_ENCODE.setdefault(_ch, (_ESC, _code))

# Octets of user data in one SMS (TS 23.040 §9.2.3.16).
_UD_OCTETS = 140
# A concatenation UDH is UDHL + IEI + IEDL + IE data (TS 23.040 §9.2.3.24.1 / .8).
CONCAT_UDH_OCTETS = {8: 1 + 2 + 3, 16: 1 + 2 + 4}


def per_part_limit(encoding: str, ref_bits: int | None) -> int:
    """Septets (GSM-7) or UTF-16 code units (UCS-2) one part can carry.

    160 / 70 for a single SMS; 153 / 67 beside an 8-bit concatenation UDH and 152 / 66
    beside a 16-bit one (the UDH is one octet longer, TS 23.040 §9.2.3.24.8).
    """
    udh = 0 if ref_bits is None else CONCAT_UDH_OCTETS[ref_bits]
    if encoding == GSM7:
        return (_UD_OCTETS * 8 - udh * 8) // 7
    return (_UD_OCTETS - udh) // 2


def gsm7_codes(text: str) -> list[tuple[int, ...]] | None:
    """One tuple of septet codes per character, or None if the text needs UCS-2."""
    try:
        return [_GSM7_ENCODE[ch] for ch in text]
    except KeyError:
        return None


def split_gsm7(codes: Sequence[tuple[int, ...]], limit: int) -> list[list[tuple[int, ...]]]:
    """Greedy split into parts of at most ``limit`` septets; an escape pair stays whole."""
    parts: list[list[tuple[int, ...]]] = [[]]
    used = 0
    for group in codes:
        if used + len(group) > limit:
            parts.append([])
            used = 0
        parts[-1].append(group)
        used += len(group)
    return parts


def split_utf16(units: Sequence[int], limit: int) -> list[list[int]]:
    """Greedy split into parts of at most ``limit`` code units; a surrogate pair stays whole."""
    parts: list[list[int]] = []
    start = 0
    while start < len(units):
        end = min(start + limit, len(units))
        if end < len(units) and 0xD800 <= units[end - 1] <= 0xDBFF:
            end -= 1  # high surrogate: its low half goes with it into the next part
        parts.append(list(units[start:end]))
        start = end
    return parts or [[]]


def plan_parts(text: str, ref_bits: int) -> tuple[str, list[bytes]]:
    """Choose the alphabet and split ``text``; each part as septet codes or UTF-16 bytes.

    GSM-7 whenever every character is in the default alphabet or its extension table,
    UCS-2 otherwise (TS 23.038 §4); 160/70 fit in one SMS, otherwise concatenated parts.
    """
    codes = gsm7_codes(text)
    if codes is not None:
        if sum(map(len, codes)) <= per_part_limit(GSM7, None):
            chunks = [list(codes)]
        else:
            chunks = split_gsm7(codes, per_part_limit(GSM7, ref_bits))
        return GSM7, [bytes(c for group in chunk for c in group) for chunk in chunks]
    raw = text.encode("utf-16-be", "surrogatepass")
    if len(raw) <= 2 * per_part_limit(UCS2, None):
        return UCS2, [raw]
    units = list(struct.unpack(f">{len(raw) // 2}H", raw))
    unit_chunks = split_utf16(units, per_part_limit(UCS2, ref_bits))
    return UCS2, [struct.pack(f">{len(chunk)}H", *chunk) for chunk in unit_chunks]


def count_parts(text: str, *, ref16: bool = False) -> tuple[int, str]:
    """How many SMS parts ``text`` needs and in which alphabet, without building PDUs."""
    encoding, chunks = plan_parts(text, 16 if ref16 else 8)
    return len(chunks), encoding


def pack_septets(septets: bytes, fill_bits: int = 0) -> bytes:
    """Pack 7-bit codes LSB first after ``fill_bits`` zero bits (TS 23.038 §6.1.2.1.1)."""
    value = 0
    for i, septet in enumerate(septets):
        value |= (septet & 0x7F) << (fill_bits + 7 * i)
    bits = fill_bits + 7 * len(septets)
    return value.to_bytes((bits + 7) // 8, "little")


def unpack_septets(data: bytes, count: int, skip_bits: int = 0) -> bytes:
    """Exactly ``count`` septets after ``skip_bits`` bits (UDH plus fill bits)."""
    if skip_bits + 7 * count > 8 * len(data):
        raise PduError(f"GSM-7 user data truncated: {count} septets need "
                       f"{(skip_bits + 7 * count + 7) // 8} octets, {len(data)} present")
    value = int.from_bytes(data, "little") >> skip_bits
    return bytes((value >> (7 * i)) & 0x7F for i in range(count))


def decode_gsm7(septets: bytes) -> str:
    """Septet codes to text, escapes per TS 23.038 §6.2.1.1.

    An escape followed by a code the extension table lacks shows the basic-table
    character; ESC ESC and a trailing lone ESC show a space (the spec's fallback).
    """
    out: list[str] = []
    i = 0
    while i < len(septets):
        code = septets[i]
        if code != _ESC:
            out.append(GSM7_BASIC[code])
            i += 1
            continue
        nxt = septets[i + 1] if i + 1 < len(septets) else _ESC
        if nxt == _ESC:
            out.append(" ")
        else:
            out.append(_GSM7_EXT_DECODE.get(nxt, GSM7_BASIC[nxt]))
        i += 2
    return "".join(out)


def decode_utf16(data: bytes, *, final: bool = True) -> str:
    """UCS-2 user data, read as UTF-16BE so surrogate pairs (emoji) become one character.

    An odd trailing octet is dropped. With ``final`` a lone surrogate (half an emoji whose
    other half is in another part, or garbage) becomes U+FFFD so the text can always be
    stored as UTF-8; otherwise it is kept for joining with the neighbouring part.
    """
    text = data[: len(data) - len(data) % 2].decode("utf-16-be", "surrogatepass")
    if final:
        text = text.encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
    return text


def decode_body(encoding: str, body: bytes) -> str:
    """Text of a user-data body (septet codes, UTF-16 bytes, or 8-bit octets).

    8-bit data becomes latin-1 text: reversible (``text.encode('latin-1')`` gives the
    octets back) and it cannot invent digits the way a hex rendering could, so a binary
    message can never look like a CNIC query.
    """
    if encoding == GSM7:
        return decode_gsm7(body)
    if encoding == UCS2:
        return decode_utf16(body)
    return body.decode("latin-1")


def normalise_dcs(dcs: int) -> str:
    """The alphabet a TP-DCS octet means: ``"gsm7"``, ``"8bit"`` or ``"ucs2"``.

    TS 23.038 §4 coding groups:

    * ``00xx xxxx`` general, ``01xx xxxx`` the same marked for automatic deletion
      (e.g. 0x48 = UCS-2): bit 5 = compressed (refused: nobody implements it), bits 3-2
      = alphabet, ``11`` reserved;
    * ``1000``-``1011`` reserved groups;
    * ``1100``/``1101`` message waiting, GSM-7; ``1110`` message waiting, UCS-2;
    * ``1111`` data coding/message class: bit 2 = 8-bit data, else GSM-7.

    "Any reserved codings shall be assumed to be the GSM 7 bit default alphabet" (§4).
    """
    if not 0 <= dcs <= 0xFF:
        raise PduError(f"TP-DCS {dcs!r} is not an octet")
    group = dcs >> 4
    if group <= 0x7:
        if dcs & 0x20:
            raise PduError(f"TP-DCS 0x{dcs:02X} announces compressed text (TS 23.042), "
                           "which this unit cannot read; quarantine the message")
        return {0: GSM7, 1: BINARY, 2: UCS2, 3: GSM7}[(dcs >> 2) & 0x3]
    if group == 0xE:
        return UCS2
    if group == 0xF:
        return BINARY if dcs & 0x04 else GSM7
    return GSM7
