"""Encoding replies as SMS-SUBMIT PDUs for ``AT+CMGS=<length>`` (TS 27.005 §3.5.1).

Why not ``gsmmodem.pdu.encodeSmsSubmitPdu`` as it stands: it uses TP-MR as the
concatenation reference (docs/field-notes.md B9: the next message reuses it, 8-bit only, and a
16-bit reference overflows the TP-MR octet), its UCS-2 split cuts emoji in half and its
UCS-2 encoder raises on them (B13). Here the first octet, the concatenation UDH and the
split are ours; the character tables are the library's (see ``pdu_text``), and
tests/test_pdu.py checks that where the library is right our PDUs equal its, octet for
octet.

TP-MR is sent as 0: the modem assigns the real one and answers ``+CMGS: <mr>``, which is
what a status report later quotes. The concatenation reference is separate and comes from
the caller's per-modem :class:`ConcatRefCounter`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import timedelta

from appliance.errors import PduError
from appliance.modem.pdu_address import encode_destination, encode_smsc, encode_validity
from appliance.modem.pdu_text import GSM7, UCS2, pack_septets, plan_parts

MAX_PARTS = 255  # the total is one octet (TS 23.040 §9.2.3.24.1)
# First octet of an SMS-SUBMIT (TS 23.040 §9.2.2.2): TP-MTI 01, TP-VPF relative,
# TP-SRR, TP-UDHI.
_MTI_SUBMIT = 0x01
_VPF_RELATIVE = 0x10
_SRR = 0x20
UDHI = 0x40
DCS_BY_ENCODING = {GSM7: 0x00, UCS2: 0x08}  # TS 23.038 §4, general group, no class


@dataclass(frozen=True)
class SubmitPart:
    """One PDU for one ``AT+CMGS=<tpdu_length>`` / ``> `` / ``<pdu>^Z`` transaction.

    ``pdu`` includes the SMSC prefix (``00`` = the SIM's SMSC); ``tpdu_length`` counts
    the octets after it, which is the number AT+CMGS wants (TS 27.005 §3.5.1).
    """

    pdu: str
    tpdu_length: int
    seq: int
    total: int
    reference: int | None
    encoding: str


class ConcatRefCounter:
    """Concatenation reference per modem: 1..255 (8-bit) or 1..65535 (16-bit), wrapping.

    Never 0, so a reference is never mistaken for "unset". ``value`` is the last reference
    handed out; persist it and pass it back as ``start`` so a restart does not reuse
    references the network or the phone may still hold. Not thread-safe: it belongs to the
    modem's owner thread.
    """

    def __init__(self, start: int = 0, *, bits: int = 8) -> None:
        if bits not in (8, 16):
            raise ValueError(f"concatenation reference bits must be 8 or 16, not {bits}")
        if start < 0:
            raise ValueError(f"concatenation reference start must be >= 0, not {start}")
        self._limit = (1 << bits) - 1
        self.bits = bits
        self._value = start % (self._limit + 1)

    def next(self) -> int:
        self._value = self._value % self._limit + 1
        return self._value

    @property
    def value(self) -> int:
        return self._value


def concat_udh(reference: int, seq: int, total: int, bits: int) -> bytes:
    """UDHL + concatenation IE, 8-bit (§9.2.3.24.1) or 16-bit (§9.2.3.24.8) reference."""
    if bits == 8:
        return bytes([5, 0x00, 3, reference, total, seq])
    return bytes([6, 0x08, 4, reference >> 8, reference & 0xFF, total, seq])


def encode_user_data(encoding: str, chunk: bytes, udh: bytes) -> bytes:
    """TP-UDL + TP-UD. GSM-7 counts septets and pads the UDH to a septet boundary."""
    if encoding == GSM7:
        header_bits = len(udh) * 8
        fill = -header_bits % 7
        septets = (header_bits + fill) // 7 + len(chunk)
        packed = pack_septets(chunk, fill)
        # pack_septets starts with the fill bits; the UDH octets go in front of them.
        return bytes([septets]) + udh + packed
    return bytes([len(udh) + len(chunk)]) + udh + chunk


def encode_submit(number: str, text: str, *, reference: int | None = None,
                  ref16: bool = False, status_report: bool = False,
                  validity: timedelta | None = None, smsc: str | None = None,
                  country_code: str = "92") -> list[SubmitPart]:
    """SMS-SUBMIT PDUs for ``text`` to ``number``: GSM-7 if it fits, else UCS-2.

    One part up to 160 septets / 70 UTF-16 units; otherwise parts of 153 / 67 (152 / 66
    with a 16-bit reference), never splitting an escape sequence or a surrogate pair.
    ``reference`` (from :class:`ConcatRefCounter`) is required when there is more than
    one part. ``number`` is normalised first and must not be alphanumeric.
    """
    bits = 16 if ref16 else 8
    destination = encode_destination(number, country_code)
    prefix = encode_smsc(smsc, country_code)
    encoding, chunks = plan_parts(text, bits)
    total = len(chunks)
    if total > MAX_PARTS:
        raise PduError(f"reply needs {total} SMS parts, more than the {MAX_PARTS} a "
                       "concatenated message can have; shorten the reply template")
    if total > 1:
        if reference is None:
            raise PduError(f"reply needs {total} parts: pass a concatenation reference "
                           "from the modem's ConcatRefCounter")
        if not 0 <= reference < (1 << bits):
            raise PduError(f"concatenation reference {reference} does not fit in {bits} "
                           f"bits{'' if ref16 else '; use ref16=True for 16-bit references'}")
    first = _MTI_SUBMIT
    tail = b""
    if validity is not None:
        first |= _VPF_RELATIVE
        tail = bytes([encode_validity(validity)])
    if status_report:
        first |= _SRR
    if total > 1:
        first |= UDHI
    parts: list[SubmitPart] = []
    for seq, chunk in enumerate(chunks, start=1):
        udh = b""
        if total > 1 and reference is not None:
            udh = concat_udh(reference, seq, total, bits)
        # TP-MR 0 (the modem fills it in), TP-PID 0 (plain SME-to-SME text).
        tpdu = (bytes([first, 0x00]) + destination
                + bytes([0x00, DCS_BY_ENCODING[encoding]]) + tail
                + encode_user_data(encoding, chunk, udh))
        parts.append(SubmitPart(pdu=(prefix + tpdu).hex().upper(), tpdu_length=len(tpdu),
                                seq=seq, total=total,
                                reference=reference if total > 1 else None,
                                encoding=encoding))
    return parts
