"""Reading a USSD answer (TS 27.007 §7.15 ``+CUSD: <m>[,<str>[,<dcs>]]``), pure.

Prepaid SIMs run dry and then fail every send; operators answer a balance request by USSD.
The text arrives either as plain characters (DCS in the GSM-7 group, e.g. 15) or, with a
UCS-2 DCS (e.g. 72 = 0x48), as hex of UTF-16BE — modems differ, so both are accepted.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_CUSD = re.compile(r'\+CUSD:\s*(\d)\s*(?:,\s*"(.*)"\s*(?:,\s*(\d+))?)?\s*$', re.S)
_HEX = re.compile(r"(?:[0-9A-Fa-f]{4})+")


@dataclass(frozen=True)
class UssdAnswer:
    status: int          # 0 no further action, 1 further action required, 2 terminated …
    text: str
    dcs: int | None


def parse_cusd(line: str) -> UssdAnswer | None:
    m = _CUSD.search(line)
    if m is None:
        return None
    text = m.group(2) or ""
    dcs = int(m.group(3)) if m.group(3) else None
    ucs2 = dcs is not None and (dcs & 0xCC) == 0x48 or dcs == 0x11
    if (ucs2 or dcs is None) and _HEX.fullmatch(text):
        try:
            text = bytes.fromhex(text).decode("utf-16-be", errors="replace")
        except ValueError:
            pass
    return UssdAnswer(int(m.group(1)), text, dcs)


def balance_from(text: str, pattern: str) -> float | None:
    """The amount captured by the configured pattern's first group, or None."""
    m = re.search(pattern, text)
    if m is None or not m.groups():
        return None
    try:
        return float(m.group(1).replace(",", "").rstrip("."))  # "Rs.12.50." ends a sentence
    except (TypeError, ValueError):
        return None
