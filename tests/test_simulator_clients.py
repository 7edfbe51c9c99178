"""Fidelity against python-gsmmodem-new: its connect() probes the minimum AT surface the
field notes list, on every simulated family (no Debian tools needed, so it always runs)."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest
from gsmmodem.modem import GsmModem

from appliance.simulator.client import ATClient
from appliance.simulator.bank import Simulator

CITIZEN = "+923001234567"


@pytest.mark.parametrize("profile", ["sim800", "ec25", "huawei"])
def test_python_gsmmodem_connects_sends_and_receives(tmp_path: Path, profile: str) -> None:
    received: list[str] = []
    with Simulator(tmp_path, 1, profile=profile, time_scale=0.01) as sim:
        # The library always asks for status reports (docs/field-notes.md B10) and reads only the
        # first +CDSI of a burst (B2); keep reports out of this test so it ends cleanly.
        sim.modems[0].faults.report_delay = 1e9
        modem = GsmModem(sim.modems[0].port, 115200,
                         smsReceivedCallbackFunc=lambda sms: received.append(sms.text))
        modem.connect()
        try:
            modem.sendSms(CITIZEN, "سلام دنیا " * 10)  # two UCS-2 parts
            sim.citizen_send(CITIZEN, 0, "35202-1234567-1")
            assert sim.wait_for(lambda: received, timeout=5)
            # the library deletes after its callback; let it finish before closing the port
            assert sim.wait_for(lambda: not sim.modems[0].stored(), timeout=5)
        finally:
            for thread in threading.enumerate():  # its URC handlers still at work
                if thread.name.endswith("(__threadedHandleModemNotification)"):
                    thread.join(timeout=5)
            modem.close()
        assert sim.inbox(CITIZEN) == ["سلام دنیا " * 10]
        assert received == ["35202-1234567-1"]


def test_power_cycle_commands(tmp_path: Path) -> None:
    with Simulator(tmp_path, 1, time_scale=0.01) as sim, ATClient(sim.modems[0].port) as at:
        at.command("ATE0;+CMEE=1")
        assert at.command("AT+CFUN=4") == [b"OK"]  # flight mode: no radio, no network
        assert at.command("AT+CSQ") == [b"+CSQ: 99,0", b"OK"]
        assert at.command("AT+COPS?") == [b"+COPS: 0", b"OK"]
        assert at.command("AT+CFUN=1,1") == [b"OK"]  # answers, then reboots
        at.wait_line(b"SMS Ready")
        at.serial.write(b"AT\r")
        assert at.read_until(b"OK\r\n").startswith(b"AT\r")  # echo is back on after a reboot
        assert at.command("AT+CSQ") == [b"+CSQ: 17,0", b"OK"]
