"""The whole service on every simulated modem family (appliance.simulator.profiles): it
reaches ``ready`` and answers a hit, a no-record and a multi-part reply, checked with an
independent decoder. The LTE module registered "SMS only" (+CREG 6, +CGREG 0, +CEREG 1,
unquoted location codes) and the Cinterion module that allows only <bfr> 1 are the two
that kept citizens unanswered before (issue 18)."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from appliance.rules.cnic import format_cnic
from appliance.simulator.profiles import PROFILES
from appliance.registry.importer import demo_cnics
from tests.conftest import unit_config, wait_until
from tests.test_service_e2e import expected_reply, independent_texts

CNICS = demo_cnics()


@pytest.fixture(params=sorted(PROFILES))
def family(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture
def bank(tmp_path: Path, family: str) -> Iterator[Any]:
    from appliance.simulator.bank import Simulator

    s = Simulator(tmp_path / "ports", 2, profile=family, seed=3)
    s.start()
    try:
        yield s
    finally:
        s.stop()


@pytest.fixture
def unit(tmp_path: Path, bank: Any, sample_registry: Path,
         caplog: pytest.LogCaptureFixture) -> Iterator[Any]:
    from appliance.service.unit import Service

    caplog.set_level(logging.INFO, logger="appliance.modem")
    svc = Service(unit_config(tmp_path, bank))
    svc.start()
    try:
        yield svc
    finally:
        svc.stop()


def test_every_family_answers_hit_miss_and_multipart(unit: Any, bank: Any, family: str,
                                                     sample_registry: Path,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    names = [m.name for m in bank.modems]
    assert wait_until(lambda: all(unit.modems[n].status().state == "ready" for n in names),
                      20), {n: unit.modems[n].status() for n in names}
    cases = [("+923001110001", 0, format_cnic(CNICS.hits[0])),
             ("+923001110002", 1, CNICS.misses[0]),
             ("+923001110003", 0, f"{CNICS.hits[0]} {CNICS.hits[1]}")]
    for who, modem, text in cases:
        bank.citizen_send(who, modem, text)
    for who, _, text in cases:
        assert wait_until(lambda: len(bank.inbox(who)) == 1, 20), (family, who)
        want = expected_reply(sample_registry, text)
        assert bank.inbox(who) == [want]
        assert independent_texts(bank, who) == [want]
    multipart = [s for s in bank.submitted if s.modem == names[0]]
    assert len(multipart) >= 3, "the two-hit reply is more than one part"
    # The +CNMI choice is logged, and it is one the modem offered.
    offered = PROFILES[family].cnmi_allowed()
    chosen = [r.getMessage() for r in caplog.records if r.getMessage().startswith("AT+CNMI=")]
    assert chosen, "the +CNMI choice is not logged"
    values = [int(v) for v in chosen[0].split()[0].split("=")[1].split(",")]
    assert all(v in allowed for v, allowed in zip(values, offered)), (chosen[0], offered)
    for n in names:
        assert unit.modems[n].status().registered


@pytest.mark.parametrize("family", ["ublox_lte"])
def test_lte_sms_only_module_follows_registration_urcs(tmp_path: Path, bank: Any, family: str,
                                                       sample_registry: Path) -> None:
    """Radio off and on, with the health check out of the way (an hour apart), so only the
    URCs can move the state: +CREG 0 / +CEREG 0, then "+CREG: 6, 0FA1, 1B2C,7" and
    "+CEREG: 1, 00A1, 01A2D001,7" (unquoted, with spaces). The modem goes out of service
    and comes back "SMS only", and answers."""
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, bank, modem_overrides={"health_interval_s": 3600}))
    svc.start()
    try:
        m = bank.modems[0]
        status = svc.modems[m.name].status
        assert wait_until(lambda: status().state == "ready", 20)
        m.faults.registered = False
        assert wait_until(lambda: status().state == "no network", 10)
        m.faults.registered = True
        assert wait_until(lambda: status().state == "ready", 10)
        assert "SMS only" in status().network
        assert any(c.upper() in ("+CREG=2", "AT+CREG=2") for c in m.commands())
        bank.citizen_send("+923001110009", 0, CNICS.misses[1])
        assert wait_until(lambda: len(bank.inbox("+923001110009")) == 1, 20)
    finally:
        svc.stop()


@pytest.mark.parametrize("family", ["huawei", "ec25"])
def test_balance_by_ussd_in_the_family_encoding(tmp_path: Path, bank: Any, family: str,
                                                sample_registry: Path) -> None:
    """The Huawei stick takes the USSD code packed as GSM-7 hex (families.py says so; its
    simulator refuses text with +CUSD: 4); the EC25 takes text. Both report the balance."""
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, bank, modem_overrides={
        "balance_ussd": "*123#", "balance_pattern": r"Rs\.?\s*([0-9.]+)"}))
    svc.start()
    try:
        name = bank.modems[0].name
        assert wait_until(lambda: svc.modems[name].status().balance is not None, 20), \
            svc.modems[name].status()
        assert svc.modems[name].status().balance == pytest.approx(123.45)
        sent = [c for c in bank.modems[0].commands() if "+CUSD=1" in c.upper()]
        assert sent and sent[0].endswith('"AA986C3602",15' if family == "huawei"
                                         else '"*123#",15'), sent
    finally:
        svc.stop()


@pytest.mark.parametrize("family", ["ublox_lte", "cinterion"])
def test_the_issue_18_crowd_is_answered(unit: Any, bank: Any, family: str,
                                        sample_registry: Path, request: pytest.FixtureRequest,
                                        record_property: Any) -> None:
    """The measurement the issue reports (35 of 35 citizens unanswered on two such modems),
    repeated: 35 citizens over the two modems, every one answered with the exact reply."""
    from tests.fault_support import show_figures

    names = [m.name for m in bank.modems]
    assert wait_until(lambda: all(unit.modems[n].status().state == "ready" for n in names),
                      20)
    crowd = {f"+9230022{i:05d}": (CNICS.hits + CNICS.misses)[i % 6] for i in range(35)}
    for i, (who, cnic) in enumerate(crowd.items()):
        bank.citizen_send(who, i % 2, format_cnic(cnic))
    wait_until(lambda: all(bank.inbox(w) for w in crowd), 60)
    answered = sum(1 for w in crowd if bank.inbox(w))
    wrong = sum(1 for w, c in crowd.items()
                if bank.inbox(w) and bank.inbox(w) != [expected_reply(sample_registry,
                                                                      format_cnic(c))])
    show_figures(request, record_property, f"profile[{family}]",
                 {"citizens": len(crowd), "answered": answered, "wrong": wrong})
    assert (answered, wrong) == (35, 0)
