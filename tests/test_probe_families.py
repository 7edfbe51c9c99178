"""``probe`` (and so ``doctor``) on the new modem families, through real ptys: it reads the
registration as the engine does (an LTE module "SMS only" is registered) and the SIM's own
number from +CNUM."""

from __future__ import annotations

from pathlib import Path

from appliance.simulator.bank import ModemSpec, Simulator
from appliance.tools.probe import probe_all


def test_probe_reads_sms_only_registration_and_number(tmp_path: Path) -> None:
    specs = [ModemSpec(profile=p) for p in ("ublox_lte", "cinterion", "sim800")]
    with Simulator(tmp_path / "ports", specs, seed=5) as sim:
        results = probe_all([m.port for m in sim.modems], timeout=3.0)
    for res, m in zip(results, sim.modems):
        assert res.answered, res
        assert res.registered, (m.profile.name, res.network, res.notes)
        assert res.number == m.number
    lte = results[0]
    assert lte.creg == 6 and "SMS only" in lte.network
    assert results[2].creg == 1 and not results[2].notes, results[2].notes
