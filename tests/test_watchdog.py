"""The systemd watchdog sees a stuck modem owner.

A modem's owner thread refreshes its heartbeat while it works or waits; a handler call that
never returns stops it, :meth:`Service.watchdog_check` then reports the unit not well (so
``run_forever`` stops sending ``WATCHDOG=1`` and systemd restarts the unit), and the pings
resume once the owner moves again. Real simulator, real service; the only thing made to
hang is the registry lookup, as a dead disk would.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path
from typing import Any

import pytest

from appliance.modem.engine import ModemState
from appliance.registry.importer import demo_cnics
from tests.conftest import unit_config, wait_until

CITIZEN = "+923001112233"


def test_a_stuck_owner_stops_the_watchdog_until_it_moves_again(
        tmp_path: Path, sim: Any, sample_registry: Path, monkeypatch: pytest.MonkeyPatch,
        caplog: pytest.LogCaptureFixture) -> None:
    from appliance.service.unit import Service

    config = unit_config(tmp_path, sim, modem_overrides={"send_timeout_s": 5.0,
                                                         "command_timeout_s": 2.0})
    svc = Service(config, watchdog_grace_s=1.0)  # stuck = no heartbeat for 5 + 2 + 1 s
    entered, release = threading.Event(), threading.Event()
    lookup = svc.registry.lookup

    def hang(cnic: str) -> Any:
        entered.set()
        release.wait(60)
        return lookup(cnic)

    monkeypatch.setattr(svc.registry, "lookup", hang)
    svc.start()
    try:
        assert wait_until(lambda: all(m.status().state == ModemState.READY
                                      for m in svc.modems.values()), 15)
        assert svc.watchdog_check()[0]

        sim.citizen_send(CITIZEN, 0, demo_cnics().hits[0])
        assert entered.wait(15), "the owner never reached the lookup"
        with caplog.at_level(logging.ERROR, logger="appliance.service.unit"):
            assert wait_until(lambda: not svc.watchdog_check()[0], 15)
        assert f"modem {sim.modems[0].name} owner stuck" in caplog.text
        assert f"modem {sim.modems[1].name} owner stuck" not in caplog.text

        release.set()
        assert wait_until(lambda: svc.watchdog_check()[0], 15)
        assert wait_until(lambda: len(sim.inbox(CITIZEN)) == 1, 15), "the SMS was not answered"
    finally:
        release.set()
        svc.stop()
