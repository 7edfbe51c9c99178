"""The monitoring files shipped in firmware_config/monitoring/: the Prometheus alert rules
(checked and unit-tested by promtool from Debian's prometheus package) and the Grafana
dashboard (its structure, and every metric name in its queries and in the rules against a
real scrape of a unit on simulated modems)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.parser import text_string_to_metric_families

from appliance.registry.importer import demo_cnics
from appliance.status.server import StatusServer
from tests.conftest import unit_config, wait_until
from tests.test_statuspage import CITIZEN, all_ready, get

MONITORING = Path(__file__).resolve().parent.parent / "firmware_config" / "monitoring"
RULES = MONITORING / "nsor-alerts.yml"
DASHBOARD = MONITORING / "grafana-dashboard.json"

#: PromQL words that are not metric names.
PROMQL_WORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "and",
                "or", "unless", "offset", "inf", "nan"}
#: Metrics that Prometheus makes itself for every target.
SCRAPE_METRICS = {"up", "scrape_duration_seconds", "scrape_samples_scraped"}


def promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        if os.environ.get("CI"):
            pytest.fail("promtool is missing: .ci/run extracts it from Debian's prometheus")
        pytest.skip("promtool not installed (Debian: the prometheus package ships it)")
    return path


def test_promtool_checks_the_alert_rules() -> None:
    proc = subprocess.run([promtool(), "check", "rules", str(RULES)], capture_output=True,
                          text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS" in proc.stdout


def test_promtool_unit_tests_of_the_alerts_pass() -> None:
    proc = subprocess.run([promtool(), "test", "rules", "nsor-alerts.test.yml"],
                          cwd=MONITORING, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr


def test_a_wrong_alert_expectation_fails_promtool(tmp_path: Path) -> None:
    """The unit test above can fail: the same test with one wrong label does."""
    tests = (MONITORING / "nsor-alerts.test.yml").read_text()
    (tmp_path / "nsor-alerts.yml").write_text(RULES.read_text())
    (tmp_path / "t.yml").write_text(tests.replace("modem: sim1", "modem: sim9", 1))
    proc = subprocess.run([promtool(), "test", "rules", "t.yml"], cwd=tmp_path,
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode != 0 and "NsorCreditLow" in proc.stdout + proc.stderr


# -- the dashboard's structure ---------------------------------------------------------------

def dashboard() -> dict[str, Any]:
    return dict(json.loads(DASHBOARD.read_text(encoding="utf-8")))


def test_dashboard_structure() -> None:
    """What Grafana needs to import the file (a dashboard of schemaVersion 39, Grafana 10
    and later) and what makes it usable on a 24-column grid."""
    d = dashboard()
    assert isinstance(d["uid"], str) and re.fullmatch(r"[A-Za-z0-9_-]{1,40}", d["uid"])
    assert d["title"] and d["schemaVersion"] >= 36 and "id" not in d  # import, not overwrite
    variables = {v["name"]: v for v in d["templating"]["list"]}
    assert variables["datasource"]["type"] == "datasource"
    assert variables["datasource"]["query"] == "prometheus"
    ids: set[int] = set()
    cells: set[tuple[int, int]] = set()
    for p in d["panels"]:
        assert p["id"] not in ids, f"panel id {p['id']} twice"
        ids.add(p["id"])
        assert p["type"] in {"stat", "timeseries", "table", "state-timeline", "row"}, p["type"]
        g = p["gridPos"]
        assert g["w"] > 0 and g["h"] > 0 and g["x"] >= 0 and g["x"] + g["w"] <= 24, p["title"]
        mine = {(x, y) for x in range(g["x"], g["x"] + g["w"])
                for y in range(g["y"], g["y"] + g["h"])}
        assert not mine & cells, f"panel {p['title']!r} overlaps another"
        cells |= mine
        assert p["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
        refs = [t["refId"] for t in p["targets"]]
        assert len(refs) == len(set(refs)) and all(t["expr"] for t in p["targets"])
        for t in p["targets"]:
            for var in re.findall(r"\$(\w+)", t["expr"]):
                assert var in variables or var.startswith("__"), f"${var} is not defined"


GRAFANA_TYPES = Path(__file__).resolve().parent / "data" / "grafana" / "dashboard_types.gen.d.ts"


def enums_as_unions(dts: str) -> str:
    """A JSON file cannot name a TypeScript enum member, only hold its value: read each
    ``declare enum`` of Grafana's types as the union of its values, and each use of a
    member (``MappingType.ValueToText``) as that value."""
    members: dict[str, str] = {}

    def union(m: re.Match[str]) -> str:
        pairs = re.findall(r"(\w+)\s*=\s*(\"[^\"]*\"|-?\d+)", m.group(2))
        members.update({f"{m.group(1)}.{name}": value for name, value in pairs})
        return f"export type {m.group(1)} = {' | '.join(v for _, v in pairs)};"
    dts = re.sub(r"export declare enum (\w+) \{([^}]*)\}", union, dts)
    return re.sub(r"\b(\w+\.\w+)\b", lambda m: members.get(m.group(1), m.group(1)), dts)


def test_dashboard_type_checks_against_grafanas_schema(tmp_path: Path) -> None:
    """Grafana's own types for its dashboard model (from @grafana/schema), checked by tsc:
    a misspelt key, a wrong value type or a missing required field fails (excess-property
    checks apply to the whole literal)."""
    tsc = shutil.which("tsc")
    if tsc is None:
        if os.environ.get("CI"):
            pytest.fail("tsc is missing: .ci/run installs Debian's node-typescript")
        pytest.skip("tsc not installed (Debian: node-typescript)")
    (tmp_path / "dashboard_types.gen.d.ts").write_text(enums_as_unions(GRAFANA_TYPES.read_text()))

    def check(dashboard_json: str) -> subprocess.CompletedProcess[str]:
        (tmp_path / "check.ts").write_text(
            'import type { Dashboard } from "./dashboard_types.gen";\n'
            f"export const dashboard: Dashboard = {dashboard_json};\n")
        return subprocess.run([tsc, "--noEmit", "--strict", "--target", "es2020",
                               "--moduleResolution", "node", "check.ts"], cwd=tmp_path,
                              capture_output=True, text=True, timeout=300)
    proc = check(DASHBOARD.read_text(encoding="utf-8"))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    # The check can fail: a panel whose grid position is a string.
    proc = check(DASHBOARD.read_text(encoding="utf-8").replace('"w": 4', '"w": "4"', 1))
    assert proc.returncode != 0 and "not assignable to type 'number'" in proc.stdout


# -- metric names: only what a unit exports -------------------------------------------------

def metric_names(expr: str) -> set[str]:
    """The metric names a PromQL expression selects (a small tokenizer: strings, label
    matchers, ranges, grouping clauses and function calls removed)."""
    e = re.sub(r'"(?:\\.|[^"\\])*"', '""', expr)
    e = re.sub(r"\{[^}]*\}", " ", e)
    e = re.sub(r"\[[^\]]*\]", " ", e)
    e = re.sub(r"\b(by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", " ", e)
    names = set()
    for m in re.finditer(r"(?<![\w$.])([A-Za-z_:][\w:]*)(\s*\()?", e):
        word, call = m.group(1), m.group(2)
        if call or word.lower() in PROMQL_WORDS or re.fullmatch(r"\d+[smhdwy]", word):
            continue
        names.add(word)
    return names


def test_metric_name_extraction() -> None:
    assert metric_names('sum by (verdict) (rate(nsor_replies_total{instance=~"$i"}[5m])) '
                        '* 60 or vector(0)') == {"nsor_replies_total"}
    assert metric_names('a{x="b c"} / on (instance, modem) b_total > 0.9 unless up') == {
        "a", "b_total", "up"}


def expressions() -> Iterator[tuple[str, str]]:
    rules = yaml.safe_load(RULES.read_text())
    for group in rules["groups"]:
        for rule in group["rules"]:
            yield f"rule {rule['alert']}", str(rule["expr"])
    d = dashboard()
    for p in d["panels"]:
        for t in p["targets"]:
            yield f"panel {p['title']!r}", t["expr"]
    for v in d["templating"]["list"]:
        if v["type"] == "query":
            query = v["query"]["query"]
            yield f"variable {v['name']}", re.sub(r"^label_values\((\w+),.*", r"\1", query)


@pytest.fixture
def scraped(tmp_path: Path, sim: Any, sample_registry: Path) -> Iterator[set[str]]:
    """Every metric name a real unit exports: a Service on the simulator with balance
    checks, one reply, one alarm of a modem and one of the unit, scraped over HTTP."""
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, sim, modem_overrides={
        "balance_ussd": "*123#", "balance_pattern": r"Rs\.?\s*([0-9.,]+)"}))
    svc.start()
    server = StatusServer(svc.snapshot, "127.0.0.1:0", history=svc.history.window)
    server.start()
    try:
        assert wait_until(lambda: all_ready(svc), 20)
        sim.citizen_send(CITIZEN, 0, demo_cnics().misses[0])
        assert wait_until(lambda: sim.inbox(CITIZEN), 20)
        assert wait_until(lambda: all(m["balance"] for m in svc.snapshot()["modems"]), 20)
        svc.alarms.raise_("credit_low:sim1", "low")
        svc.alarms.raise_("disk_full", "full")
        status, _, body = get(server.url + "metrics")
        assert status == 200
        names: set[str] = set()
        for fam in text_string_to_metric_families(body.decode()):
            names.add(fam.name)
            names.update(s.name for s in fam.samples)
        yield names
    finally:
        server.stop()
        svc.stop()


def test_rules_and_dashboard_use_only_exported_metrics(scraped: set[str]) -> None:
    assert {"nsor_replies_total", "nsor_modem_balance_rupees", "nsor_build_info",
            "process_resident_memory_bytes"} <= scraped
    unknown = {(where, name) for where, expr in expressions()
               for name in metric_names(expr) if name not in scraped | SCRAPE_METRICS}
    assert not unknown, f"not exported by the unit: {sorted(unknown)}"
