"""Fields of SMS TPDUs for the simulator's codec (3GPP TS 23.040 §9.1.2.5, §9.2.3, TS 23.038).

Addresses, time stamps, data coding and user data (with its header) are shared by the
three PDUs in :mod:`appliance.simulator.pdu`. Written from the specification, independently
of ``appliance/modem/pdu.py`` and ``gsmmodem.pdu`` (see :mod:`appliance.simulator.pdu` for why).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Literal

from appliance.errors import PduError
from appliance.simulator import gsm7

Alphabet = Literal["gsm7", "8bit", "ucs2"]

IEI_CONCAT_8 = 0x00   # TS 23.040 §9.2.3.24.1
IEI_CONCAT_16 = 0x08  # TS 23.040 §9.2.3.24.8

# TS 23.040 §9.1.2.5 type of address: the TON bits, and the semi-octet digits beyond 0-9.
TOA_INTERNATIONAL = 0x91
TOA_UNKNOWN = 0x81
TOA_ALPHANUMERIC = 0xD0
_BCD_EXTRA = {0xA: "*", 0xB: "#", 0xC: "a", 0xD: "b", 0xE: "c"}
_BCD_EXTRA_INV = {v: k for k, v in _BCD_EXTRA.items()}

PAKISTAN = timezone(timedelta(hours=5))


@dataclass(frozen=True)
class Concat:
    """A concatenation information element (TS 23.040 §9.2.3.24.1 / .8)."""

    reference: int
    total: int
    seq: int
    ref16: bool = False


@dataclass(frozen=True)
class UserData:
    """Decoded TP-UD: the header, its concatenation element if any, and the body."""

    alphabet: Alphabet
    udh: bytes
    concat: Concat | None
    text: str
    data: bytes


# --- addresses and time stamps ---------------------------------------------------------


def encode_address(number: str, *, smsc: bool = False) -> bytes:
    """Encode an address field (TS 23.040 §9.1.2.5); SMSC form per TS 24.011 §8.2.5.1.

    ``+923...`` becomes international, digits-only unknown, anything else alphanumeric
    (TON 101, GSM 7-bit packed), as an operator's "Jazz" sender would arrive.
    """
    if number.startswith("+") and number[1:].isdigit():
        toa, digits = TOA_INTERNATIONAL, number[1:]
    elif number and all(ch.isdigit() or ch in _BCD_EXTRA_INV for ch in number):
        toa, digits = TOA_UNKNOWN, number
    else:
        if smsc:
            raise PduError(f"SMSC address {number!r} must be numeric")
        septets = gsm7.encode_septets(number)
        packed = gsm7.pack_septets(septets)
        return bytes([math.ceil(len(septets) * 7 / 4), TOA_ALPHANUMERIC]) + packed
    if len(digits) % 2:
        digits += "F"
    body = bytearray()
    for i in range(0, len(digits), 2):
        lo, hi = (_nibble(d) for d in digits[i:i + 2])
        body.append(hi << 4 | lo)
    if smsc:
        return bytes([len(body) + 1, toa]) + body
    useful = len(digits) - digits.endswith("F")
    return bytes([useful, toa]) + body


def _nibble(digit: str) -> int:
    if digit.isdigit():
        return int(digit)
    if digit == "F":
        return 0xF
    return _BCD_EXTRA_INV[digit]


def decode_bcd(body: bytes, count: int) -> str:
    digits: list[str] = []
    for octet in body:
        for nib in (octet & 0x0F, octet >> 4):
            if len(digits) == count or nib == 0xF:
                break
            digits.append(str(nib) if nib <= 9 else _BCD_EXTRA[nib])
    return "".join(digits)


def encode_timestamp(moment: datetime) -> bytes:
    """TP-SCTS / TP-DT (TS 23.040 §9.2.3.11): swapped semi-octets, zone in quarter hours."""
    if moment.tzinfo is None:
        moment = moment.replace(tzinfo=PAKISTAN)
    offset = moment.utcoffset() or timedelta(0)
    quarters = int(offset.total_seconds() // 900)
    fields = [moment.year % 100, moment.month, moment.day, moment.hour, moment.minute,
              moment.second]
    out = bytearray((v % 10) << 4 | v // 10 for v in fields)
    zone = abs(quarters)
    octet = (zone % 10) << 4 | zone // 10
    out.append(octet | 0x08 if quarters < 0 else octet)  # bit 3: the sign of the zone
    return bytes(out)


def decode_timestamp(raw: bytes) -> datetime:
    def swapped(octet: int) -> int:
        return (octet & 0x0F) * 10 + (octet >> 4)

    zone = (raw[6] & 0x07) * 10 + (raw[6] >> 4)
    offset = timedelta(minutes=15 * zone * (-1 if raw[6] & 0x08 else 1))
    try:
        return datetime(2000 + swapped(raw[0]), swapped(raw[1]), swapped(raw[2]),
                        swapped(raw[3]), swapped(raw[4]), swapped(raw[5]),
                        tzinfo=timezone(offset))
    except ValueError as exc:
        raise PduError(f"time stamp {raw.hex().upper()} is not a date: {exc}") from exc


# --- user data -----------------------------------------------------------------------------


def alphabet_of(dcs: int) -> Alphabet:
    """The character set named by a TP-DCS octet (TS 23.038 §4)."""
    group = dcs >> 4
    if group <= 0b0111:  # general data coding, with or without automatic deletion
        if dcs & 0x20:
            raise PduError(f"DCS {dcs:#04x} announces compressed text, which no handset "
                           "here supports")
        return ("gsm7", "8bit", "ucs2", "gsm7")[(dcs >> 2) & 0x03]  # 11 is reserved
    if group in (0b1100, 0b1101):  # message waiting indication, GSM 7-bit text
        return "gsm7"
    if group == 0b1110:  # message waiting indication, UCS-2 text
        return "ucs2"
    if group == 0b1111:  # data coding / message class
        return "8bit" if dcs & 0x04 else "gsm7"
    return "gsm7"  # reserved groups: TS 23.038 says assume the default alphabet


def parse_udh(udh: bytes) -> Concat | None:
    """Walk the information elements (TS 23.040 §9.2.3.24); return the concatenation one."""
    concat: Concat | None = None
    i = 0
    while i < len(udh):
        if i + 2 > len(udh) or i + 2 + udh[i + 1] > len(udh):
            raise PduError(f"user data header {udh.hex().upper()} overruns its length")
        iei, length, value = udh[i], udh[i + 1], udh[i + 2:i + 2 + udh[i + 1]]
        if iei in (IEI_CONCAT_8, IEI_CONCAT_16):
            ref16 = iei == IEI_CONCAT_16
            if length != (4 if ref16 else 3):
                raise PduError(f"concatenation element {value.hex()} has length {length}")
            ref = int.from_bytes(value[:-2], "big")
            total, seq = value[-2], value[-1]
            if total == 0 or not 1 <= seq <= total:
                raise PduError(f"concatenation element says part {seq} of {total}")
            concat = Concat(ref, total, seq, ref16)
        i += 2 + length
    return concat


def decode_user_data(dcs: int, udl: int, ud: bytes, has_udh: bool) -> UserData:
    """Decode TP-UD given TP-DCS, TP-UDL and TP-UDHI; the lengths must add up exactly."""
    alphabet = alphabet_of(dcs)
    expected = math.ceil(udl * 7 / 8) if alphabet == "gsm7" else udl
    if len(ud) != expected:
        raise PduError(f"TP-UDL {udl} ({alphabet}) needs {expected} octets of user data, "
                       f"the PDU has {len(ud)}")
    udh = b""
    if has_udh:
        if not ud or ud[0] + 1 > len(ud):
            raise PduError("TP-UDHI is set but the user data header does not fit")
        udh = ud[1:1 + ud[0]]
    concat = parse_udh(udh)
    header_octets = len(udh) + 1 if has_udh else 0
    if alphabet == "gsm7":
        header_bits = header_octets * 8
        fill = (7 - header_bits % 7) % 7
        count = udl - (header_bits + fill) // 7
        if count < 0:
            raise PduError(f"TP-UDL {udl} septets is shorter than the user data header")
        septets = gsm7.unpack_septets(ud, count, header_bits + fill)
        return UserData(alphabet, udh, concat, gsm7.decode_septets(septets), b"")
    body = ud[header_octets:]
    if alphabet == "ucs2":
        if len(body) % 2:
            raise PduError(f"UCS-2 body of {len(body)} octets is not whole characters")
        # A part may end inside a surrogate pair if the sender split it badly; keep the lone
        # half (surrogatepass) so reassembly can join it with the next part.
        return UserData(alphabet, udh, concat, body.decode("utf-16-be", "surrogatepass"), body)
    return UserData(alphabet, udh, concat, body.decode("latin-1"), body)


def split_text(text: str, alphabet: Alphabet, *, ref16: bool = False) -> list[str]:
    """Cut text into parts that each fit one SMS (TS 23.040 §9.2.3.24.1, TS 23.038 §6.1).

    Single: 160 septets or 70 UCS-2 units. Concatenated: minus the 6- or 7-octet header
    (153/152 septets, 67/66 units). Never splits an escape sequence or a surrogate pair.
    """
    if alphabet == "gsm7":
        sizes = [len(gsm7.char_septets(ch)) for ch in text]
        single, header_units = 160, (8 if ref16 else 7)
        per_part = 160 - header_units
    else:
        sizes = [2 if ord(ch) > 0xFFFF else 1 for ch in text]
        single, per_part = 70, (66 if ref16 else 67)
    if sum(sizes) <= single:
        return [text]
    parts: list[str] = []
    start, used = 0, 0
    for i, size in enumerate(sizes):
        if used + size > per_part:
            parts.append(text[start:i])
            start, used = i, 0
        used += size
    parts.append(text[start:])
    return parts


def encode_user_data(text: str, alphabet: Alphabet, udh: bytes) -> tuple[int, bytes]:
    header = bytes([len(udh)]) + udh if udh else b""
    if alphabet == "gsm7":
        header_bits = len(header) * 8
        fill = (7 - header_bits % 7) % 7
        septets = gsm7.encode_septets(text)
        packed = gsm7.pack_septets(septets, fill)
        return (header_bits + fill) // 7 + len(septets), header + packed
    body = text.encode("utf-16-be", "surrogatepass")
    return len(header) + len(body), header + body
