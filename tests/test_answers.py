"""The modem's answers the engine, sender and probe act on, parsed without a pty: stored
messages (+CMTI, +CMGR, +CMGL; TS 27.005 §3.4.1-3.4.3), the number a send or write
answers with (+CMGS, +CMSS, +CMGW; §3.5.1-3.5.3), +CPMS used counts (§3.2.2),
+CSQ (TS 27.007 §8.5), +COPS (§7.3), identification (§5.1-5.6) and +CPIN (§9.2.1).

Fed line by line, with the odd forms real modems send: spaces around fields, quoted and
unquoted values, missing optional fields, vendor URCs and garbage between a header and
its PDU."""

from __future__ import annotations

import pytest
from hypothesis import given, strategies as st

from appliance.modem.answers import (
    Notice, StoredMessage, parse_cmgl, parse_cmgr, parse_notice, parse_reference,
)
from appliance.modem.atsms import parse_storage_use
from appliance.modem.atvalues import (
    Operator, Signal, parse_operator, parse_signal, parse_sim_state, parse_smsc, parse_text_answer,
)

PDU = "07912933035011F0040C9129330350119900005220404124658004D4F29C0E"
PDU2 = "0791293303501100040C912933035011990008522040412465800400410042"


# -- +CMTI / +CDSI ------------------------------------------------------------------------

@pytest.mark.parametrize("args, notice", [
    ('"SM",3', Notice("SM", 3)),
    ('"ME", 12', Notice("ME", 12)),
    ("SM,0", Notice("SM", 0)),
    (' "MT" , 7 ', Notice("MT", 7)),
    ('"sm",4', Notice("SM", 4)),            # lower case memory: same store
    ('"SR",2', Notice("SR", 2)),            # +CDSI: status report storage
    ('"SM",3,"extra"', Notice("SM", 3)),    # a trailing vendor field is ignored
])
def test_notice(args: str, notice: Notice) -> None:
    assert parse_notice(args) == notice


@pytest.mark.parametrize("args", ['"SM"', '"SM",', '"SM","3"', '"SMS",3', "3,3", "",
                                  '"SM",-1', "\ufffd\ufffd,3"])
def test_notice_garbage_is_none(args: str) -> None:
    assert parse_notice(args) is None


# -- +CMGR --------------------------------------------------------------------------------

def test_cmgr_header_and_pdu() -> None:
    assert parse_cmgr(["+CMGR: 0,,24", PDU]) == StoredMessage(0, PDU)
    assert parse_cmgr(['+CMGR: 1,"Ali",24', PDU]).stat == 1   # type: ignore[union-attr]
    assert parse_cmgr(["+CMGR:3,,24", f"  {PDU}  "]) == StoredMessage(3, PDU)
    assert parse_cmgr(["+CMGR : 2 , , 24", PDU]) == StoredMessage(2, PDU)


def test_cmgr_skips_a_urc_between_header_and_pdu() -> None:
    lines = ["+CMGR: 0,,24", "^RSSI: 14", "+CREG: 1", PDU]
    assert parse_cmgr(lines) == StoredMessage(0, PDU)


def test_cmgr_without_pdu() -> None:
    assert parse_cmgr(["+CMGR: 0,,24"]) == StoredMessage(0, None)
    assert parse_cmgr(["+CMGR: 0,,24", "not hex at all"]) == StoredMessage(0, None)


@pytest.mark.parametrize("lines", [
    [], ["+CSQ: 20,99"], ["+CMGL: 1,0,,24", PDU], ["+CMGR:", PDU], ['+CMGR: "REC UNREAD"'],
    ["junk +CMGR: 0,,24", PDU], ["\ufffd\ufffd", PDU],
])
def test_cmgr_someone_elses_answer_is_none(lines: list[str]) -> None:
    # The engine resynchronises on these and never deletes the slot.
    assert parse_cmgr(lines) is None


def test_cmgr_takes_the_first_header() -> None:
    assert parse_cmgr(["+CMGR: 1,,24", "+CMGR: 0,,24", PDU]) == StoredMessage(1, None)


# -- +CMGL --------------------------------------------------------------------------------

def test_cmgl_lists_each_header_with_its_pdu() -> None:
    lines = ["+CMGL: 1,0,,24", PDU, "+CMGL: 4, 1, ,22", PDU2,
             '+CMGL: 7,3,"",24', PDU]
    assert parse_cmgl(lines) == (StoredMessage(0, PDU, 1), StoredMessage(1, PDU2, 4),
                                 StoredMessage(3, PDU, 7))
    assert [m.received for m in parse_cmgl(lines)] == [True, True, False]


def test_cmgl_header_without_pdu_keeps_its_slot() -> None:
    # A header cut short: listed with no PDU; the next header's PDU is never borrowed.
    lines = ["+CMGL: 1,0,,24", "+CMGL: 2,0,,24", PDU]
    assert parse_cmgl(lines) == (StoredMessage(0, None, 1), StoredMessage(0, PDU, 2))


def test_cmgl_garbage_and_urcs_between() -> None:
    lines = ["\ufffdgarbage", "+CMGL: 5,1,,24", "+CMTI: \"SM\",6", "", PDU,
             "+CMGL: x,1,,24", PDU2, "+CMGL: 6", PDU2]
    # "+CMGL: x" and "+CMGL: 6" are not headers (no index and stat): their lines are
    # skipped, and PDU2 after them is nobody's.
    assert parse_cmgl(lines) == (StoredMessage(1, PDU, 5),)


def test_cmgl_empty() -> None:
    assert parse_cmgl([]) == ()
    assert parse_cmgl(["+CPMS: \"SM\",0,30"]) == ()


_line = st.one_of(st.sampled_from(["+CMGL: 1,0,,24", "+CMGR: 0,,24", PDU, "+CMTI: \"SM\",1",
                                   "OK", "", "+CMGL: 2,1"]), st.text(max_size=30))


@given(st.lists(_line, max_size=12))
def test_parsers_never_raise_and_pdus_are_hex(lines: list[str]) -> None:
    # The invariant: any lines parse to values (or nothing); a PDU is always a hex line.
    for m in parse_cmgl(lines):
        assert m.pdu is None or all(c in "0123456789ABCDEFabcdef" for c in m.pdu)
    msg = parse_cmgr(lines)
    assert msg is None or msg.pdu is None or msg.pdu in {ln.strip() for ln in lines}
    for line in lines:
        parse_notice(line)
        parse_signal([line])
        parse_operator([line])
        parse_storage_use([line])
        parse_reference([line], "+CMGS")


# -- +CMGS / +CMSS / +CMGW ----------------------------------------------------------------

@pytest.mark.parametrize("lines, answer, number", [
    (["+CMGS: 17"], "+CMGS", 17),
    (["+CMGS:0"], "+CMGS", 0),
    (['+CMGS: 255,"0412AB"'], "+CMGS", 255),        # <ackpdu> after the reference
    (["+cmss: 9"], "+CMSS", 9),
    (["+CMTI: \"SM\",4", "+CMGW: 12"], "+CMGW", 12),  # a URC in the answer is skipped
    (["+CMGW: 3", "+CMGW: 4"], "+CMGW", 3),
])
def test_reference(lines: list[str], answer: str, number: int) -> None:
    assert parse_reference(lines, answer) == number


@pytest.mark.parametrize("lines, answer", [
    ([], "+CMGS"), (["+CMSS: 9"], "+CMGS"), (["+CMGS:"], "+CMGS"), (["+CMGS: x"], "+CMGS"),
    (['+CMGS: "17"'], "+CMGS"), (["junk +CMGS: 17"], "+CMGS"), (["OK"], "+CMGW"),
])
def test_reference_none(lines: list[str], answer: str) -> None:
    assert parse_reference(lines, answer) is None


# -- +CPMS? used counts -------------------------------------------------------------------

@pytest.mark.parametrize("line, first", [
    ('+CPMS: "SM",3,30,"SM",3,30,"SM",3,30', ("SM", 3, 30)),
    ("+CPMS: SM,0,50,SM,0,50,SM,0,50", ("SM", 0, 50)),
    ('+CPMS:"ME", 12 ,255', ("ME", 12, 255)),
    ('+CPMS: "SM_P",1,30,"ME_P",0,255', ("SM_P", 1, 30)),   # Qualcomm-style names
    ('\ufffd+CPMS: "SM",2,30', ("SM", 2, 30)),               # a stray byte in front
])
def test_storage_use(line: str, first: tuple[str, int, int]) -> None:
    use = parse_storage_use([line])
    assert (use[0].memory, use[0].used, use[0].total) == first


@pytest.mark.parametrize("lines", [
    [], ["+CPMS: (\"SM\",\"ME\"),(\"SM\"),(\"SM\")"], ["+CPMS: 3,30,3,30"],
    ['+CPMS: "SM","3","30"'], ["OK"],
])
def test_storage_use_none(lines: list[str]) -> None:
    assert parse_storage_use(lines) == ()


# -- +CSQ ---------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, signal", [
    (["+CSQ: 20,99"], Signal(20, 99)),
    (["+CSQ:31,0"], Signal(31, 0)),
    (["+CSQ: 99,99"], Signal(99, 99)),
    (["+CSQ: 7"], Signal(7, None)),                       # <ber> left out
    (["+CSQ: 12 , 3"], Signal(12, 3)),
    (["+CSQ: 5,99", "+CSQ: 18,99"], Signal(18, 99)),     # the last reading counts
    (["\x00+CSQ: 9,99"], Signal(9, 99)),
])
def test_signal(lines: list[str], signal: Signal) -> None:
    assert parse_signal(lines) == signal


@pytest.mark.parametrize("lines", [[], ["+CSQ:"], ["+CSQ: ,99"], ['+CSQ: "20",99'],
                                   ["+CREG: 0,1"], ["OK"]])
def test_signal_none(lines: list[str]) -> None:
    assert parse_signal(lines) is None


def test_bars() -> None:
    assert [Signal(r).bars for r in (0, 3, 4, 10, 22, 28, 31, 99)] == [0, 0, 1, 2, 4, 5, 5, 0]


# -- +COPS --------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, op", [
    (['+COPS: 0,0,"Jazz",2'], Operator(0, 0, "Jazz", 2)),
    (['+COPS: 0,0,"Zong 4G",7'], Operator(0, 0, "Zong 4G", 7)),
    (['+COPS: 0, 0, "Ufone"'], Operator(0, 0, "Ufone", None)),   # no <AcT> (GSM-only)
    (['+COPS: 1,2,"41001"'], Operator(1, 2, "41001", None)),
    (['+COPS: 0,0,""'], Operator(0, 0, "", None)),
    (['+COPS: 0,0,"Telenor, PK",0'], Operator(0, 0, "Telenor, PK", 0)),
])
def test_operator(lines: list[str], op: Operator) -> None:
    assert parse_operator(lines) == op


@pytest.mark.parametrize("lines", [[], ["+COPS: 0"], ["+COPS: 2"], ["+COPS: 0,0,Jazz"],
                                   ['+COPS: (2,"Jazz","Jazz","41001",2),,(0-4),(0-2)'],
                                   ['+COPS: x,0,"Jazz"'], ["OK"]])
def test_operator_none(lines: list[str]) -> None:
    # +COPS: 0 (no operator) and the test form name none: the caller keeps what it knew.
    assert parse_operator(lines) is None


# -- identification and SIM ----------------------------------------------------------------

@pytest.mark.parametrize("lines, value", [
    (["SIMCOM_Ltd"], "SIMCOM_Ltd"),
    (["+CGMI: Quectel"], "Quectel"),
    (["Revision: EC25EFAR06A03M4G"], "EC25EFAR06A03M4G"),
    (['+CGSN: "861234567890123"'], "861234567890123"),
    (["  u-blox  "], "u-blox"),
    (["861234567890123", "extra"], "861234567890123"),
    ([], ""),
])
def test_text_answer(lines: list[str], value: str) -> None:
    assert parse_text_answer(lines) == value


@pytest.mark.parametrize("lines, state", [
    (["+CPIN: READY"], "READY"), (["+CPIN:SIM PIN"], "SIM PIN"),
    (['+CPIN: "SIM PUK"'], "SIM PUK"), (["+cpin: ready"], "READY"), ([], ""),
])
def test_sim_state(lines: list[str], state: str) -> None:
    assert parse_sim_state(lines) == state


# -- +CSCA --------------------------------------------------------------------------------

@pytest.mark.parametrize("lines, smsc", [
    (['+CSCA: "+923000000099",145'], "+923000000099"),
    (['+CSCA:"03000000099", 129'], "03000000099"),
    (["+CSCA: +923000000099,145"], "+923000000099"),               # unquoted
    (['+CSCA: "002B0039003200330030",145'], "002B0039003200330030"),  # UCS-2 after +CSCS
    (['+CSCA: "",129'], ""),        # blank on the SIM: the 129 is not a number
    (['+CSCA: "",145'], ""),
    (["+CSCA: "], ""), ([], ""), (["OK"], ""),
])
def test_smsc(lines: list[str], smsc: str) -> None:
    assert parse_smsc(lines) == smsc
