"""Fidelity of the simulator judged by a real AT client nobody here wrote: Debian's gammu.

gammu probes a modem the way field tools do (identification, charset and storage
queries, PDU-mode send and list); if it works against every simulated family, the
simulator answers as real modems do and the appliance is tested against something real.
"""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

from appliance.simulator.bank import Simulator

GAMMU = "/usr/bin/gammu"
URDU = "خبردار! احمد ولد محمود سزا یافتہ مجرم ہے۔"  # one UCS-2 part (41 characters)
URDU_LONG = URDU + " اسے بچوں اور خواتین کے قریب نہ آنے دیں۔"  # two parts
CITIZEN = "+923001234567"

pytestmark = [
    pytest.mark.gammu,
    pytest.mark.skipif(shutil.which(GAMMU) is None and not Path(GAMMU).exists(),
                       reason="gammu is not installed (apt-get install gammu)"),
]


def _gammu(tmp_path: Path, port: str, *args: str) -> subprocess.CompletedProcess[str]:
    rc = tmp_path / "gammurc"
    rc.write_text(f"[gammu]\ndevice = {port}\nconnection = at\n"
                  f"logfile = {tmp_path / 'gammu.log'}\nlogformat = textall\n")
    result = subprocess.run([GAMMU, "-c", str(rc), *args], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, (
        f"gammu {' '.join(args)} failed ({result.returncode}): {result.stdout}{result.stderr}\n"
        f"log tail: {(tmp_path / 'gammu.log').read_text(errors='replace')[-3000:]}")
    return result


# gammu sleeps ~0.4 s per init step (measured with strace: ~4 s a run), so only the SIM800
# family runs by default; the other families run with the slow suite.
@pytest.fixture(params=["sim800", pytest.param("ec25", marks=pytest.mark.slow),
                        pytest.param("huawei", marks=pytest.mark.slow)])
def sim(request: pytest.FixtureRequest, tmp_path: Path) -> Simulator:
    with Simulator(tmp_path / "ports", modems=1, profile=request.param,
                   time_scale=0.01) as simulator:
        yield simulator


def test_identify(sim: Simulator, tmp_path: Path) -> None:
    modem = sim.modems[0]
    out = _gammu(tmp_path, modem.port, "identify").stdout
    assert modem.profile.manufacturer in out
    assert modem.imei in out
    assert modem.imsi in out


def test_sendsms_unicode_reaches_the_handset_exactly(sim: Simulator, tmp_path: Path) -> None:
    _gammu(tmp_path, sim.modems[0].port, "sendsms", "TEXT", CITIZEN, "-unicode", "-text", URDU)
    assert sim.wait_for(lambda: sim.inbox(CITIZEN), timeout=10)
    assert sim.inbox(CITIZEN) == [URDU]
    (part,) = sim.submitted
    assert part.text == URDU and part.submit.user_data.alphabet == "ucs2"


def test_sendsms_concatenated_unicode_is_reassembled(sim: Simulator, tmp_path: Path) -> None:
    _gammu(tmp_path, sim.modems[0].port, "sendsms", "TEXT", CITIZEN, "-unicode",
           "-autolen", str(len(URDU_LONG)), "-text", URDU_LONG)
    assert sim.wait_for(lambda: sim.inbox(CITIZEN), timeout=10)
    assert sim.inbox(CITIZEN) == [URDU_LONG]
    assert [p.concat.seq for p in sim.submitted if p.concat] == [1, 2]


def test_getallsms_reads_what_citizens_sent(sim: Simulator, tmp_path: Path) -> None:
    sim.citizen_send(CITIZEN, 0, "35202-1234567-1")
    sim.citizen_send("+923459876543", 0, "ایک سو روپے")
    assert sim.wait_for(lambda: len(sim.modems[0].stored()) == 2, timeout=5)
    out = _gammu(tmp_path, sim.modems[0].port, "getallsms").stdout
    assert f'Remote number        : "{CITIZEN}"' in out
    assert "35202-1234567-1" in out
    assert '"+923459876543"' in out
    assert "ایک سو روپے" in out
