"""A modem's answers as typed values: registration, +CNMI and +CPMS, +CNUM, +CSQ, +COPS,
identification and SIM state. (Stored messages, +CMTI/+CMGR/+CMGL: answers.py.)

Pure (no serial, threads, clocks or logging): lines in, frozen values out, so every rule
here is tested byte by byte (tests/test_atvalues.py, tests/test_answers.py, and the vendor
transcripts in tests/data/at/ through tests/test_modem_families.py). The engine and the
probe only move these values; the choices (which +CNMI, which storage, "can this modem
do SMS") are made here, once, for both.

Parsing is by fields, never by "the first number after the colon": location codes may be
quoted or not (``+CREG: 1,84CD,…``, ``+CEREG: 2, 0001,…``) and their digits must never be
read as a status.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

from .pdu_text import gsm7_codes, pack_septets

# -- fields ------------------------------------------------------------------------------

def _is_number(text: str) -> bool:
    """ASCII decimal digits only: str.isdigit() also accepts "²" or "٣", which int() then
    refuses or reads, and a garbled byte must never crash or become a value."""
    return text.isascii() and text.isdigit()


@dataclass(frozen=True)
class Field:
    """One comma-separated field of an information response."""

    text: str
    quoted: bool = False

    @property
    def as_int(self) -> int | None:
        """The field as a decimal integer, None unless it is one and was not quoted."""
        return int(self.text) if not self.quoted and _is_number(self.text) else None


def split_fields(args: str) -> tuple[Field, ...]:
    """``1, "84CD",0001,(0-2)`` → fields; quotes and parentheses keep their commas, spaces
    around a field are dropped."""
    out: list[Field] = []
    buf: list[str] = []
    quoted = in_quotes = False
    depth = 0
    for ch in args:
        if in_quotes:
            if ch == '"':
                in_quotes = False
            else:
                buf.append(ch)
        elif ch == '"':
            in_quotes = quoted = True
        elif ch == "," and depth == 0:
            out.append(Field("".join(buf).strip(), quoted))
            buf, quoted = [], False
        else:
            depth += (ch == "(") - (ch == ")" and depth > 0)
            buf.append(ch)
    out.append(Field("".join(buf).strip(), quoted))
    return tuple(out)


def answer_args(line: str, name: str, *, anywhere: bool = False) -> str | None:
    """What follows ``+NAME:`` on ``line`` (spaces allowed before and after the colon).
    With ``anywhere``, ``+NAME:`` may come after other text on the line (a stray byte or
    an echo fragment glued in front of the answer)."""
    pattern = rf"{re.escape(name)}\s*:\s*(.*)$"
    m = (re.search(pattern, line, re.IGNORECASE) if anywhere
         else re.match(r"\s*" + pattern, line, re.IGNORECASE))
    return m.group(1) if m else None


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


# -- +CNMI (TS 27.005 §3.4.1) -----------------------------------------------------------

def parse_range(text: str) -> frozenset[int]:
    """``(0-2)``, ``(0,1)``, ``(0-1,3)``, ``0`` → the set of values; junk → empty."""
    out: set[int] = set()
    for part in text.strip().strip("()").split(","):
        part = part.strip().strip('"')
        if not part:
            continue
        lo, sep, hi = part.partition("-")
        if _is_number(lo.strip()) and (not sep or _is_number(hi.strip())):
            a, b = int(lo), int(hi) if sep else int(lo)
            out.update(range(a, min(b, a + 255) + 1))
    return frozenset(out)


@dataclass(frozen=True)
class CnmiRanges:
    """What ``AT+CNMI=?`` offers: <mode>, <mt>, <bm>, <ds>, <bfr>."""

    mode: frozenset[int]
    mt: frozenset[int]
    bm: frozenset[int]
    ds: frozenset[int]
    bfr: frozenset[int]


def parse_cnmi_ranges(lines: Iterable[str]) -> CnmiRanges | None:
    for line in lines:
        args = answer_args(line, "+CNMI")
        if args is None:
            continue
        fields = [parse_range(f.text) for f in split_fields(args)]
        fields += [frozenset({0})] * (5 - len(fields))  # omitted trailing fields: 0 only
        if all(fields[:2]):
            return CnmiRanges(*[f if f else frozenset({0}) for f in fields[:5]])
    return None


@dataclass(frozen=True)
class CnmiChoice:
    mode: int
    mt: int
    bm: int
    ds: int
    bfr: int
    why: str = ""

    @property
    def command(self) -> str:
        return f"AT+CNMI={self.mode},{self.mt},{self.bm},{self.ds},{self.bfr}"


def _first(offered: frozenset[int], preference: Iterable[int]) -> int | None:
    return next((v for v in preference if v in offered), None)


def choose_cnmi(r: CnmiRanges, *, status_reports: bool = True) -> CnmiChoice | None:
    """The best +CNMI setting the modem offers, or None if it offers nothing usable.

    * <mode> 2 (buffer URCs while the link is busy, then flush) over 1 (discard when busy)
      over 3; 0 keeps every indication in the modem, so only the SIM sweep finds messages.
    * <mt> 1 (store, then announce with +CMTI): the message is on the SIM before we hear of
      it, so nothing is lost if we are busy or restarting. 3 is 1 for all but class 3.
      0 stores without a word (the sweep finds it); 2 (+CMT, not stored) comes last: a
      message routed to a unit that is not listening is gone.
    * <bm> 0: cell broadcasts are not ours.
    * <ds> 2 (status report stored, +CDSI) over 1 (+CDS inline) over 0, when delivery
      reports are wanted.
    * <bfr> 0 (flush what the modem buffered to us) where offered; 1 (clear it) otherwise,
      as on Cinterion modules that offer only 1: what was buffered was stored (<mt> 1) and
      the start-up sweep reads it.
    """
    mode = _first(r.mode, (2, 1, 3, 0))
    mt = _first(r.mt, (1, 3, 0, 2))
    if mode is None or mt is None:
        return None
    bm = _first(r.bm, (0, 2, 1, 3)) or 0
    ds = _first(r.ds, (2, 1, 0) if status_reports else (0, 2, 1)) or 0
    bfr = _first(r.bfr, (0, 1)) or 0
    notes = []
    if mt != 1:
        notes.append({3: "mt=3: class 3 messages routed directly",
                      0: "mt=0: no +CMTI, messages found by the SIM sweep",
                      2: "mt=2: messages routed directly (+CMT), not stored"}[mt])
    if mode == 0:
        notes.append("mode=0: no indications, messages found by the SIM sweep")
    if status_reports and ds != 2:
        notes.append({1: "ds=1: status reports inline (+CDS)",
                      0: "ds=0: no delivery reports offered"}[ds])
    if bfr == 1:
        notes.append("bfr=1: only buffer clearing offered")
    return CnmiChoice(mode, mt, bm, ds, bfr, "; ".join(notes))


#: Tried in order when the modem does not answer ``AT+CNMI=?`` (or refuses its own
#: choice): stored announcements first, each with both <bfr> values.
CNMI_FALLBACKS = ("2,1,0,2,0", "2,1,0,1,0", "1,1,0,2,0", "2,1,0,0,0", "1,1,0,0,0",
                  "2,1,0,2,1", "2,1,0,0,1", "1,1,0,0,1")


# -- +CPMS (TS 27.005 §3.2.2) -----------------------------------------------------------

@dataclass(frozen=True)
class StorageOptions:
    """What ``AT+CPMS=?`` offers for <mem1> (read/delete), <mem2> (write/send) and
    <mem3> (where received messages are stored)."""

    mem1: tuple[str, ...]
    mem2: tuple[str, ...]
    mem3: tuple[str, ...]


def _names(text: str) -> tuple[str, ...]:
    return tuple(n.strip().strip('"').upper() for n in text.strip().strip("()").split(",")
                 if n.strip().strip('"'))


def parse_storage_options(lines: Iterable[str]) -> StorageOptions | None:
    for line in lines:
        args = answer_args(line, "+CPMS")
        if args is None:
            continue
        groups = re.findall(r"\(([^)]*)\)", args)
        if not groups:
            continue
        lists = [_names(g) for g in groups]
        lists += [lists[-1]] * (3 - len(lists))
        return StorageOptions(*lists[:3])
    return None


@dataclass(frozen=True)
class StorageChoice:
    memory: str
    why: str = ""


#: SIM first (survives moving the SIM, as the configuration's default), then module flash.
_STORAGE_PREFERENCE = ("SM", "ME", "MT")


def choose_storage(opts: StorageOptions | None, wanted: str) -> StorageChoice:
    """One memory for all three roles, so a message is read and deleted where it was
    received and where our replies are written: ``wanted`` when the modem offers it for
    all three, else the first of SM, ME, MT that it does, else ``wanted`` anyway (the
    modem's refusal of ``AT+CPMS`` then names the problem)."""
    wanted = wanted.upper()
    if opts is None:
        return StorageChoice(wanted, "AT+CPMS=? not answered")
    common = [m for m in opts.mem3 if m in opts.mem1 and m in opts.mem2]
    if wanted in common:
        return StorageChoice(wanted)
    for m in (*_STORAGE_PREFERENCE, *common):
        if m in common:
            return StorageChoice(m, f"{wanted} not offered for all of read, write and "
                                    f"receive ({', '.join(opts.mem3)}); using {m}")
    return StorageChoice(wanted, "no storage offered for all three roles")


@dataclass(frozen=True)
class StorageUse:
    memory: str
    used: int
    total: int


def parse_storage_use(lines: Iterable[str]) -> tuple[StorageUse, ...]:
    """``+CPMS: "SM",3,30,"SM",3,30,"ME",0,255`` (the read form) → one value per role."""
    for line in lines:
        args = answer_args(line, "+CPMS", anywhere=True)
        if args is None:
            continue
        fields = split_fields(args)
        out = []
        for i in range(0, len(fields) - 2, 3):
            name, used, total = fields[i:i + 3]
            if used.as_int is not None and total.as_int is not None and name.text \
                    and not name.text.isdigit():
                out.append(StorageUse(name.text.upper(), used.as_int, total.as_int))
        if out:
            return tuple(out)
    return ()


# -- +CNUM (TS 27.007 §7.1) -------------------------------------------------------------

@dataclass(frozen=True)
class OwnNumber:
    """One line of ``+CNUM: [<alpha>],<number>,<type>[,<speed>,<service>[,<itc>]]``."""

    number: str
    type: int
    name: str = ""
    service: int | None = None   # 0 async, 1 sync, 2 PAD, 3 packet, 4 voice, 5 fax


_NUMBERISH = re.compile(r"\+?[0-9*#]+")


def parse_cnum(lines: Iterable[str]) -> tuple[OwnNumber, ...]:
    """Every number the SIM holds. The name is optional and may be missing with its comma
    (``+CNUM: "+92300…",145``); the number is the field before the type of address
    (128-255, TS 24.008 §10.5.4.7), quoted or not. Lines with an empty number are skipped."""
    out: list[OwnNumber] = []
    for line in lines:
        args = answer_args(line, "+CNUM")
        if args is None:
            continue
        fields = split_fields(args)
        for i in range(len(fields) - 1):
            toa = fields[i + 1].as_int
            if toa is not None and 128 <= toa <= 255 and _NUMBERISH.fullmatch(fields[i].text):
                name = fields[i - 1].text if i >= 1 else ""
                service = fields[i + 3].as_int if len(fields) > i + 3 else None
                number = fields[i].text
                if toa == 145 and not number.startswith("+"):
                    number = "+" + number
                out.append(OwnNumber(number, toa, name, service))
                break
    return tuple(out)


def own_number(lines: Iterable[str]) -> str:
    """The SIM's voice number (service 4) if one is marked, else the first."""
    numbers = parse_cnum(lines)
    voice = [n for n in numbers if n.service == 4]
    return (voice or list(numbers) or [OwnNumber("", 129)])[0].number


# -- identification and SIM (TS 27.007 §5.1-5.6, §9.2.1 +CPIN) ---------------------------

def parse_text_answer(lines: Iterable[str]) -> str:
    """The value of a one-line text answer (+CGMI, +CGMM, +CGMR, +CGSN, +CIMI, +CPIN?):
    the first line, without a ``Label:`` in front (``+CGMR: X``, Quectel's
    ``Revision: X``) and without quotes; "" when there is no line."""
    for line in lines:
        return line.split(":", 1)[-1].strip().strip('"').strip()
    return ""


def parse_sim_state(lines: Iterable[str]) -> str:
    """``+CPIN: READY`` → ``READY``; ``+CPIN: SIM PIN`` → ``SIM PIN``; "" for no answer."""
    return parse_text_answer(lines).upper()


# -- +CSCA (TS 27.005 §3.3.1) -------------------------------------------------------------

def parse_smsc(lines: Iterable[str]) -> str:
    """``+CSCA: "+923000000099",145`` → the SMS centre number; "" when the SIM holds none.
    A blank centre is answered ``+CSCA: "",129``: the type of address is there, the number
    is not, so only the <sca> field counts (it may be UCS-2 hex after ``AT+CSCS="UCS2"``,
    still digits)."""
    for line in lines:
        args = answer_args(line, "+CSCA", anywhere=True)
        if args is None:
            continue
        sca = split_fields(args)[0].text
        if any(c.isdigit() for c in sca):
            return sca
    return ""


# -- +CSQ (TS 27.007 §8.5) and +COPS (§7.3) ----------------------------------------------

@dataclass(frozen=True)
class Signal:
    """``+CSQ: <rssi>,<ber>``: rssi 0..31 (-113..-51 dBm), 99 unknown; ber 0..7, 99."""

    rssi: int
    ber: int | None = None

    @property
    def bars(self) -> int:
        """0-5 bars, as the status page and the probe show them."""
        return 0 if self.rssi == 99 else min(5, (self.rssi + 2) // 6)


def parse_signal(lines: Iterable[str]) -> Signal | None:
    """The last ``+CSQ`` line's values; None when no line carries a numeric <rssi>."""
    out = None
    for line in lines:
        args = answer_args(line, "+CSQ", anywhere=True)
        if args is None:
            continue
        fields = split_fields(args)
        rssi = fields[0].as_int
        if rssi is not None:
            out = Signal(rssi, fields[1].as_int if len(fields) > 1 else None)
    return out


@dataclass(frozen=True)
class Operator:
    """``+COPS: <mode>[,<format>,<oper>[,<AcT>]]`` with an operator named."""

    mode: int
    format: int
    name: str
    act: int | None = None


def parse_operator(lines: Iterable[str]) -> Operator | None:
    """The last ``+COPS`` line that names an operator (quoted: TS 27.007 §7.3 writes
    <oper> as a string); ``+COPS: 0`` (registered to none) gives None, so a caller keeps
    what it knew."""
    out = None
    for line in lines:
        args = answer_args(line, "+COPS", anywhere=True)
        if args is None:
            continue
        fields = split_fields(args)
        if len(fields) < 3 or not fields[2].quoted:
            continue
        mode, fmt = fields[0].as_int, fields[1].as_int
        if mode is None or fmt is None:
            continue
        out = Operator(mode, fmt, fields[2].text, fields[3].as_int if len(fields) > 3
                       else None)
    return out


# -- +CUSD (TS 27.007 §7.15) ------------------------------------------------------------

def ussd_string(code: str, *, packed: bool) -> str:
    """The <str> of ``AT+CUSD=1,<str>,15``: the code as text, or, for modems that take it
    as packed GSM-7 septets in hex (Huawei sticks, whatever +CSCS says), packed:
    ``*100#`` → ``AA180C3602``."""
    if not packed:
        return code
    codes = gsm7_codes(code)
    if codes is None:
        return code
    septets = [c for group in codes for c in group]
    if len(septets) % 8 == 7:
        # TS 23.038 §6.1.2.3.1: seven spare bits would read as '@'; USSD pads with CR.
        septets.append(0x0D)
    return pack_septets(bytes(septets)).hex().upper()
