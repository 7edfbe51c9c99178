"""Inbound PDUs for tests, built by the simulator's codec (appliance/simulator/pdu.py).

That codec was written apart from the appliance's own (appliance/modem/pdu*.py), so a PDU
it builds is an independent check of what the appliance decodes: the two would have to
make the same mistake for a test to pass wrongly.
"""

from __future__ import annotations

from datetime import datetime

from appliance.simulator import pdu as sim_pdu

#: The SMSC address the simulated network puts in front of every PDU.
SMSC = "+923000000099"


def deliver_pdus(sender: str, text: str, *, timestamp: datetime, reference: int = 0,
                 ref16: bool = False, smsc: str = SMSC) -> list[str]:
    """SMS-DELIVER PDUs (hex, SMSC included) as ``AT+CMGR`` answers carry them.

    ``sender`` is ``+<digits>``, bare digits (a short code) or an alphanumeric name."""
    return [p.pdu for p in sim_pdu.encode_deliver(sender, text, smsc=smsc,
                                                  timestamp=timestamp, reference=reference,
                                                  ref16=ref16)]


def status_report_pdu(reference: int, recipient: str, status: int, *, timestamp: datetime,
                      discharge: datetime, smsc: str = SMSC) -> str:
    """SMS-STATUS-REPORT (hex, SMSC included) for the submit whose TP-MR was ``reference``."""
    return sim_pdu.encode_status_report(smsc=smsc, mr=reference, recipient=recipient,
                                        submitted=timestamp, discharged=discharge,
                                        status=status).pdu
