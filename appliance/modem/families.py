"""Modem families people buy for SMS banks, and what differs between them, as data.

One table, keyed by what the modem says to ``AT+CGMI`` / ``AT+CGMM``. The engine reads only
data from it (which registration reports the family has); everything else it decides from
the modem's own answers (``AT+CNMI=?``, ``AT+CPMS=?``, see :mod:`.atsms`), so an unknown
modem still works and a known one never needs an ``if vendor ==`` branch. The other
columns are the compatibility matrix in docs/modems.md (rendered by :func:`matrix`; a test
keeps the page and this table equal), and each row is backed by a byte-level transcript in
tests/data/at/ built from public sources (cited in tests/data/at/README.md).

Pure: no I/O.
"""

from __future__ import annotations

import re
from dataclasses import dataclass


@dataclass(frozen=True)
class Family:
    key: str
    name: str                       # as a buyer knows it
    cgmi: str                       # regular expression on the +CGMI answer (case ignored)
    cgmm: str                       # regular expression on the +CGMM answer (case ignored)
    pdu_mode: bool                  # AT+CMGF=0 (TS 27.005 §3.2.3)
    stored_send: bool               # AT+CMGW / AT+CMSS (send from memory)
    cnmi: str                       # its AT+CNMI=? answer
    storages: str                   # its AT+CPMS=? answer
    registration: tuple[str, ...]   # registration reports it has (TS 27.007 §7.2, §10.1)
    ussd: str                       # how the USSD string of AT+CUSD is written
    quirks: tuple[str, ...]
    transcript: str                 # tests/data/at/<file>
    ussd_packed: bool = False       # AT+CUSD wants the code as packed GSM-7 in hex

    def matches(self, manufacturer: str, model: str) -> bool:
        return bool(re.search(self.cgmi, manufacturer, re.IGNORECASE)
                    and re.search(self.cgmm, model, re.IGNORECASE))


_CS = ("+CREG", "+CGREG")
_LTE = ("+CREG", "+CGREG", "+CEREG")

FAMILIES: tuple[Family, ...] = (
    Family("sim800", "SIMCom SIM800/SIM900", r"^SIMCOM", r"SIM[89]00", True, True,
           "(0-3),(0-3),(0,2),(0,1),(0,1)",
           '("SM","ME","SM_P","ME_P","MT"),("SM","ME","SM_P","ME_P","MT"),'
           '("SM","ME","SM_P","ME_P","MT")',
           _CS, "text (AT+CSCS=\"GSM\")",
           ("2G only", "no ds=2 in AT+CNMI: status reports arrive inline (+CDS)",
            "*PSUTTZ/DST network-time URCs at any moment, even inside a response",
            "echo on after power-up; RDY, Call Ready, SMS Ready at boot"),
           "family_sim800.at"),
    Family("sim7600", "SIMCom SIM7600", r"^SIMCOM", r"SIM7[56]00", True, True,
           "(0-2),(0-3),(0,2),(0-2),(0,1)",
           '("ME","MT","SM","SR"),("ME","MT","SM","SR"),("ME","MT","SM","SR")',
           _LTE, "text (AT+CSCS=\"IRA\")",
           ("LTE Cat-1/Cat-4: +CREG 6 (SMS only) on LTE-only cells",
            "four USB ports; AT on the third (ttyUSB2)"),
           "family_sim7600.at"),
    Family("quectel-ec25", "Quectel EC25/EG25", r"^Quectel", r"^E[CG]2[15]", True, True,
           "(0-2),(0-3),(0,2),(0-2),(0,1)",
           '("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")',
           _LTE, "text (AT+CSCS=\"GSM\")",
           ("+CMS ERROR: 321 for an empty slot", "+QIND URCs (csq, SMS DONE)",
            "four USB ports; AT on ttyUSB2", "indexes from 0"),
           "family_quectel_ec25.at"),
    Family("quectel-m35", "Quectel M35", r"^Quectel", r"M35", True, True,
           "(0-2),(0-3),(0,2),(0,1),(0,1)",
           '("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")',
           _CS, "text (AT+CSCS=\"GSM\")",
           ("2G only", "no ds=2 in AT+CNMI: status reports arrive inline (+CDS)",
            "Call Ready / SMS Ready at boot"),
           "family_quectel_m35.at"),
    Family("huawei-e173", "Huawei E173 (stick mode)", r"huawei", r"^E1[57]\d", True, True,
           "(0,1,2),(0,1,2,3),(0,2),(0,1,2),(0,1)",
           '("ME","MT","SM","SR"),("ME","MT","SM","SR"),("ME","MT","SM","SR")',
           _CS, "GSM-7 packed, hex (*100# is AT+CUSD=1,\"AA180C3602\",15)",
           ("^RSSI, ^BOOT, ^MODE URCs on the AT port (AT^CURC=0 silences them)",
            "URCs only on the port chosen by AT^PORTSEL",
            "COMMAND NOT SUPPORT as a final result"),
           "family_huawei_e173.at", ussd_packed=True),
    Family("huawei-e3372", "Huawei E3372 (stick mode)", r"huawei|zowee", r"E3372", True,
           True,
           "(0,1,2),(0,1,2,3),(0,2),(0,1,2),(0,1)",
           '("SM","ME"),("SM","ME"),("SM","ME")',
           _LTE, "GSM-7 packed, hex",
           ("stick (AT) firmware only; HiLink firmware has no AT port",
            "AT+CPMS with one or two memories is ERROR: always give all three"),
           "family_huawei_e3372.at", ussd_packed=True),
    Family("ublox", "u-blox (SARA/LARA/TOBY)", r"u-blox", r".", True, True,
           "(0-2),(0-3),(0-3),(0-2),(0,1)",
           '("ME","SM","MT"),("ME","SM","MT"),("ME","SM","MT")',
           _LTE, "text",
           ("LTE: +CREG 6 (SMS only) while +CGREG/+CEREG differ",
            "which registration URC arrives depends on the network"),
           "family_ublox.at"),
    Family("cinterion", "Cinterion/Thales", r"Cinterion|Thales|Siemens|Gemalto", r".",
           True, True,
           "(0-2),(0,1),(0,2),(0),(1)",
           '("ME","SM","MT"),("ME","SM","MT"),("SM","MT")',
           _LTE, "text",
           ("bfr=1 only in AT+CNMI: every setting with bfr=0 is refused",
            "no ds=2 (some modules no ds at all): no delivery reports",
            "ME not offered as the receive memory (mem3 of AT+CPMS)",
            "changing AT+CNMI on one interface resets it on the others"),
           "family_cinterion.at"),
    Family("telit", "Telit (GL865/HE910/LE910)", r"Telit", r".", True, True,
           "(0-3),(0-3),(0,2),(0-2),(0,1)",
           '("SM","ME"),("SM","ME"),("SM","ME")',
           _LTE, "text",
           ("extended +CREG/+CGREG fields in mode 2",
            "delivery reports need TP-SRR in the first octet "
            "(text-mode AT+CSMP 49; our PDUs set it)"),
           "family_telit.at"),
)


def family_for(manufacturer: str, model: str) -> Family | None:
    """The family of a modem from its +CGMI and +CGMM answers (None: not in the table)."""
    return next((f for f in FAMILIES if f.matches(manufacturer, model)), None)


#: Every registration report, for a modem not in the table (the ones it refuses are dropped).
ALL_REPORTS = ("+CREG", "+CGREG", "+CEREG", "+C5GREG")


def registration_reports(manufacturer: str, model: str) -> tuple[str, ...]:
    """The registration reports to switch on and read on this modem (engine and probe
    alike): those that can decide "can do SMS" (atregistration.sms_service), so not +CGREG,
    which never decides and would cost an AT round trip per health check."""
    family = family_for(manufacturer, model)
    return tuple(r for r in (family.registration if family else ALL_REPORTS)
                 if r != "+CGREG")


def matrix() -> str:
    """The compatibility matrix as a Markdown table (docs/modems.md)."""
    head = ("| family | PDU mode | AT+CMGW/AT+CMSS | +CNMI ranges | storages | "
            "registration reporting | USSD encoding | known quirks | transcript |")
    rows = [head, "|" + "---|" * 9]
    for f in FAMILIES:
        rows.append("| " + " | ".join((
            f.name, "yes" if f.pdu_mode else "no", "yes" if f.stored_send else "no",
            f"`{f.cnmi}`", f"`{f.storages}`", ", ".join(f.registration),
            f.ussd.replace("|", "\\|"), "; ".join(f.quirks),
            f"[{f.transcript}](../tests/data/at/{f.transcript})")) + " |")
    return "\n".join(rows) + "\n"
