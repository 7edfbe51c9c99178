"""Alarms reach the technician's phone by SMS, once per kind per interval: a modem that
flaps (unplugged, back, unplugged …) must not flood them. Real Service, simulated modems,
the technician's handset inbox on the simulated network."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from tests.conftest import unit_config, wait_until

TECHNICIAN = "+923009998877"


def test_modem_down_sends_one_alarm_sms_and_a_blink_sends_none(
        tmp_path: Path, sim: Any, sample_registry: Path) -> None:
    from appliance.service.unit import Service
    from appliance.state.store import Outbound

    svc = Service(unit_config(tmp_path, sim, alarms={"sms_numbers": [TECHNICIAN],
                                                     "min_interval_minutes": 1}),
                  modem_down_alarm_after_s=2.0, health_check_s=0.3)
    svc.start()
    modem = svc.modems["sim0"]
    try:
        assert wait_until(lambda: all(m.status().state == "ready"
                                      for m in svc.modems.values()), 20)
        # A blink (replugged at once) is no alarm: it is debounced.
        sim.modems[0].unplug()
        assert wait_until(lambda: modem.status().state == "gone", 10)
        sim.modems[0].replug()
        assert wait_until(lambda: modem.status().state == "ready", 20)
        assert svc.alarms.raised_total.get("modem_down:sim0", 0) == 0
        # Down for good: raised at every health check, but one SMS per interval.
        sim.modems[0].unplug()
        assert wait_until(lambda: svc.alarms.raised_total.get("modem_down:sim0", 0) >= 3, 20)

        def about_sim0() -> list[str]:
            return [t for t in sim.inbox(TECHNICIAN) if "modem_down:sim0" in t]
        assert wait_until(about_sim0, 20), sim.inbox(TECHNICIAN)
        rows = list(Outbound.select().where((Outbound.kind == "alarm")
                                            & Outbound.text.contains("modem_down:sim0")))
        assert len(rows) == 1 and rows[0].status in ("sent", "delivered")
        assert len(about_sim0()) == 1
        # The header names the unit and the running release (conftest's unit is "test").
        from appliance import __version__
        assert about_sim0()[0].startswith(
            f"NSOR test {__version__} alarm modem_down:sim0: modem sim0 is gone")
        sim.modems[0].replug()
        assert wait_until(lambda: "modem_down:sim0" not in
                          {a.kind for a in svc.alarms.active()}, 20)  # cleared
    finally:
        svc.stop()
