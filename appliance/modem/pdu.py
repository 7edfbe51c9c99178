"""SMS PDUs for the appliance: the one place that knows TS 23.040 / TS 23.038.

A shim over python-gsmmodem-new's ``gsmmodem.pdu`` (its validity-period tables are kept;
the GSM-7 tables are TS 23.038's own, in ``pdu_text``) that adds what docs/field-notes.md B9, B10
and B13 found missing: surrogate-safe UCS-2 (emoji), DCS normalisation, our own per-modem
concatenation reference (8- or 16-bit), optional status reports, national numbers
normalised instead of being sent as alphanumeric addresses, reassembly of concatenated
inbound parts, and one error type
(:class:`~appliance.errors.PduError`, keeping the raw PDU) for every decode failure.

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
