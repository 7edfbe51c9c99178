"""Decoding what a modem hands us from AT+CMGR / AT+CMGL / +CMT / +CDS (TS 27.005 §3.4.3).

Why not ``gsmmodem.pdu.decodeSmsPdu``: it reads DCS groups other than 00xx (0x48, 0xF5)
as GSM-7 garbage, hands back emoji as two lone surrogates, raises ``ValueError`` on a
malformed time stamp, drops a final ``'@'``, reads 8-bit data past TP-UDL into the SIM's
0xFF padding, and skips the type-of-address octet of an empty address (docs/field-notes.md B12,
B13; tests/test_pdu_decode.py shows the first four). The header layout is simple enough
to read here with a bounds check on every octet, reusing the library's character tables
through ``pdu_text``.

The contract is one error type: anything that cannot be decoded raises
:class:`~appliance.errors.PduError` carrying the raw PDU, so the engine quarantines the
message instead of losing it. A malformed time stamp is not an error (``timestamp`` is
None): the citizen's question is still readable.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import datetime, timedelta

from appliance.errors import PduError
from appliance.modem.pdu_address import (
    MAX_DIGITS, TON_ALPHANUMERIC, decode_address_value,
    decode_timestamp, decode_validity, normalise_decoded, sender_kind,
)
from appliance.modem.pdu_text import (
    GSM7, MISSING, decode_body, normalise_dcs, unpack_septets,
)

_HEX = re.compile(r"(?:[0-9A-F]{2})*")
_JUNK = re.compile(r"\s+")
# TS 23.040 §9.2.3.1 TP-MTI, as seen by the mobile (SC → MS direction, plus what a phone
# stores of its own sent messages).
_MTI_DELIVER, _MTI_SUBMIT, _MTI_STATUS = 0, 1, 2


@dataclass(frozen=True)
class Concat:
    """Concatenation IE (TS 23.040 §9.2.3.24.1 8-bit, §9.2.3.24.8 16-bit reference)."""

    reference: int
    total: int
    seq: int
    bits: int


@dataclass(frozen=True)
class Deliver:
    """An SMS-DELIVER: one part of what a citizen sent.

    ``sender`` is normalised for numeric types (``+923001234567``); ``text`` of a part
    of a concatenated message is that part only (see ``join_parts``). For 8-bit data
    ``text`` is latin-1, so ``text.encode('latin-1')`` gives the octets back.
    """

    sender: str
    sender_type: str
    text: str
    timestamp: datetime | None
    smsc: str | None
    dcs: int
    encoding: str
    concat: Concat | None
    pdu: str
    udh: bytes | None


@dataclass(frozen=True)
class StatusReport:
    """An SMS-STATUS-REPORT (TS 23.040 §9.2.2.3) for a submit we sent.

    ``reference`` is the TP-MR the modem answered ``+CMGS: <mr>`` with. TP-ST
    (§9.2.3.15): 0x00-0x1F transaction completed (0x00 received by the phone), 0x20-0x3F
    temporary error with the SC still trying (not ``final``), 0x40-0x7F the SC gave up;
    reserved values (0x80 and above) are treated as a permanent failure.
    """

    reference: int
    recipient: str
    status: int
    delivered: bool
    final: bool
    timestamp: datetime | None
    discharge: datetime | None
    pdu: str


@dataclass(frozen=True)
class Submit:
    """An SMS-SUBMIT read back: our own encoder's output, or a phone's stored sent item.

    Not an inbound message, so :func:`decode` refuses it; :func:`decode_submit` reads it
    (round-trip tests, and SIM dumps whose storage holds outgoing messages).
    """

    recipient: str
    recipient_type: str
    text: str
    dcs: int
    encoding: str
    concat: Concat | None
    reference: int
    status_report: bool
    validity: timedelta | datetime | None
    smsc: str | None
    pdu: str
    udh: bytes | None


@dataclass(frozen=True)
class _UserData:
    encoding: str
    udh: bytes | None
    concat: Concat | None
    body: bytes  # septet codes (GSM-7), UTF-16BE bytes (UCS-2) or octets (8-bit)
    truncated: bool


class _Reader:
    """Bounds-checked cursor: running off the end is a PduError naming the field."""

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def octet(self, field: str) -> int:
        return self.take(1, field)[0]

    def take(self, count: int, field: str) -> bytes:
        end = self.pos + count
        if end > len(self.data):
            raise PduError(f"PDU ends inside {field} (needs octets {self.pos}..{end - 1}, "
                           f"has {len(self.data)})")
        chunk = self.data[self.pos:end]
        self.pos = end
        return chunk


def clean_hex(pdu_hex: str) -> str:
    """The PDU as uppercase hex without whitespace or the quotes some phones add."""
    return _JUNK.sub("", pdu_hex).strip('"').upper()


def pdu_hash(pdu_hex: str) -> str:
    """Idempotency key part: sha256 of the cleaned PDU, first 32 hex digits. Never raises."""
    return hashlib.sha256(clean_hex(pdu_hex).encode("utf-8", "replace")).hexdigest()[:32]


def _parse_hex(pdu_hex: str) -> bytes:
    if not isinstance(pdu_hex, str):
        raise PduError(f"PDU must be a hex string, got {type(pdu_hex).__name__}")
    cleaned = clean_hex(pdu_hex)
    if not cleaned:
        raise PduError("empty PDU")
    if _HEX.fullmatch(cleaned) is None:
        raise PduError("PDU is not an even number of hex digits (a garbled AT+CMGR "
                       "answer?)")
    return bytes.fromhex(cleaned)


def _read_smsc(reader: _Reader, country_code: str) -> str | None:
    """RP SC address (TS 24.011 §8.2.5.1): length in octets, TOA, swapped BCD."""
    length = reader.octet("SMSC length")
    if length == 0:
        return None
    if length > 1 + MAX_DIGITS // 2:
        raise PduError(f"SMSC address length {length} exceeds 11 octets: not a PDU with "
                       "an SMSC prefix (or the SMSC prefix is missing)")
    toa = reader.octet("SMSC type of address")
    value = decode_address_value(toa, 2 * (length - 1), reader.take(length - 1, "SMSC"))
    return normalise_decoded(toa, value, country_code) or None


def _read_address(reader: _Reader, field: str, country_code: str) -> tuple[int, str]:
    """TP-OA / TP-DA / TP-RA (TS 23.040 §9.1.2.5); the TOA octet is there even if empty."""
    length = reader.octet(f"{field} length")
    if length > MAX_DIGITS:
        raise PduError(f"{field} length {length} exceeds {MAX_DIGITS} semi-octets")
    toa = reader.octet(f"{field} type of address")
    value = decode_address_value(toa, length, reader.take((length + 1) // 2, field))
    if (toa >> 4) & 0x7 == TON_ALPHANUMERIC:
        return toa, value
    return toa, normalise_decoded(toa, value, country_code)


def _read_concat(udh: bytes) -> Concat | None:
    """The last valid concatenation IE (TS 23.040 §9.2.3.24: last occurrence wins)."""
    concat: Concat | None = None
    i = 0
    while i < len(udh):
        if i + 2 > len(udh) or i + 2 + udh[i + 1] > len(udh):
            raise PduError(f"user data header: information element at octet {i} overruns "
                           f"the header ({len(udh)} octets)")
        iei, data = udh[i], udh[i + 2:i + 2 + udh[i + 1]]
        i += 2 + len(data)
        if iei == 0x00 and len(data) == 3:
            reference, total, seq, bits = data[0], data[1], data[2], 8
        elif iei == 0x08 and len(data) == 4:
            reference, total, seq, bits = (data[0] << 8) | data[1], data[2], data[3], 16
        else:
            continue
        # §9.2.3.24.1: a zero total, or seq 0 or above total, means "ignore the IE".
        if total and 0 < seq <= total:
            concat = Concat(reference=reference, total=total, seq=seq, bits=bits)
    return concat


def _read_user_data(reader: _Reader, first: int, dcs: int) -> _UserData:
    """TP-UDL and TP-UD with optional header (TS 23.040 §9.2.3.16, §9.2.3.24).

    Octets beyond TP-UDL are ignored (SIM records are padded with 0xFF). User data cut
    short of TP-UDL is decoded as far as it goes and marked ``truncated`` (a phone's
    stored copy, gammu-at-sms ok/41): the text is still worth reading, and the ``…`` the
    caller appends keeps a cut-off number from passing as a whole one. A header that is
    itself cut short is an error.
    """
    encoding = normalise_dcs(dcs)
    udl = reader.octet("TP-UDL")
    has_udh = bool(first & 0x40)
    wanted = (udl * 7 + 7) // 8 if encoding == GSM7 else udl
    raw = reader.take(min(wanted, len(reader.data) - reader.pos), "TP-UD")
    truncated = len(raw) < wanted
    header_octets = 1 + raw[0] if has_udh and raw else 0
    if header_octets > len(raw):
        raise PduError(f"user data header ({header_octets} octets) is longer than the "
                       f"user data ({len(raw)} octets)")
    if encoding == GSM7:
        header_septets = (header_octets * 8 + 6) // 7
        count = min(udl, len(raw) * 8 // 7) - header_septets
        if count < 0:
            raise PduError(f"user data header ({header_octets} octets) is longer than "
                           f"TP-UDL ({udl} septets)")
        body = unpack_septets(raw, count, header_septets * 7)
    else:
        body = raw[header_octets:]
    udh = raw[1:header_octets] if header_octets else (b"" if has_udh else None)
    concat = _read_concat(udh) if udh else None
    return _UserData(encoding=encoding, udh=udh, concat=concat, body=body,
                     truncated=truncated)


def _part_text(ud: _UserData) -> str:
    """One part's text, always storable as UTF-8 (half an emoji at a part edge is U+FFFD
    here; the joiner recombines the halves from the PDUs)."""
    text = decode_body(ud.encoding, ud.body)
    return text + MISSING if ud.truncated else text


def _fail(pdu_hex: object, exc: Exception) -> PduError:
    raw = pdu_hex if isinstance(pdu_hex, str) else repr(pdu_hex)
    return PduError(f"undecodable SMS PDU ({exc}); keep it for quarantine", pdu=raw)


def decode(pdu_hex: str, *, smsc_included: bool = True,
           country_code: str = "92") -> Deliver | StatusReport:
    """Decode an inbound PDU: SMS-DELIVER or SMS-STATUS-REPORT.

    Raises PduError (``.pdu`` = the input) for anything else, including an SMS-SUBMIT
    (an outgoing message stored on the SIM is not a question to answer).
    """
    try:
        data = _parse_hex(pdu_hex)
        reader = _Reader(data)
        smsc = _read_smsc(reader, country_code) if smsc_included else None
        first = reader.octet("first octet")
        mti = first & 0x03
        if mti == _MTI_DELIVER:
            return _deliver(reader, first, smsc, clean_hex(pdu_hex), country_code)
        if mti == _MTI_STATUS:
            return _status_report(reader, clean_hex(pdu_hex), country_code)
        if mti == _MTI_SUBMIT:
            raise PduError("this is an SMS-SUBMIT (an outgoing message stored on the SIM, "
                           "TP-MTI 01), not an inbound message")
        raise PduError(f"reserved TP-MTI 11 in first octet 0x{first:02X}")
    except PduError as exc:
        if exc.pdu:
            raise
        raise _fail(pdu_hex, exc) from exc
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise _fail(pdu_hex, exc) from exc


def _deliver(reader: _Reader, first: int, smsc: str | None, pdu: str,
             country_code: str) -> Deliver:
    """SMS-DELIVER after the first octet (TS 23.040 §9.2.2.1)."""
    toa, sender = _read_address(reader, "TP-OA", country_code)
    reader.octet("TP-PID")
    dcs = reader.octet("TP-DCS")
    timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
    ud = _read_user_data(reader, first, dcs)
    return Deliver(sender=sender, sender_type=sender_kind(toa, sender), text=_part_text(ud),
                   timestamp=timestamp, smsc=smsc, dcs=dcs, encoding=ud.encoding,
                   concat=ud.concat, pdu=pdu, udh=ud.udh)


def _status_report(reader: _Reader, pdu: str, country_code: str) -> StatusReport:
    """SMS-STATUS-REPORT (TS 23.040 §9.2.2.3).

    TP-PI and what follows TP-ST are optional and not needed; they are not read, as SIM
    records pad the rest with 0xFF (gammu-at-sms ok/32).
    """
    reference = reader.octet("TP-MR")
    _toa, recipient = _read_address(reader, "TP-RA", country_code)
    timestamp = decode_timestamp(reader.take(7, "TP-SCTS"))
    discharge = decode_timestamp(reader.take(7, "TP-DT"))
    status = reader.octet("TP-ST")
    return StatusReport(reference=reference, recipient=recipient, status=status,
                        delivered=status <= 0x1F, final=not 0x20 <= status <= 0x3F,
                        timestamp=timestamp, discharge=discharge, pdu=pdu)


def decode_submit(pdu_hex: str, *, smsc_included: bool = True,
                  country_code: str = "92") -> Submit:
    """Decode an SMS-SUBMIT (TS 23.040 §9.2.2.2); PduError for anything else."""
    try:
        reader = _Reader(_parse_hex(pdu_hex))
        smsc = _read_smsc(reader, country_code) if smsc_included else None
        first = reader.octet("first octet")
        if first & 0x03 != _MTI_SUBMIT:
            raise PduError(f"first octet 0x{first:02X} is not an SMS-SUBMIT")
        reference = reader.octet("TP-MR")
        toa, recipient = _read_address(reader, "TP-DA", country_code)
        reader.octet("TP-PID")
        dcs = reader.octet("TP-DCS")
        vpf = (first >> 3) & 0x3
        validity: timedelta | datetime | None = None
        if vpf == 2:
            validity = decode_validity(reader.octet("TP-VP"))
        elif vpf == 3:
            validity = decode_timestamp(reader.take(7, "TP-VP"))
        elif vpf == 1:
            reader.take(7, "TP-VP (enhanced)")  # §9.2.3.12.3: not used by this unit
        ud = _read_user_data(reader, first, dcs)
        return Submit(recipient=recipient, recipient_type=sender_kind(toa, recipient),
                      text=_part_text(ud), dcs=dcs, encoding=ud.encoding, concat=ud.concat,
                      reference=reference, status_report=bool(first & 0x20),
                      validity=validity, smsc=smsc, pdu=clean_hex(pdu_hex), udh=ud.udh)
    except PduError as exc:
        if exc.pdu:
            raise
        raise _fail(pdu_hex, exc) from exc
    except (ValueError, IndexError, KeyError, TypeError, OverflowError) as exc:
        raise _fail(pdu_hex, exc) from exc


def user_data_body(part: Deliver) -> tuple[str, bytes] | None:
    """(encoding, raw body) of a decoded part, for joining parts at the code level.

    The part's PDU is read again, with and without an SMSC prefix; a reading counts only
    if it gives the part's own text back. None if neither does (the joiner then joins
    the texts).
    """
    for with_smsc in (True, False):
        try:
            reader = _Reader(_parse_hex(part.pdu))
            if with_smsc:
                _read_smsc(reader, "")
            first = reader.octet("first octet")
            if first & 0x03 != _MTI_DELIVER:
                continue
            _read_address(reader, "TP-OA", "")
            reader.octet("TP-PID")
            dcs = reader.octet("TP-DCS")
            reader.take(7, "TP-SCTS")
            ud = _read_user_data(reader, first, dcs)
        except (PduError, ValueError, IndexError):
            continue
        if not ud.truncated and _part_text(ud) == part.text and ud.encoding == part.encoding:
            return ud.encoding, ud.body
    return None
