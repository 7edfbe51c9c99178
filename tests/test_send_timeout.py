"""A send that outlives its timeout, and the resync after it, never sends a part twice.

The network may take longer than ``send_timeout_s`` to accept an ``AT+CMSS``; the modem is
then silent until it has. If the sender's own resync gives up before the modem answers, the
part stays "stored" with its fate unknown, and the reply comes back on the same SIM about
a second later. The engine's resync then succeeds, and before the reply resumes the slot
must be asked (``<stat>`` 3, "stored sent"): sent again blindly, the citizen gets the part
twice.
"""

from __future__ import annotations

from pathlib import Path

from appliance.registry.importer import demo_cnics
from appliance.simulator.bank import Simulator
from tests.conftest import wait_until
from tests.test_faults import running_service

CITIZEN = "+923001234567"


def test_a_part_that_left_during_a_timeout_is_not_sent_again(
        tmp_path: Path, sample_registry: Path) -> None:
    with Simulator(tmp_path / "ports", 1, seed=3) as sim:
        modem = sim.modems[0]
        # Accepted by the network 9.5 s after AT+CMSS: past send_timeout_s (5 s) and the
        # sender's own resync (3 s), within the engine's resync after it.
        modem.faults.cmgs_latency = 14.0
        with running_service(tmp_path, sim, modem_overrides={"send_timeout_s": 5.0}) as svc:
            sim.citizen_send(CITIZEN, 0, demo_cnics().misses[0])
            assert wait_until(lambda: len(sim.submitted) >= 1, 30), "nothing was sent"
            modem.faults.cmgs_latency = 0.0
            assert wait_until(lambda: sum(
                svc.store.counts()["outbound"].get(st, 0) for st in ("sent", "delivered")) == 1,
                30), svc.store.counts()
            # A resend, if any, comes about a second after the resync: give it three.
            assert not wait_until(lambda: len(sim.submitted) > 1, 3), sim.submitted
            assert len(sim.inbox(CITIZEN)) == 1, sim.inbox(CITIZEN)
