"""Inbound PDUs built on purpose: what a network would deliver to a modem.

The appliance itself never sends these; the simulator's virtual network does (it turns a
modem's SMS-SUBMIT into the recipient's SMS-DELIVER and answers with a status report),
and the tests use them to feed :func:`~appliance.modem.pdu.decode` messages whose content
they know. Same alphabet choice and split as :func:`encode_submit`.
"""

from __future__ import annotations

from datetime import datetime

from appliance.errors import PduError
from appliance.modem.pdu_address import (
    encode_destination, encode_originator, encode_smsc, encode_timestamp,
)
from appliance.modem.pdu_submit import (
    DCS_BY_ENCODING, MAX_PARTS, UDHI, concat_udh, encode_user_data,
)
from appliance.modem.pdu_text import plan_parts

_MTI_DELIVER = 0x00
_MMS = 0x04            # TP-MMS set = no more messages waiting (TS 23.040 §9.2.3.2)
_MTI_STATUS_REPORT = 0x02


def encode_deliver(sender: str, text: str, *, timestamp: datetime,
                   reference: int | None = None, ref16: bool = False,
                   smsc: str | None = None, country_code: str = "92") -> list[str]:
    """SMS-DELIVER PDUs (hex, SMSC prefix included) as an AT+CMGR answer carries them.

    ``sender`` may be a number in any written form or an alphanumeric name.
    """
    bits = 16 if ref16 else 8
    originator = encode_originator(sender, country_code)
    encoding, chunks = plan_parts(text, bits)
    total = len(chunks)
    if total > MAX_PARTS or (total > 1 and reference is None):
        raise PduError(f"{total} parts need a concatenation reference and at most "
                       f"{MAX_PARTS} parts")
    first = _MTI_DELIVER | _MMS | (UDHI if total > 1 else 0)
    prefix = encode_smsc(smsc, country_code)
    stamp = encode_timestamp(timestamp)
    pdus = []
    for seq, chunk in enumerate(chunks, start=1):
        udh = b""
        if total > 1 and reference is not None:
            udh = concat_udh(reference, seq, total, bits)
        tpdu = (bytes([first]) + originator + bytes([0x00, DCS_BY_ENCODING[encoding]]) + stamp
                + encode_user_data(encoding, chunk, udh))
        pdus.append((prefix + tpdu).hex().upper())
    return pdus


def encode_status_report(reference: int, recipient: str, status: int, *,
                         timestamp: datetime, discharge: datetime,
                         smsc: str | None = None, country_code: str = "92") -> str:
    """SMS-STATUS-REPORT (TS 23.040 §9.2.2.3) for the submit whose TP-MR was ``reference``."""
    if not (0 <= reference <= 0xFF and 0 <= status <= 0xFF):
        raise PduError(f"TP-MR {reference} and TP-ST {status} must be octets")
    tpdu = (bytes([_MTI_STATUS_REPORT, reference]) + encode_destination(recipient, country_code)
            + encode_timestamp(timestamp) + encode_timestamp(discharge) + bytes([status]))
    return (encode_smsc(smsc, country_code) + tpdu).hex().upper()
