"""The simulated network: citizens → modems, modems → handsets, capture and reassembly."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from gsmmodem.pdu import encodeSmsSubmitPdu
from smspdudecoder.easy import read_incoming_sms

from appliance.simulator.client import ATClient
from appliance.simulator.bank import ModemSpec, Simulator

CITIZEN = "+923001234567"
URDU = ("خبردار! احمد ولد محمود سزا یافتہ مجرم ہے۔ اسے بچوں اور خواتین کے قریب نہ آنے دیں۔ "
        "خبردار! اکرم ولد اسلم سزا یافتہ مجرم ہے۔")
# A real phone's SMS-DELIVER, from gammu's tests/at-sms/03.dump (+CMGR: 1,,25).
REAL_PDU = "0791198948004544040C9119894882006200007050307040042206CF35689E9603"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(tmp_path, 3, profile="sim800,ec25", time_scale=0.01) as simulator:
        yield simulator


def client(sim: Simulator, index: int) -> ATClient:
    c = ATClient(sim.modems[index].port)
    c.command("ATE0;+CMEE=1")
    return c


def send_parts(c: ATClient, number: str, text: str, order: list[int] | None = None,
               reference: int = 7) -> None:
    parts = encodeSmsSubmitPdu(number, text, reference=reference)
    for i in order or range(len(parts)):
        lines = c.command(f"AT+CMGS={parts[i].tpduLength}", prompt_data=str(parts[i]))
        assert lines[-1] == b"OK", lines


def test_concatenated_urdu_arrives_as_parts_with_one_cmti_each(sim: Simulator) -> None:
    with client(sim, 0) as c:
        sim.citizen_send(CITIZEN, "sim0", URDU)
        indexes = [c.wait_line(b"+CMTI:"), c.wait_line(b"+CMTI:")]  # both, though one burst
        assert indexes == [b'+CMTI: "SM",1', b'+CMTI: "SM",2']
        decoded = [read_incoming_sms(c.command(f"AT+CMGR={i}")[1].decode()) for i in (1, 2)]
    assert "".join(d["content"] for d in decoded) == URDU
    assert decoded[0]["partial"]["parts_count"] == 2
    assert sim.deliveries_count() == 2


def test_submitted_parts_are_captured_and_reassembled(sim: Simulator) -> None:
    with client(sim, 1) as c:
        send_parts(c, CITIZEN, URDU, order=[1, 0])  # the network may reorder; handsets cope
        send_parts(c, CITIZEN, "short one")
    assert sim.inbox(CITIZEN) == [URDU, "short one"]
    parts = sim.submitted
    assert [(p.modem, p.concat.seq if p.concat else None) for p in parts] == \
        [("sim1", 2), ("sim1", 1), ("sim1", None)]
    assert [p.mr for p in parts] == [1, 2, 3]
    assert all(p.recipient == CITIZEN and p.pdu for p in parts)
    message = sim.inbox_messages(CITIZEN)[0]
    assert (message.sender, message.modem, message.parts) == (sim.modems[1].number, "sim1", 2)


def test_recipient_numbers_are_not_quietly_corrected(sim: Simulator) -> None:
    with client(sim, 0) as c:
        send_parts(c, "03001234567", "national format")
        send_parts(c, "923001234567", "no plus sign")  # TON unknown: another destination
    assert sim.inbox(CITIZEN) == ["national format"]
    assert sim.inbox("923001234567") == ["no plus sign"]


def test_modem_to_modem(sim: Simulator) -> None:
    with client(sim, 0) as c:
        send_parts(c, sim.modems[2].number, "between SIMs")
    assert sim.wait_for(lambda: sim.modems[2].stored(), timeout=5)
    (stored,) = sim.modems[2].stored()
    assert (stored.sender, stored.text) == (sim.modems[0].number, "between SIMs")


def test_raw_pdu_from_a_real_phone(sim: Simulator) -> None:
    with client(sim, 0) as c:
        sim.store_pdu("sim0", REAL_PDU)
        c.wait_line(b'+CMTI: "SM",1')
        assert c.command("AT+CMGR=1")[:2] == [b"+CMGR: 0,,25", REAL_PDU.encode()]


def test_store_only_before_start_and_concurrent_senders(tmp_path: Path) -> None:
    sim = Simulator(tmp_path, [ModemSpec(sim_capacity=50), ModemSpec(sim_capacity=50)],
                    time_scale=0.01)
    sim.citizen_send(CITIZEN, 0, "on the SIM already", store_only=True)
    with sim:
        with client(sim, 0) as c:
            assert c.command("AT+CMGL=4")[0].startswith(b"+CMGL: 1,0,,")
        threads = [threading.Thread(target=lambda n=n: [
            sim.citizen_send(f"+92300111000{n}", n % 2, f"msg {n}.{k}") for k in range(10)])
            for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert sim.deliveries_count() == 41
        assert len(sim.modems[0].stored()) == 21 and len(sim.modems[1].stored()) == 20
        assert sim.wait_for(lambda: False, timeout=0.05) is False
