"""A modem's answers as typed values: the field splitter every AT answer parser shares,
and the small answers (+CNUM, identification and +CPIN, +CSCA, +CSQ, +COPS, +CUSD).
Registration is in :mod:`.atregistration`, +CNMI and +CPMS in :mod:`.atsms`, stored
messages (+CMTI, +CMGR, +CMGL) in :mod:`.answers`.

Pure (no serial, threads, clocks or logging): lines in, frozen values out, so every rule
here is tested byte by byte (tests/test_atvalues.py, tests/test_answers.py, and the vendor
transcripts in tests/data/at/ through tests/test_modem_families.py). The engine and the
probe only move these values; the choices (which +CNMI, which storage, "can this modem
do SMS") are made in these modules, once, for both.

Parsing is by fields, never by "the first number after the colon": location codes may be
quoted or not (``+CREG: 1,84CD,…``, ``+CEREG: 2, 0001,…``) and their digits must never be
read as a status.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass

from .pdu_text import gsm7_codes, pack_septets

# -- fields ------------------------------------------------------------------------------

def is_number(text: str) -> bool:
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
        return int(self.text) if not self.quoted and is_number(self.text) else None


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
