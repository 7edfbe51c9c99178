"""Reading the modem's answers: the patterns of the information responses the engine and the
probe parse (TS 27.005 / 27.007), and finding the PDU line that belongs to a header."""

from __future__ import annotations

import re

CMGR = re.compile(r"\+CMGR:\s*(\d+)")
CMGL = re.compile(r"\+CMGL:\s*(\d+)\s*,\s*(\d+)")
CMTI = re.compile(r'"?([A-Z]{2})"?\s*,\s*(\d+)')
CSQ = re.compile(r"\+CSQ:\s*(\d+)")
CREG = re.compile(r"\+C(?:G|E)?REG:\s*(?:\d+\s*,\s*)?(\d+)")
COPS = re.compile(r'\+COPS:\s*\d+\s*,\s*\d+\s*,\s*"([^"]*)"')
CPMS = re.compile(r'\+CPMS:\s*"?(\w+)"?\s*,\s*(\d+)\s*,\s*(\d+)')

_HEXLINE = re.compile(r"[0-9A-Fa-f]+")


def pdu_after(lines: tuple[str, ...], header: re.Pattern[str]) -> str | None:
    """The PDU line that belongs to ``header``: the next line made only of hex digits.
    Anything between (a vendor URC the core did not recognise) is skipped, never taken
    for the PDU."""
    for i, line in enumerate(lines):
        if header.match(line):
            for follower in lines[i + 1:]:
                if header.match(follower):
                    return None
                if _HEXLINE.fullmatch(follower.strip()):
                    return follower.strip()
            return None
    return None
