"""appliance.modem.atvalues: a modem's answers as typed values, rule by rule (no pty).

Registration per TS 27.007 §7.2 / §10.1.20 / §10.1.22 / §10.1.52, +CNMI and +CPMS choices
per TS 27.005 §3.4.1 / §3.2.2, +CNUM per TS 27.007 §7.1."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from appliance.modem.atregistration import Registration, parse_registration, sms_service
from appliance.modem.atsms import (
    CnmiRanges, StorageOptions, choose_cnmi, choose_storage, parse_cnmi_ranges,
    parse_storage_options, parse_storage_use,
)
from appliance.modem.atvalues import own_number, parse_cnum, split_fields


def reg(line: str, solicited: bool = False) -> Registration:
    r = parse_registration(line, solicited=solicited)
    assert r is not None, line
    return r


# -- registration lines ------------------------------------------------------------------

@pytest.mark.parametrize("line, stat, area, cell, act", [
    # URCs: <stat>[,<lac>,<ci>[,<AcT>]]: the location codes are never the status.
    ("+CREG: 1", 1, "", "", None),
    ("+CREG: 1,84CD,0AB1", 1, "84CD", "0AB1", None),
    ('+CREG: 1,"84CD","0AB1"', 1, "84CD", "0AB1", None),
    ("+CEREG: 2, 0001,00AB12CD,7", 2, "0001", "00AB12CD", 7),
    ('+CEREG:2,"0001","00AB12CD",7', 2, "0001", "00AB12CD", 7),
    ("+CREG: 0, 1234, 5678", 0, "1234", "5678", None),
    ('+CREG: 6,"0FA1","1B2C",7', 6, "0FA1", "1B2C", 7),
    ('+C5GREG: 1,"00A1","000000001",11', 1, "00A1", "000000001", 11),
    ("+CGREG: 0", 0, "", "", None),
])
def test_unsolicited_registration(line: str, stat: int, area: str, cell: str,
                                  act: int | None) -> None:
    r = reg(line)
    assert (r.stat, r.n, r.area, r.cell, r.act) == (stat, None, area, cell, act)


@pytest.mark.parametrize("line, n, stat, area", [
    # Read answers: <n>,<stat>[,<lac>,<ci>[,<AcT>]]
    ("+CREG: 0,1", 0, 1, ""),
    ("+CREG: 2,6,\"0FA1\",\"1B2C\",7", 2, 6, "0FA1"),
    ("+CREG:  2 , 5 , 84CD , 0AB1", 2, 5, "84CD"),
    ("+CEREG: 2,2, 0001,00AB12CD,7", 2, 2, "0001"),
    ("+CEREG: 4,1,\"0001\",\"01A2D001\",7,,,\"00100100\",\"01011111\"", 4, 1, "0001"),
    ("+CGREG: 0,4", 0, 4, ""),
])
def test_solicited_registration(line: str, n: int, stat: int, area: str) -> None:
    r = reg(line, solicited=True)
    assert (r.n, r.stat, r.area) == (n, stat, area)


def test_read_form_sent_as_a_urc_is_tolerated() -> None:
    """Two small unquoted numbers unsolicited: the read form (some firmware), n then stat.
    And a read answer in the URC form (a location code second) is read as the URC form."""
    assert (reg("+CREG: 1,5").n, reg("+CREG: 1,5").stat) == (1, 5)
    assert reg('+CEREG: 2,"00A1"', solicited=True).stat == 2


@pytest.mark.parametrize("line", ["+CREG:", "+CREG: x", '+CREG: "1"', "+CSQ: 1,2", "",
                                  "+CEREG", "+CEREG: ,1"])
def test_not_registration(line: str) -> None:
    assert parse_registration(line, solicited=True) is None


@given(st.text(max_size=60))
def test_any_line_parses_or_is_none(text: str) -> None:
    for prefix in ("+CREG: ", "+CEREG:", ""):
        for solicited in (True, False):
            r = parse_registration(prefix + text, solicited=solicited)
            assert r is None or isinstance(r.stat, int)


# -- "can this modem do SMS" -------------------------------------------------------------

def regs(*lines: str) -> dict[str, Registration]:
    out: dict[str, Registration] = {}
    for line in lines:
        r = reg(line)
        out[r.command] = r
    return out


@pytest.mark.parametrize("stat", [1, 5, 6, 7, 9, 10])
def test_sms_capable_stats(stat: int) -> None:
    assert sms_service(regs(f"+CREG: {stat}")).able


@pytest.mark.parametrize("stat", [0, 2, 3, 4, 8, 11])
def test_not_sms_capable_stats(stat: int) -> None:
    assert not sms_service(regs(f"+CREG: {stat}")).able


def test_registered_per_domain() -> None:
    """"SMS only" is a circuit-switched state; a packet domain is registered at 1 and 5."""
    assert reg("+CREG: 6").registered and reg("+CEREG: 5").registered
    assert not reg("+CEREG: 6").registered and not reg("+CGREG: 2").registered
    assert reg("+CREG: 7").text == "registered for SMS only, roaming"


def test_packet_domain_never_takes_sms_away() -> None:
    """+CREG: 5 then +CGREG: 0 (the issue's case) and a searching EPS."""
    assert sms_service(regs("+CREG: 5", "+CGREG: 0")).able
    assert sms_service(regs("+CREG: 6,\"0001\",\"00AB\",7", "+CEREG: 2", "+CGREG: 4")).able
    assert sms_service(regs("+CREG: 5")).roaming


def test_lte_registration_counts_where_the_radio_is() -> None:
    """LTE-only Cat-M/Cat-1 modules registered in EPS without a CS registration: SMS over
    NAS/IMS. GPRS alone never counts."""
    s = sms_service(regs("+CREG: 0", "+CEREG: 1,\"0001\",\"01A2D001\",7"))
    assert s.able and s.via == "+CEREG"
    assert sms_service(regs("+CEREG: 5")).able
    assert sms_service(regs("+C5GREG: 1")).able
    assert not sms_service(regs("+CREG: 2", "+CGREG: 1")).able
    assert not sms_service(regs("+CEREG: 2")).able
    assert not sms_service({}).able


# -- +CNMI -------------------------------------------------------------------------------

def ranges(text: str) -> CnmiRanges:
    r = parse_cnmi_ranges([f"+CNMI: {text}"])
    assert r is not None
    return r


@pytest.mark.parametrize("offered, chosen", [
    ("(0-2),(0-3),(0,2),(0-2),(0,1)", "AT+CNMI=2,1,0,2,0"),          # Quectel, SIMCom LTE
    ("(0-3),(0-3),(0,2),(0,1),(0,1)", "AT+CNMI=2,1,0,1,0"),          # SIM800L: no ds=2
    ("(0-2),(0,1),(0,2),(0),(1)", "AT+CNMI=2,1,0,0,1"),              # Cinterion: bfr 1 only
    ("(0-3),(0,1),(0,2,3),(0,2),(1)", "AT+CNMI=2,1,0,2,1"),          # Cinterion MC75i
    ("(0,1,2),(0,1,2,3),(0,2),(0,1,2),(0,1)", "AT+CNMI=2,1,0,2,0"),  # Huawei
    ("(0,3),(0-2),(0,2),(0),(0)", "AT+CNMI=3,1,0,0,0"),              # Motorola g20
    ("(0-2),(2),(0),(0),(0)", "AT+CNMI=2,2,0,0,0"),                  # only direct routing
    ("(0),(0,1)", "AT+CNMI=0,1,0,0,0"),                              # trailing fields left out
])
def test_cnmi_choice(offered: str, chosen: str) -> None:
    choice = choose_cnmi(ranges(offered))
    assert choice is not None and choice.command == chosen
    r = ranges(offered)
    assert (choice.mode in r.mode and choice.mt in r.mt and choice.bm in r.bm
            and choice.ds in r.ds and choice.bfr in r.bfr)


def test_cnmi_choice_without_status_reports_and_with_nothing() -> None:
    choice = choose_cnmi(ranges("(0-2),(0-3),(0,2),(0-2),(0,1)"), status_reports=False)
    assert choice is not None and choice.ds == 0
    assert parse_cnmi_ranges(["+CNMI: 2,1,0,0,0"]) is not None  # read form: single values
    assert parse_cnmi_ranges(["OK"]) is None
    assert parse_cnmi_ranges(["+CNMI: (),()"]) is None  # no <mode> or <mt> offered


def test_cnmi_why_names_the_compromise() -> None:
    choice = choose_cnmi(ranges("(0-2),(0,1),(0,2),(0),(1)"))
    assert choice is not None and "bfr=1" in choice.why and "ds=0" in choice.why


# -- +CPMS -------------------------------------------------------------------------------

def test_storage_options_and_choice() -> None:
    opts = parse_storage_options(['+CPMS: ("ME","SM","MT"),("ME","SM","MT"),("SM","MT")'])
    assert opts == StorageOptions(("ME", "SM", "MT"), ("ME", "SM", "MT"), ("SM", "MT"))
    assert choose_storage(opts, "SM").memory == "SM" and not choose_storage(opts, "SM").why
    # ME is not a receive memory on this modem: fall back to SM, and say why.
    me = choose_storage(opts, "me")
    assert me.memory == "SM" and "ME not offered" in me.why
    assert choose_storage(None, "SM").memory == "SM"
    unquoted = parse_storage_options(["+CPMS: (SM,ME),(SM,ME),(SM,ME)"])
    assert unquoted is not None and unquoted.mem3 == ("SM", "ME")


def test_storage_use() -> None:
    use = parse_storage_use(['+CPMS: "ME",0,25,"ME",0,25,"SM",3,20'])
    assert [(u.memory, u.used, u.total) for u in use] == [("ME", 0, 25), ("ME", 0, 25),
                                                           ("SM", 3, 20)]
    assert parse_storage_use(["+CPMS: 0,20,0,20,0,20"]) == ()


# -- +CNUM -------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, number", [
    (['+CNUM: "OwnNumber","+447562567063",145'], "+447562567063"),
    (['+CNUM: ,"+923001234567",145'], "+923001234567"),
    (['+CNUM: "","03001234567",129'], "03001234567"),
    (['+CNUM: "+923001234567",145'], "+923001234567"),              # name left out entirely
    (['+CNUM: "Line1","923001234567",145,,4'], "+923001234567"),    # 145 without the plus
    (['+CNUM: "Data","+923009999999",145,,0', '+CNUM: "Voice","+923001234567",145,,4'],
     "+923001234567"),                                              # voice line preferred
    (['+CNUM: "","",129', '+CNUM: "My, number","+923001234567",145'], "+923001234567"),
    ([], ""),
    (["+CNUM: "], ""),
])
def test_cnum(lines: list[str], number: str) -> None:
    assert own_number(lines) == number


def test_cnum_fields() -> None:
    (a, b) = parse_cnum(['+CNUM: "Voice","+923001234567",145,,4',
                         '+CNUM: ,03001234567,129'])
    assert (a.name, a.number, a.type, a.service) == ("Voice", "+923001234567", 145, 4)
    assert (b.name, b.number, b.type, b.service) == ("", "03001234567", 129, None)


def test_split_fields_keeps_quoted_and_parenthesised_commas() -> None:
    fields = split_fields(' 1 , "a,b" ,(0,1), ,x')
    assert [f.text for f in fields] == ["1", "a,b", "(0,1)", "", "x"]
    assert [f.quoted for f in fields] == [False, True, False, False, False]


def test_ussd_string_packed_for_huawei() -> None:
    from appliance.modem.atvalues import ussd_string

    assert ussd_string("*100#", packed=True) == "AA180C3602"   # the Huawei manual's example
    assert ussd_string("*123#", packed=False) == "*123#"
    # Seven septets leave seven spare bits: padded with CR, not read as '@'.
    assert len(bytes.fromhex(ussd_string("*123*1#", packed=True))) == 7
    assert bytes.fromhex(ussd_string("*123*1#", packed=True))[-1] >> 1 == 0x0D
