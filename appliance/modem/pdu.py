"""SMS PDUs for the appliance: the one place that knows TS 23.040 / TS 23.038.

The project's own codec (about 1,200 lines in ``pdu_*.py``). From python-gsmmodem-new it
keeps only the relative validity-period encoding and decoding (``pdu_address``); the GSM-7
tables are TS 23.038's own (``pdu_text``). Its own because of what docs/field-notes.md B9,
B10 and B13 found missing there: surrogate-safe UCS-2 (emoji), DCS normalisation, our own
per-modem concatenation reference (8- or 16-bit), optional status reports, national
numbers normalised instead of being sent as alphanumeric addresses, joining the parts of a
long SMS, and one error type (:class:`~appliance.errors.PduError`, keeping the raw PDU)
for every decode failure. Each module's docstring says why it does not use gsmmodem's.

Pure (no I/O, clock, logging or threads). The code lives in modules a newcomer can
find by name; this module is the API the engine and the service import:

* ``pdu_text``       alphabets, splitting into parts, DCS groups
* ``pdu_address``    numbers, addresses, time stamps, validity
* ``pdu_submit``     outbound: ``encode_submit``, ``ConcatRefCounter``
* ``pdu_decode``     inbound: ``decode`` (SMS-DELIVER, status reports), ``pdu_hash``
* ``pdu_reassembly`` ``join_parts``
"""

from __future__ import annotations

from appliance.errors import PduError
from appliance.modem.pdu_address import is_alphanumeric, normalise_number
from appliance.modem.pdu_decode import (
    Concat, Deliver, StatusReport, Submit, decode, decode_submit, pdu_hash,
)
from appliance.modem.pdu_reassembly import join_parts
from appliance.modem.pdu_submit import ConcatRefCounter, SubmitPart, encode_submit
from appliance.modem.pdu_text import MISSING, count_parts, normalise_dcs

__all__ = [
    "MISSING", "Concat", "ConcatRefCounter", "Deliver", "PduError",
    "StatusReport", "Submit", "SubmitPart", "count_parts", "decode", "decode_submit",
    "encode_submit", "is_alphanumeric",
    "join_parts", "normalise_dcs", "normalise_number",
    "pdu_hash",
]
