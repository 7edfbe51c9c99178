"""``nsor balance`` and ``nsor ussd`` as a technician runs them: subprocesses talking to a
real running Service (its control socket) on simulated modems, whose operators answer
USSD as their profile says."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import unit_config, wait_until, write_unit_toml
from tests.test_techcli import closed_port, nsor

PATTERN = r"Rs\.?\s*([0-9.,]+)"


@pytest.fixture
def balance_unit(tmp_path: Path, sim: Any, sample_registry: Path) -> Iterator[tuple[Any, Path]]:
    from appliance.service.unit import Service

    sim.modems[0].balance = 42.5
    sim.modems[1].balance = 7.25
    # The periodic check is put off for hours: every answer below is the command's.
    svc = Service(unit_config(tmp_path, sim, modem_overrides={
        "balance_ussd": "*123#", "balance_pattern": PATTERN,
        "balance_interval_minutes": 600}))
    svc.start()
    try:
        assert wait_until(lambda: all(m.status().state == "ready"
                                      for m in svc.modems.values()), 20)
        config = write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                                 http_bind=closed_port())
        yield svc, config
    finally:
        svc.stop()


def test_balance_asks_every_modem_through_the_service(balance_unit: tuple[Any, Path],
                                                      sim: Any) -> None:
    svc, config = balance_unit
    proc = nsor("balance", "--config", str(config))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "answer: 'Your balance is Rs.42.50. Jazz: dial *117# for offers.'" in proc.stdout
    assert "amount: 42.50 (balance_pattern" in proc.stdout
    assert "amount: 7.25" in proc.stdout
    # The answer is the modem's last balance now: status and the snapshot show it.
    snap = svc.snapshot()
    assert [m["balance"] for m in snap["modems"]] == [42.5, 7.25]
    assert all(m["balance_at"] for m in snap["modems"])
    one = json.loads(nsor("balance", "sim1", "--json", "--config", str(config)).stdout)
    assert [r["modem"] for r in one] == ["sim1"] and one[0]["amount"] == 7.25
    # The service sent the code; nobody else opened the port.
    assert sum('+CUSD=1,"*123#",15' in c for c in sim.modems[1].commands()) >= 2


def test_ussd_prints_the_raw_answer_and_what_the_pattern_finds(
        balance_unit: tuple[Any, Path], sim: Any) -> None:
    _, config = balance_unit
    proc = nsor("ussd", "sim0", "*999#", "--config", str(config))
    assert proc.returncode == 0, proc.stderr
    assert "answer: 'Invalid request. Please dial *123# for balance.'" in proc.stdout
    assert "amount: NOT FOUND: balance_pattern" in proc.stdout
    bad = nsor("ussd", "sim0", '*1#",15;+CFUN=0', "--config", str(config))
    assert bad.returncode == 1 and "is not a USSD code" in bad.stderr
    assert not any("CFUN=0" in c for c in sim.modems[0].commands())
    unknown = nsor("ussd", "sim9", "*123#", "--config", str(config))
    assert unknown.returncode == 2 and "sim9" in unknown.stderr


def test_balance_without_the_service_says_so(tmp_path: Path, sim: Any) -> None:
    config = write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                             http_bind=closed_port())
    (tmp_path / "data").mkdir(exist_ok=True)
    proc = nsor("balance", "--config", str(config))
    assert proc.returncode == 3
    assert "the service is not running" in proc.stderr and "systemctl start" in proc.stderr
