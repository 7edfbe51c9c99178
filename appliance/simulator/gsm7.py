"""GSM 7-bit default alphabet and septet packing for the simulator (3GPP TS 23.038).

The simulator judges the appliance's own codec, so it carries an independent implementation
written from the specification rather than sharing code with ``appliance/modem/pdu.py`` or
``gsmmodem.pdu``: a bug copied into both sides would never be seen.
"""

from __future__ import annotations

from appliance.errors import PduError

# TS 23.038 §6.2.1: the default alphabet, indexed by septet value. 0x1B is the escape to
# the extension table and is never a character of its own.
DEFAULT_ALPHABET = (
    "@£$¥èéùìòÇ\nØø\rÅå"
    "Δ_ΦΓΛΩΠΨΣΘΞ\x1bÆæßÉ"
    " !\"#¤%&'()*+,-./"
    "0123456789:;<=>?"
    "¡ABCDEFGHIJKLMNO"
    "PQRSTUVWXYZÄÖÑÜ§"
    "¿abcdefghijklmno"
    "pqrstuvwxyzäöñüà"
)
assert len(DEFAULT_ALPHABET) == 128

ESCAPE = 0x1B

# TS 23.038 §6.2.1.1: the default alphabet extension table (reached through ESC).
EXTENSION_TABLE: dict[int, str] = {
    0x0A: "\f",
    0x14: "^",
    0x28: "{",
    0x29: "}",
    0x2F: "\\",
    0x3C: "[",
    0x3D: "~",
    0x3E: "]",
    0x40: "|",
    0x65: "€",
}

_CHAR_TO_SEPTETS: dict[str, tuple[int, ...]] = {
    ch: (code,) for code, ch in enumerate(DEFAULT_ALPHABET) if code != ESCAPE
}
_CHAR_TO_SEPTETS.update({ch: (ESCAPE, code) for code, ch in EXTENSION_TABLE.items()})


def is_gsm7(text: str) -> bool:
    """True when every character exists in the default alphabet or its extension table."""
    return all(ch in _CHAR_TO_SEPTETS for ch in text)


def char_septets(ch: str) -> tuple[int, ...]:
    """The septet(s) for one character: one, or two for an extension-table character."""
    try:
        return _CHAR_TO_SEPTETS[ch]
    except KeyError:
        raise PduError(f"character {ch!r} (U+{ord(ch):04X}) is not in the GSM 7-bit "
                       "alphabet; send the text as UCS-2") from None


def encode_septets(text: str) -> list[int]:
    """Text to septet values; extension characters become ESC + code (TS 23.038 §6.2.1.1)."""
    out: list[int] = []
    for ch in text:
        out.extend(char_septets(ch))
    return out


def decode_septets(septets: list[int]) -> str:
    """Septet values to text.

    An escape followed by a code missing from the extension table shows the default-alphabet
    character for that code, as TS 23.038 §6.2.1.1 asks of a receiving entity; a trailing
    lone escape is dropped.
    """
    out: list[str] = []
    escaped = False
    for value in septets:
        if escaped:
            out.append(EXTENSION_TABLE.get(value, DEFAULT_ALPHABET[value]))
            escaped = False
        elif value == ESCAPE:
            escaped = True
        else:
            out.append(DEFAULT_ALPHABET[value])
    return "".join(out)


def pack_septets(septets: list[int], fill_bits: int = 0) -> bytes:
    """Pack septets LSB first into octets (TS 23.038 §6.1.2.1.1).

    ``fill_bits`` zero bits come first, so that text following a user data header starts on
    a septet boundary (TS 23.040 §9.2.3.24).
    """
    acc = 0
    nbits = fill_bits
    out = bytearray()
    for value in septets:
        acc |= (value & 0x7F) << nbits
        nbits += 7
        while nbits >= 8:
            out.append(acc & 0xFF)
            acc >>= 8
            nbits -= 8
    if nbits:
        out.append(acc & 0xFF)
    return bytes(out)


def unpack_septets(data: bytes, count: int, fill_bits: int = 0) -> list[int]:
    """Unpack ``count`` septets from ``data``, skipping ``fill_bits`` leading bits."""
    needed_bits = fill_bits + 7 * count
    if needed_bits > 8 * len(data):
        raise PduError(f"user data holds {len(data)} octets, too short for {count} septets")
    value = int.from_bytes(data, "little")
    return [(value >> (fill_bits + 7 * i)) & 0x7F for i in range(count)]
