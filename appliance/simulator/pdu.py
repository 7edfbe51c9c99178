"""The simulated network's own SMS codec (3GPP TS 23.040 / TS 23.038).

The SMSC side of the air interface: it *encodes* SMS-DELIVER and SMS-STATUS-REPORT (what a
network hands a modem) and *decodes* SMS-SUBMIT (what a modem hands the network). It is
written from the specification, independently of ``appliance/modem/pdu.py`` and
``gsmmodem.pdu``, so that the simulator can judge the appliance's codec instead of
agreeing with its mistakes. It is strict on purpose: a length that does not add up or a
malformed concatenation header raises :class:`~appliance.errors.PduError`.

PDUs travel as upper-case hex strings with the service-centre address in front, as they
appear after ``+CMGR:`` and before Ctrl-Z in ``AT+CMGS`` (TS 27.005 §3.1 <pdu>).

Its ``Submit``, ``Deliver``, ``Concat``, ``encode_deliver`` (and ``gsm7.pack_septets``)
share their names with the appliance's codec on purpose: they are the same things of
TS 23.040 written a second time. Outside the simulator they are used only through the
module (``sim_pdu.encode_deliver``), never imported bare, so a reader always sees which
codec is meant; production code never imports this package at all.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from datetime import datetime

from appliance.errors import PduError
from appliance.simulator import gsm7
from appliance.simulator.pdu_fields import (
    IEI_CONCAT_8, IEI_CONCAT_16, PAKISTAN, Alphabet, Concat, UserData, decode_bcd,
    decode_timestamp, decode_user_data, encode_address, encode_timestamp, encode_user_data,
    split_text)

__all__ = ["PAKISTAN", "Alphabet", "Concat", "Deliver", "EncodedPdu", "Submit", "UserData",
           "decode_deliver", "decode_submit", "decode_timestamp", "encode_deliver",
           "encode_status_report", "encode_timestamp", "join_texts", "split_text"]

# TS 23.040 §9.2.3.1: TP-MTI values, per direction.
MTI_DELIVER = 0b00
MTI_SUBMIT = 0b01
MTI_STATUS_REPORT = 0b10


@dataclass(frozen=True)
class Submit:
    """A decoded SMS-SUBMIT (TS 23.040 §9.2.2.2) as captured from ``AT+CMGS``."""

    smsc: str | None
    mr: int
    recipient: str
    status_report: bool
    reject_duplicates: bool
    validity: bytes
    pid: int
    dcs: int
    user_data: UserData
    tpdu_length: int

    @property
    def text(self) -> str:
        return self.user_data.text

    @property
    def concat(self) -> Concat | None:
        return self.user_data.concat


@dataclass(frozen=True)
class Deliver:
    """A decoded SMS-DELIVER (TS 23.040 §9.2.2.1); used to show SIM contents."""

    smsc: str | None
    sender: str
    timestamp: datetime
    pid: int
    dcs: int
    user_data: UserData


@dataclass(frozen=True)
class EncodedPdu:
    """A PDU ready for ``+CMGR``: hex with the SMSC address, and the TPDU length in octets."""

    pdu: str
    tpdu_length: int
    concat: Concat | None = None
    text: str = field(default="", compare=False)


# --- the three PDUs ------------------------------------------------------------------------


def encode_deliver(sender: str, text: str, *, smsc: str, timestamp: datetime,
                   alphabet: Alphabet | None = None, reference: int = 0,
                   ref16: bool = False) -> list[EncodedPdu]:
    """SMS-DELIVER PDUs for ``text`` from ``sender`` (TS 23.040 §9.2.2.1), split as needed.

    ``alphabet`` defaults to GSM 7-bit when every character fits, else UCS-2. Parts after
    the first are sent with TP-MMS=0 ("more messages to send") except the last.
    """
    chosen: Alphabet = alphabet or ("gsm7" if gsm7.is_gsm7(text) else "ucs2")
    if chosen == "8bit":
        raise PduError("the simulated network only originates text (GSM 7-bit or UCS-2)")
    chunks = split_text(text, chosen, ref16=ref16)
    total = len(chunks)
    if total > 255:
        raise PduError(f"text needs {total} parts; a concatenated SMS holds at most 255")
    dcs = 0x00 if chosen == "gsm7" else 0x08
    sca = encode_address(smsc, smsc=True)
    out: list[EncodedPdu] = []
    for seq, chunk in enumerate(chunks, start=1):
        concat = Concat(reference & (0xFFFF if ref16 else 0xFF), total, seq, ref16) \
            if total > 1 else None
        udh = _concat_element(concat) if concat else b""
        first = MTI_DELIVER | (0x04 if seq == total else 0x00) | (0x40 if udh else 0x00)
        udl, ud = encode_user_data(chunk, chosen, udh)
        tpdu = (bytes([first]) + encode_address(sender) + bytes([0x00, dcs])
                + encode_timestamp(timestamp) + bytes([udl]) + ud)
        out.append(EncodedPdu((sca + tpdu).hex().upper(), len(tpdu), concat, chunk))
    return out


def _concat_element(concat: Concat) -> bytes:
    if concat.ref16:
        return bytes([IEI_CONCAT_16, 4]) + concat.reference.to_bytes(2, "big") + \
            bytes([concat.total, concat.seq])
    return bytes([IEI_CONCAT_8, 3, concat.reference, concat.total, concat.seq])


def encode_status_report(*, smsc: str, mr: int, recipient: str, submitted: datetime,
                         discharged: datetime, status: int = 0x00) -> EncodedPdu:
    """SMS-STATUS-REPORT (TS 23.040 §9.2.2.3); status 0x00 = received by the SME."""
    first = MTI_STATUS_REPORT | 0x04  # TP-MMS: no more messages; TP-SRQ 0: about a SUBMIT
    tpdu = (bytes([first, mr & 0xFF]) + encode_address(recipient)
            + encode_timestamp(submitted) + encode_timestamp(discharged) + bytes([status]))
    sca = encode_address(smsc, smsc=True)
    return EncodedPdu((sca + tpdu).hex().upper(), len(tpdu))


class _Reader:
    """Cursor over PDU octets that names the field when the PDU ends too early."""

    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, count: int, what: str) -> bytes:
        if self.pos + count > len(self.data):
            raise PduError(f"PDU ends inside {what} (needs {count} octets at {self.pos})")
        chunk = self.data[self.pos:self.pos + count]
        self.pos += count
        return chunk

    def octet(self, what: str) -> int:
        return self.take(1, what)[0]

    def address(self, what: str) -> str:
        digits = self.octet(what)
        toa = self.octet(what)
        body = self.take(math.ceil(digits / 2), what)
        if (toa >> 4) & 0x07 == 0b101:  # alphanumeric, TS 23.040 §9.1.2.5
            return gsm7.decode_septets(gsm7.unpack_septets(body, digits * 4 // 7))
        number = decode_bcd(body, digits)
        return "+" + number if (toa >> 4) & 0x07 == 0b001 else number

    def smsc(self) -> str | None:
        length = self.octet("the SMSC address length")
        if length == 0:
            return None
        raw = self.take(length, "the SMSC address")
        number = decode_bcd(raw[1:], 2 * (length - 1))
        return "+" + number if (raw[0] >> 4) & 0x07 == 0b001 else number


def _hex(pdu_hex: str) -> bytes:
    try:
        return bytes.fromhex(pdu_hex.strip())
    except ValueError as exc:
        raise PduError(f"PDU is not hexadecimal: {exc}", pdu=pdu_hex) from exc


def decode_submit(pdu_hex: str) -> Submit:
    """Decode an SMS-SUBMIT with its SMSC prefix, as written after ``AT+CMGS=n``."""
    try:
        r = _Reader(_hex(pdu_hex))
        smsc = r.smsc()
        tpdu_start = r.pos
        first = r.octet("TP-MTI")
        if first & 0x03 != MTI_SUBMIT:
            raise PduError(f"TP-MTI {first & 0x03} is not SMS-SUBMIT")
        mr = r.octet("TP-MR")
        recipient = r.address("TP-DA")
        pid = r.octet("TP-PID")
        dcs = r.octet("TP-DCS")
        vpf = (first >> 3) & 0x03  # TS 23.040 §9.2.3.3: none, enhanced, relative, absolute
        validity = r.take((0, 7, 1, 7)[vpf], "TP-VP")
        udl = r.octet("TP-UDL")
        ud = r.data[r.pos:]
        user_data = decode_user_data(dcs, udl, ud, bool(first & 0x40))
        return Submit(smsc, mr, recipient, bool(first & 0x20), bool(first & 0x04), validity,
                      pid, dcs, user_data, len(r.data) - tpdu_start)
    except PduError as exc:
        raise PduError(str(exc), pdu=pdu_hex) from exc


def decode_deliver(pdu_hex: str) -> Deliver:
    """Decode an SMS-DELIVER with its SMSC prefix (to show what sits on a simulated SIM)."""
    try:
        r = _Reader(_hex(pdu_hex))
        smsc = r.smsc()
        first = r.octet("TP-MTI")
        if first & 0x03 != MTI_DELIVER:
            raise PduError(f"TP-MTI {first & 0x03} is not SMS-DELIVER")
        sender = r.address("TP-OA")
        pid = r.octet("TP-PID")
        dcs = r.octet("TP-DCS")
        timestamp = decode_timestamp(r.take(7, "TP-SCTS"))
        udl = r.octet("TP-UDL")
        user_data = decode_user_data(dcs, udl, r.data[r.pos:], bool(first & 0x40))
        return Deliver(smsc, sender, timestamp, pid, dcs, user_data)
    except PduError as exc:
        raise PduError(str(exc), pdu=pdu_hex) from exc


def join_texts(parts: list[str]) -> str:
    """Join part texts, re-pairing surrogate halves split across parts; lone halves → U+FFFD."""
    return "".join(parts).encode("utf-16-be", "surrogatepass").decode("utf-16-be", "replace")
