"""The simulated modems' AT surface, driven over real ptys with a plain pyserial client."""

from __future__ import annotations

import random
from collections.abc import Iterator
from pathlib import Path

import pytest
from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu

from appliance.simulator.client import ATClient
from appliance.simulator.bank import ModemSpec, Simulator

CITIZEN = "+923001234567"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    specs = [ModemSpec(profile="sim800"), ModemSpec(profile="ec25"),
             ModemSpec(profile="huawei"), ModemSpec(profile="sim800", pin="1234")]
    with Simulator(tmp_path, specs, time_scale=0.01) as simulator:
        yield simulator


@pytest.fixture
def at(sim: Simulator) -> Iterator[ATClient]:
    with ATClient(sim.modems[0].port) as client:
        client.command("ATE0")
        client.command("AT+CMEE=1")
        yield client


def client_for(sim: Simulator, index: int) -> ATClient:
    client = ATClient(sim.modems[index].port)
    client.command("ATE0")
    client.command("AT+CMEE=1")
    return client


def submit(client: ATClient, text: str, number: str = CITIZEN, **kw: object) -> list[bytes]:
    (part,) = encodeSmsSubmitPdu(number, text, **kw)
    return client.command(f"AT+CMGS={part.tpduLength}", prompt_data=str(part))


def test_identification_and_network(sim: Simulator, at: ATClient) -> None:
    modem = sim.modems[0]
    assert at.command("AT") == [b"OK"]
    assert at.command("ATI") == [b"SIM800 R14.18", b"OK"]
    assert at.command("AT+CGMI") == [b"SIMCOM_Ltd", b"OK"]
    assert at.command("AT+CGMM") == [b"SIM800L", b"OK"]
    assert at.command("AT+CGMR")[0].startswith(b"Revision:")
    assert at.command("AT+CGSN") == [modem.imei.encode(), b"OK"]
    assert at.command("AT+CIMI") == [modem.imsi.encode(), b"OK"]
    assert at.command("AT+CSQ") == [b"+CSQ: 17,0", b"OK"]
    assert at.command("AT+CREG?") == [b"+CREG: 0,1", b"OK"]
    assert at.command("AT+CGREG?") == [b"+CGREG: 0,1", b"OK"]
    assert at.command("AT+COPS?") == [b'+COPS: 0,0,"Jazz"', b"OK"]
    assert at.command("AT+COPS=3,2;+COPS?") == [b'+COPS: 0,2,"41001"', b"OK"]
    assert at.command("AT+CSCA?") == [b'+CSCA: "+923000000092",145', b"OK"]
    assert at.command('AT+CSCA="+923000000099",145;+CSCA?')[0] == b'+CSCA: "+923000000099",145'
    assert at.command("AT+CFUN?") == [b"+CFUN: 1", b"OK"]
    assert at.command("AT+CCLK?")[0].startswith(b'+CCLK: "')
    assert at.command("AT+CMMS=2;+CMMS?") == [b"+CMMS: 2", b"OK"]
    assert at.command("AT+CSMP=17,167,0,8;+CSMP?") == [b"+CSMP: 17,167,0,8", b"OK"]
    assert at.command('AT+CSCS="UCS2";+CSCS?') == [b'+CSCS: "UCS2"', b"OK"]
    assert b"AT+CMGS" in at.command("AT+CLAC")


def test_unknown_and_garbage_always_get_an_answer(at: ATClient) -> None:
    assert at.command("AT+NOSUCH") == [b"ERROR"]
    assert at.command("hello modem") == [b"ERROR"]
    assert at.command("AT+CMGF=0;+BOGUS;+CSQ") == [b"ERROR"]
    assert at.command("AT^CURC=0") == [b"ERROR"]  # a Huawei command on a SIMCom modem
    at.serial.write(b"AT+CSX\x08Q\r")  # backspace edits the line (V.250 S5)
    assert at.read_line() == b"+CSQ: 17,0"
    rng = random.Random(7)
    junk = bytes(rng.randrange(256) for _ in range(3000))
    at.serial.write(junk.replace(b"\r", b"") + b"\x1b\r")
    at.serial.reset_input_buffer()
    at.buffer.clear()
    assert at.command("AT")[-1] in (b"OK", b"ERROR")  # the junk line's own ERROR may come first
    assert at.command("AT") == [b"OK"]


def test_echo_verbosity_and_errors(sim: Simulator) -> None:
    with ATClient(sim.modems[0].port) as client:
        client.serial.write(b"AT\r")
        assert client.read_until(b"OK\r\n") == b"AT\r\r\nOK\r\n"  # SIM800: echo on at power-up
        client.command("ATE0")
        client.serial.write(b"AT\r")
        assert client.read_until(b"OK\r\n") == b"\r\nOK\r\n"
        client.serial.write(b"ATV0\r")
        assert client.read_until(b"\r") == b"0\r"
        client.serial.write(b"AT+NOSUCH\r")
        assert client.read_until(b"\r") == b"4\r"
        client.serial.write(b"ATV1\r")
        client.read_until(b"OK\r\n")
        assert client.command("AT+CPIN=9999") == [b"ERROR"]  # CMEE=0: plain ERROR
        assert client.command("AT+CMEE=2;+CPIN=9999") == [b"+CME ERROR: operation not allowed"]
        assert client.command("AT+CMEE=1;+CPIN=9999") == [b"+CME ERROR: 3"]
        assert client.command("ATZ") == [b"OK"]
        assert client.command("AT+CMEE?") == [b"+CMEE: 0", b"OK"]


def test_pin_locked_sim(sim: Simulator) -> None:
    sim.citizen_send(CITIZEN, 3, "waits for the PIN")
    with client_for(sim, 3) as client:
        assert client.command("AT+CPIN?") == [b"+CPIN: SIM PIN", b"OK"]
        assert client.command("AT+CMGL=4") == [b"+CMS ERROR: 311"]
        assert client.command("AT+CIMI") == [b"+CME ERROR: 11"]
        assert client.command("AT+CREG?") == [b"+CREG: 0,0", b"OK"]
        assert client.command('AT+CPIN="0000"') == [b"+CME ERROR: 16"]
        assert client.command('AT+CPIN="1234"') == [b"OK"]
        client.wait_line(b'+CMTI: "SM",1')  # registered now: the network delivers
        assert client.command("AT+CPIN?") == [b"+CPIN: READY", b"OK"]
        assert sim.modems[3].stored()[0].text == "waits for the PIN"


def test_storage_per_profile(sim: Simulator, at: ATClient) -> None:
    assert at.command("AT+CPMS=?") == [b'+CPMS: ("SM"),("SM"),("SM")', b"OK"]
    assert at.command("AT+CPMS?") == [b'+CPMS: "SM",0,30,"SM",0,30,"SM",0,30', b"OK"]
    assert at.command('AT+CPMS="ME"') == [b"+CMS ERROR: 302"]
    with client_for(sim, 1) as quectel:
        assert quectel.command("AT+CPMS=?")[0] == \
            b'+CPMS: ("SM","ME","MT"),("SM","ME","MT"),("SM","ME","MT")'
        assert quectel.command('AT+CPMS="MT","SM"') == [b"+CPMS: 0,285,0,30,0,255", b"OK"]
        assert quectel.command("AT+CMGF=1") == [b"+CMS ERROR: 303"]
        assert quectel.command("AT+CMGF=?") == [b"+CMGF: (0)", b"OK"]


def test_cmti_names_the_receiving_storage(sim: Simulator, at: ATClient) -> None:
    sim.citizen_send(CITIZEN, 0, "to a SIM800")
    assert at.wait_line(b"+CMTI:") == b'+CMTI: "SM",1'
    with client_for(sim, 1) as quectel:
        sim.citizen_send(CITIZEN, 1, "to an EC25")
        assert quectel.wait_line(b"+CMTI:") == b'+CMTI: "ME",0'
        lines = quectel.command("AT+CMGR=0")
        assert lines[0] == b"+CMGR: 0,,28" and lines[-1] == b"OK"  # 8-octet SMSC not counted
        assert len(lines[1]) // 2 == 8 + 28
        assert decodeSmsPdu(lines[1].decode())["text"] == "to an EC25"
        assert quectel.command("AT+CMGR=1") == [b"+CMS ERROR: 321"]  # Quectel: empty slot


def test_cnmi_routes_and_buffers(sim: Simulator, at: ATClient) -> None:
    at.command("AT+CNMI=2,2,0,0,0")
    sim.citizen_send(CITIZEN, 0, "straight to the TE")
    header = at.wait_line(b"+CMT:")
    assert header.startswith(b"+CMT: ,")
    assert decodeSmsPdu(at.read_line().decode())["text"] == "straight to the TE"
    assert sim.modems[0].stored() == []
    at.command("AT+CNMI=0,1,0,0,0")  # mode 0: indications stay in the TA buffer
    sim.citizen_send(CITIZEN, 0, "buffered")
    assert sim.wait_for(lambda: sim.modems[0].stored(), timeout=5)
    assert at.command("AT") == [b"OK"]
    at.command("AT+CNMI=2,1,0,0,0")  # bfr=0: the buffer is flushed on entering mode 2
    assert at.wait_line(b"+CMTI:") == b'+CMTI: "SM",1'


def test_read_list_delete(sim: Simulator, at: ATClient) -> None:
    for text in ("one", "two", "three"):
        sim.citizen_send(CITIZEN, 0, text, store_only=True)
    lines = at.command("AT+CMGR=2")
    assert lines[0].startswith(b"+CMGR: 0,,")
    assert at.command("AT+CMGR=2")[0].startswith(b"+CMGR: 1,,")  # now read
    unread = at.command("AT+CMGL=0")
    assert [line.split(b",")[0] for line in unread[:-1:2]] == [b"+CMGL: 1", b"+CMGL: 3"]
    assert len(at.command("AT+CMGL=4")) == 7
    assert at.command('AT+CMGL="ALL"') == [b"+CMS ERROR: 302"]
    assert at.command("AT+CMGR=5") == [b"OK"]  # SIM800: an empty slot answers OK
    assert at.command("AT+CMGR=31") == [b"+CMS ERROR: 321"]
    assert at.command("AT+CMGD=?") == [b"+CMGD: (1,2,3),(0-4)", b"OK"]
    assert at.command("AT+CMGD=2") == [b"OK"]
    sim.citizen_send(CITIZEN, 0, "four", store_only=True)  # unread, in the freed slot 2
    assert at.command("AT+CMGD=1,1") == [b"OK"]  # deletes read messages only
    assert [(m.index, m.text) for m in sim.modems[0].stored()] == [(2, "four")]
    assert at.command("AT+CMGD=1,4") == [b"OK"]
    assert sim.modems[0].stored() == []


def test_send_capture_and_status_report(sim: Simulator, at: ATClient) -> None:
    at.command("AT+CNMI=2,1,0,2,0")
    lines = submit(at, "Beware! a reply", requestStatusReport=True)
    assert lines[-1] == b"OK"
    mr = int(lines[0].split(b":")[1])
    (part,) = sim.submitted
    assert (part.modem, part.recipient, part.text, part.mr) == ("sim0", CITIZEN,
                                                                 "Beware! a reply", mr)
    assert sim.inbox(CITIZEN) == ["Beware! a reply"]
    index = at.wait_line(b"+CDSI:").split(b",")[1]
    report = at.command(f"AT+CMGR={int(index)}")
    decoded = decodeSmsPdu(report[1].decode())
    assert decoded["type"] == "SMS-STATUS-REPORT"
    assert (decoded["reference"], decoded["number"], decoded["status"]) == (mr, CITIZEN, 0)
    at.command("AT+CNMI=2,1,0,1,0")
    lines = submit(at, "again", requestStatusReport=True)
    header = at.wait_line(b"+CDS:")
    pdu = at.read_line().decode()
    assert int(header.split(b":")[1]) == len(pdu) // 2 - 1 - int(pdu[:2], 16)
    assert decodeSmsPdu(pdu)["reference"] == int(lines[0].split(b":")[1])


def test_cmgs_cancel_and_bad_pdus(sim: Simulator, at: ATClient) -> None:
    at.serial.write(b"AT+CMGS=20\r")
    at.read_until(b"> ")
    at.serial.write(b"0011\x1b")
    assert at.read_line() == b"OK"
    (part,) = encodeSmsSubmitPdu(CITIZEN, "x")
    assert at.command(f"AT+CMGS={part.tpduLength + 1}", prompt_data=str(part)) == \
        [b"+CMS ERROR: 304"]
    assert at.command("AT+CMGS=10", prompt_data="00110Z") == [b"+CMS ERROR: 304"]
    assert sim.submitted == []
    assert len(sim.modems[0].rejected) == 2


def test_ussd_balance(sim: Simulator, at: ATClient) -> None:
    assert at.command('AT+CUSD=1,"*123#",15') == [b"OK"]
    assert at.wait_line(b"+CUSD:") == \
        b'+CUSD: 0,"Your balance is Rs.123.45. Jazz: dial *117# for offers.",15'


def test_huawei_vendor_commands(sim: Simulator) -> None:
    with client_for(sim, 2) as huawei:
        assert huawei.command("AT^CURC=0") == [b"OK"]
        assert huawei.command("AT^CURC?") == [b"^CURC: 0", b"OK"]
        assert huawei.command("ATI")[0] == b"Manufacturer: huawei"
        assert huawei.command("AT+CNMI?") == [b"+CNMI: 0,0,0,0,0", b"OK"]
