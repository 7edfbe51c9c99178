"""Registration as a modem reports it, and whether it can do SMS (TS 27.007 §7.2 +CREG,
§10.1.20 +CGREG, §10.1.22 +CEREG, §10.1.52 +C5GREG): answered (``AT+CREG?``) or
unsolicited, quoted or not, with or without spaces.

Pure, like :mod:`.atvalues`: lines in, frozen values out (tests/test_atvalues.py and the
vendor transcripts of tests/data/at/). The engine and ``probe`` both decide "can this modem
do SMS" with :func:`sms_service`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from .atvalues import answer_args, split_fields

# -- registration (TS 27.007 §7.2 +CREG, §10.1.20 +CGREG, §10.1.22 +CEREG, §10.1.52 +C5GREG)

#: The four registration reports, by the radio domain they describe.
REGISTRATION_COMMANDS = ("+CREG", "+CGREG", "+CEREG", "+C5GREG")

#: TS 27.007 §7.2 <stat>.
STAT_TEXT = {
    0: "not registered, not searching", 1: "registered, home network",
    2: "not registered, searching", 3: "registration denied", 4: "unknown",
    5: "registered, roaming", 6: "registered for SMS only, home network",
    7: "registered for SMS only, roaming", 8: "attached for emergency bearer services only",
    9: "registered for CSFB not preferred, home network",
    10: "registered for CSFB not preferred, roaming",
    11: "attached for access to RLOS",
}
#: <stat> values under which the circuit-switched domain carries SMS: home and roaming,
#: "SMS only" (an LTE module attached for SMS over SGs, E-UTRAN only) and "CSFB not
#: preferred" (SMS works, voice prefers IMS).
SMS_STATS = frozenset({1, 5, 6, 7, 9, 10})
#: <stat> values of a registered packet domain (GPRS, EPS, 5GS).
PACKET_REGISTERED = frozenset({1, 5})
ROAMING_STATS = frozenset({5, 7, 10})
#: TS 27.007 §7.3 <AcT> values that are E-UTRAN or NR.
_LTE_OR_NR_ACT = frozenset({7, 9, 10, 11, 12, 13})


@dataclass(frozen=True)
class Registration:
    """One registration report. ``n`` is the URC setting (solicited answers only);
    ``area`` the LAC/TAC as hex text, ``cell`` the cell id, ``act`` the access technology."""

    command: str          # "+CREG", "+CGREG", "+CEREG" or "+C5GREG"
    stat: int
    n: int | None = None
    area: str = ""
    cell: str = ""
    act: int | None = None

    @property
    def text(self) -> str:
        return STAT_TEXT.get(self.stat, f"stat {self.stat}")

    @property
    def registered(self) -> bool:
        return self.stat in (SMS_STATS if self.command == "+CREG" else PACKET_REGISTERED)


def parse_registration(line: str, *, solicited: bool) -> Registration | None:
    """Read one ``+CREG``/``+CGREG``/``+CEREG``/``+C5GREG`` line.

    The read command answers ``<n>,<stat>[,<lac>,<ci>[,<AcT>…]]``; the URC is
    ``<stat>[,<lac>,<ci>[,<AcT>…]]``. Which one a line is comes from where it arrived
    (``solicited``), not from guessing at its digits: ``+CEREG: 2, 0001,…`` is "searching"
    in TAC 0001, never "registered". One tolerance: a URC of exactly two unquoted small
    numbers is the read form sent unsolicited (some firmware does), read as ``n,stat``.
    """
    for name in REGISTRATION_COMMANDS:
        args = answer_args(line, name)
        if args is not None:
            break
    else:
        return None
    fields = split_fields(args)
    ints = [f.as_int for f in fields]
    if not fields or ints[0] is None:
        return None
    read_form = solicited and len(fields) >= 2 and ints[1] is not None
    if not solicited and len(fields) == 2 and ints[1] is not None and ints[1] <= 11 \
            and ints[0] <= 5:
        read_form = True
    n = ints[0] if read_form else None
    rest = fields[1:] if read_form else fields
    stat = rest[0].as_int if rest else None
    if stat is None:
        return None
    area = rest[1].text.upper() if len(rest) > 1 else ""
    cell = rest[2].text.upper() if len(rest) > 2 else ""
    act = rest[3].as_int if len(rest) > 3 else None
    return Registration(name, stat, n, area, cell, act)


@dataclass(frozen=True)
class SmsService:
    """Whether the modem can send and receive SMS now, and which registration says so."""

    able: bool
    via: str          # "+CREG" (CS/SGs), "+CEREG"/"+C5GREG" (EPS/5GS: SMS over NAS or IMS)
    roaming: bool
    reason: str       # for the log and the status page


def sms_service(regs: Mapping[str, Registration]) -> SmsService:
    """Decide "can do SMS" from the last report of each domain.

    * The circuit-switched registration (+CREG) carries SMS on GSM/UMTS and, on LTE, over
      SGs; its SMS-capable states include "SMS only" (6, 7) and "CSFB not preferred"
      (9, 10), TS 27.007 §7.2. Any of them is enough: a packet domain that is down
      (``+CGREG: 0``, ``+CEREG: 4``) never takes the modem away.
    * A modem whose radio is on LTE or NR and registered there (+CEREG / +C5GREG home or
      roaming), with no SMS-capable +CREG, is the radio the modem actually uses: SMS goes
      over NAS or IMS, so it counts. (If the network offers neither, sends fail and the
      bank's failure blocking takes the modem out; being wrongly out of rotation would
      instead leave citizens unanswered.)
    * +CGREG (GPRS) alone never decides: it does not carry this unit's SMS.
    """
    cs = regs.get("+CREG")
    if cs is not None and cs.stat in SMS_STATS:
        return SmsService(True, "+CREG", cs.stat in ROAMING_STATS, cs.text)
    for name in ("+CEREG", "+C5GREG"):
        ps = regs.get(name)
        if ps is not None and ps.stat in PACKET_REGISTERED and (
                ps.act is None or ps.act in _LTE_OR_NR_ACT):
            return SmsService(True, name, ps.stat in ROAMING_STATS,
                              f"{ps.text} ({name[1:]}; circuit-switched: "
                              f"{cs.text if cs else 'not reported'})")
    if cs is not None:
        return SmsService(False, "+CREG", False, cs.text)
    known = list(regs.values())
    return SmsService(False, known[0].command if known else "", False,
                      known[0].text if known else "no registration report")
