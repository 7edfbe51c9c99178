"""The compatibility matrix (appliance.modem.families, docs/modems.md), row by row, against
byte-level transcripts in tests/data/at/family_*.at built from public sources (cited in
tests/data/at/README.md). No pty: the bytes go through the sans-I/O core
(protocol.ATProtocol) and its answers through the typed parsers (modem.atvalues), as the
engine and the probe use them.

Besides the ``= …`` event lines that tests/test_protocol.py checks, a family transcript has
``@ …`` lines, each checked against the events so far:

    @ family KEY            +CGMI/+CGMM answers so far → this row of the table
    @ cnmi AT+CNMI=…        the setting chosen from the last AT+CNMI=? answer
    @ storage MEM           the storage chosen (configured "SM") from the last AT+CPMS=?
    @ reg +CREG 6           the last event (answer or URC) read as this report and <stat>
    @ sms yes|no            the SMS verdict from every registration seen so far
    @ cnum NUMBER           the SIM's number from the last AT+CNUM answer
"""

from __future__ import annotations

import codecs
from pathlib import Path

import pytest

from appliance.modem.atregistration import Registration, parse_registration, sms_service
from appliance.modem.atsms import (
    choose_cnmi, choose_storage, parse_cnmi_ranges, parse_storage_options,
)
from appliance.modem.atvalues import own_number
from appliance.modem.families import FAMILIES, Family, family_for, matrix
from appliance.modem.protocol import ATProtocol, Response, Urc

ROOT = Path(__file__).resolve().parent.parent
DATA = ROOT / "tests" / "data" / "at"


def replay(family: Family) -> tuple[int, dict[str, Response]]:
    """Replay the family's transcript; check every ``@`` line. Returns how many ``@``
    checks ran and the last response to each command."""
    proto = ATProtocol()
    answers: dict[str, Response] = {}
    last: Response | Urc | None = None
    regs: dict[str, Registration] = {}
    checks = 0
    path = DATA / family.transcript
    for number, raw in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        where = f"{path.name}:{number}"
        if raw.startswith("< "):
            proto.receive_data(codecs.escape_decode(raw[2:].encode())[0])
            for ev in proto.events():
                if isinstance(ev, Response):
                    answers[ev.command] = last = ev
                    for line in ev.lines:
                        if r := parse_registration(line, solicited=True):
                            regs[r.command] = r
                elif isinstance(ev, Urc):
                    last = ev
                    if r := parse_registration(ev.line, solicited=False):
                        regs[r.command] = r
        elif raw.startswith(">> "):
            proto.command(raw[3:], prompt=True)
        elif raw.startswith("> "):
            proto.command(raw[2:])
        elif raw.startswith("@ "):
            checks += 1
            kind, _, want = raw[2:].partition(" ")
            lines = last.lines if isinstance(last, Response) else ()
            if kind == "family":
                got = family_for(_first(answers.get("AT+CGMI")), _first(answers.get("AT+CGMM")))
                assert got is not None and got.key == want == family.key, where
            elif kind == "cnmi":
                ranges = parse_cnmi_ranges(lines)
                choice = choose_cnmi(ranges) if ranges else None
                assert choice is not None and choice.command == want, (where, choice)
            elif kind == "storage":
                assert choose_storage(parse_storage_options(lines), "SM").memory == want, where
            elif kind == "reg":
                name, stat = want.split()
                line = last.line if isinstance(last, Urc) else (lines[0] if lines else "")
                r = parse_registration(line, solicited=isinstance(last, Response))
                assert r is not None and (r.command, r.stat) == (name, int(stat)), (where, r)
            elif kind == "sms":
                assert sms_service(regs).able == (want == "yes"), (where, regs)
            elif kind == "cnum":
                assert own_number(lines) == want, where
            else:
                raise AssertionError(f"{where}: unknown check {kind!r}")
    return checks, answers


def _first(resp: Response | None) -> str:
    if resp is None or not resp.lines:
        return ""
    line = resp.lines[0]
    return line.split(":", 1)[1].strip() if line.startswith("+CGM") else line.strip()


@pytest.mark.parametrize("family", FAMILIES, ids=lambda f: f.key)
def test_transcript_backs_the_row(family: Family) -> None:
    checks, answers = replay(family)
    assert checks >= 5, "a row needs its identification, settings and registration checked"
    # The row's ranges and storages are what the modem said, byte for byte.
    assert answers["AT+CNMI=?"].lines == (f"+CNMI: {family.cnmi}",)
    assert answers["AT+CPMS=?"].lines == (f"+CPMS: {family.storages}",)
    # Its registration reports are the ones the modem answers.
    for name in family.registration:
        assert answers[f"AT{name}?"].final.ok, name
    assert family.pdu_mode == answers["AT+CMGF=0"].final.ok
    assert family.stored_send == (answers["AT+CMGW=?"].final.ok
                                  and answers["AT+CMSS=?"].final.ok)


def test_every_transcript_is_a_row() -> None:
    files = {p.name for p in DATA.glob("family_*.at")}
    assert files == {f.transcript for f in FAMILIES}


def test_docs_matrix_is_the_table() -> None:
    page = (ROOT / "docs" / "modems.md").read_text(encoding="utf-8")
    assert matrix() in page, "docs/modems.md is stale: paste appliance.modem.families.matrix()"


def test_unknown_modem_has_no_family() -> None:
    assert family_for("Acme", "X1") is None
    assert family_for("SIMCOM_Ltd", "SIMCOM_SIM800L").key == "sim800"  # type: ignore[union-attr]
    assert family_for("SIMCOM INCORPORATED",
                      "SIMCOM_SIM7600E-H").key == "sim7600"  # type: ignore[union-attr]


def test_registration_reports_read_are_those_that_decide() -> None:
    from appliance.modem.families import registration_reports

    assert registration_reports("SIMCOM_Ltd", "SIMCOM_SIM800L") == ("+CREG",)
    assert registration_reports("Quectel", "EC25") == ("+CREG", "+CEREG")
    assert registration_reports("Acme", "X1") == ("+CREG", "+CEREG", "+C5GREG")
