"""Run-time faults of simulated modems, including unplug and replug, seen from a client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import serial
from gsmmodem.pdu import encodeSmsSubmitPdu

from appliance.errors import ModemTimeout
from appliance.simulator.client import ATClient
from appliance.simulator.bank import ModemSpec, Simulator

CITIZEN = "+923001234567"


@pytest.fixture
def sim(tmp_path: Path) -> Iterator[Simulator]:
    with Simulator(tmp_path, [ModemSpec(sim_capacity=2), ModemSpec(profile="ec25")],
                   time_scale=0.001) as simulator:
        yield simulator


@pytest.fixture
def at(sim: Simulator) -> Iterator[ATClient]:
    with ATClient(sim.modems[0].port, timeout=3) as client:
        client.command("ATE0;+CMEE=1")
        yield client


def send(client: ATClient, text: str) -> list[bytes]:
    (part,) = encodeSmsSubmitPdu(CITIZEN, text)
    return client.command(f"AT+CMGS={part.tpduLength}", prompt_data=str(part))


def test_latency_and_slow_prompt_are_time_scaled(sim: Simulator, at: ATClient) -> None:
    faults = sim.modems[0].faults
    faults.cmgs_latency, faults.cmgs_jitter, faults.slow_prompt = 200.0, 100.0, 100.0
    lines = send(at, "slow network")  # 0.2-0.3 s and 0.1 s at time_scale 0.001
    assert lines[0].startswith(b"+CMGS: ") and lines[-1] == b"OK"
    assert sim.inbox(CITIZEN) == ["slow network"]


def test_cms_errors_at_a_rate(sim: Simulator, at: ATClient) -> None:
    sim.modems[0].faults.cms_error_rate = 1.0
    sim.modems[0].faults.cms_error_code = 38
    assert send(at, "fails") == [b"+CMS ERROR: 38"]
    assert sim.submitted == []
    sim.modems[0].faults.cms_error_rate = 0.0
    assert send(at, "works")[-1] == b"OK"


def test_hang_then_recover(sim: Simulator, at: ATClient) -> None:
    sim.modems[0].faults.hang = True
    with pytest.raises(ModemTimeout):
        at.command("AT", timeout=0.3)
    sim.citizen_send(CITIZEN, 0, "arrives while hung")  # stored; its +CMTI is lost
    assert sim.wait_for(lambda: sim.modems[0].dropped_urcs >= 1, timeout=5)
    sim.modems[0].faults.hang = False
    at.buffer.clear()
    assert at.command("AT") == [b"OK"]
    assert sim.modems[0].stored()[0].text == "arrives while hung"


def test_dropped_cmti(sim: Simulator, at: ATClient) -> None:
    sim.modems[0].faults.drop_cmti_rate = 1.0
    sim.citizen_send(CITIZEN, 0, "silent arrival")
    assert sim.wait_for(lambda: sim.modems[0].dropped_urcs == 1, timeout=5)
    assert at.command("AT") == [b"OK"]
    assert not any(b"+CMTI" in line for line in at.unsolicited)
    assert at.command("AT+CMGL=4")[0].startswith(b"+CMGL: 1,0,,")


def test_urc_inside_a_response(sim: Simulator, at: ATClient) -> None:
    sim.modems[0].faults.urc_in_response = True
    sim.citizen_send(CITIZEN, 0, "arrives mid-response")
    assert sim.wait_for(lambda: sim.modems[0].stored(), timeout=5)
    assert at.command("AT+CPMS?") == [b'+CPMS: "SM",1,2,"SM",1,2,"SM",1,2',
                                      b'+CMTI: "SM",1', b"OK"]
    noise = at.command("AT")  # nothing pending: the profile's noise instead
    assert noise[0].startswith(b"*PSUTTZ") and noise[-1] == b"OK"


def test_non_utf8_byte(sim: Simulator, at: ATClient) -> None:
    sim.modems[0].faults.non_utf8 = True
    assert b"\xff" in at.command("ATI")[0]
    at.command('AT+CUSD=1,"*123#",15')
    line = at.wait_line(b"+CUSD:")
    assert b"\xff" in line
    with pytest.raises(UnicodeDecodeError):
        line.decode("utf-8")


def test_loss_of_registration(sim: Simulator, at: ATClient) -> None:
    modem = sim.modems[0]
    at.command("AT+CREG=1")
    modem.faults.registered = False
    assert at.wait_line(b"+CREG:") == b"+CREG: 0"
    assert at.command("AT+CREG?") == [b"+CREG: 1,0", b"OK"]
    assert send(at, "no network") == [b"+CMS ERROR: 331"]
    sim.citizen_send(CITIZEN, 0, "held by the network")
    assert sim.deferred_count() == 1 and modem.stored() == []
    modem.faults.registered = True
    assert at.wait_line(b"+CREG:") == b"+CREG: 1"
    assert at.wait_line(b"+CMTI:") == b'+CMTI: "SM",1'


def test_sim_full_waits_in_the_network(sim: Simulator, at: ATClient) -> None:
    modem = sim.modems[0]
    for text in ("first", "second", "third"):
        sim.citizen_send(CITIZEN, 0, text)
    assert [m.text for m in modem.stored()] == ["first", "second"]
    assert sim.deferred_count() == 1 and sim.deliveries_count() == 2
    at.command("AT+CMGD=1")
    assert sim.wait_for(lambda: [m.text for m in modem.stored()] == ["third", "second"], 5)
    modem.faults.sim_full = True
    sim.citizen_send(CITIZEN, 0, "fourth")
    at.command("AT+CMGD=1,4")
    assert modem.stored() == []  # still "full": the fault holds it back
    modem.faults.sim_full = False
    assert [m.text for m in modem.stored()] == ["fourth"]
    modem.sim_capacity = 5
    assert modem.sim_capacity == 5
    assert b'+CPMS: "SM",1,5,"SM",1,5,"SM",1,5' in at.command("AT+CPMS?")


def test_unplug_and_replug(sim: Simulator) -> None:
    modem = sim.modems[1]
    link = Path(modem.port)
    before = os.readlink(link)
    client = ATClient(modem.port, timeout=2)
    client.command("ATE0")
    modem.unplug()
    assert not link.exists() and not modem.plugged
    with pytest.raises((serial.SerialException, OSError, ModemTimeout)):
        client.command("AT")  # the pty is gone: EIO, as when USB goes away
    client.close()
    sim.citizen_send(CITIZEN, 1, "sent while unplugged")
    assert sim.network.pending(modem) == 1
    modem.replug()
    assert link.is_symlink() and modem.plugged
    assert sim.wait_for(lambda: modem.stored(), timeout=5)  # the SMSC retried
    with ATClient(modem.port, timeout=2) as again:
        assert again.command("AT")[-1] == b"OK"  # possibly after the boot URCs (RDY …)
        again.command("ATE0")
        assert again.command("AT+CMGR=0")[0].startswith(b"+CMGR: 0,,")
    assert os.readlink(link).startswith("/dev/pts/") and before.startswith("/dev/pts/")
