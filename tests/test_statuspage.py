"""The status page, /status.json and /metrics: a real HTTP server in front of a real Service
on simulated modems, read with a real HTTP client (urllib) and once with headless Chromium."""

from __future__ import annotations

import http.client
import json
import shutil
import socket
import subprocess
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance.errors import ConfigError
from appliance.registry.importer import demo_cnics
from appliance.statuspage import StatusServer
from tests.conftest import unit_config, wait_until

CITIZEN = "+923001112244"
_NO_PROXY = urllib.request.build_opener(urllib.request.ProxyHandler({}))


def get(url: str, method: str = "GET") -> tuple[int, dict[str, str], bytes]:
    req = urllib.request.Request(url, method=method)
    try:
        with _NO_PROXY.open(req, timeout=5) as resp:
            return resp.status, dict(resp.headers), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, dict(exc.headers), exc.read()


def metrics(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` parsed by prometheus-client's own parser: (sample, labels) → value."""
    status, headers, body = get(url + "metrics")
    assert status == 200 and headers["Content-Type"].startswith("text/plain")
    return {(s.name, tuple(sorted(s.labels.items()))): s.value
            for fam in text_string_to_metric_families(body.decode()) for s in fam.samples}


def all_ready(svc: Any) -> bool:
    return all(m.status().state == "ready" for m in svc.modems.values())


@pytest.fixture
def live_unit(tmp_path: Path, sim: Any,
              sample_registry: Path) -> Iterator[tuple[Any, StatusServer]]:
    """A running Service on the simulator with its status page on a free loopback port."""
    from appliance.service import Service

    svc = Service(unit_config(tmp_path, sim))
    svc.start()
    server = StatusServer(svc.snapshot, "127.0.0.1:0")
    server.start()
    try:
        assert wait_until(lambda: all_ready(svc), 20), "modems never became ready"
        yield svc, server
    finally:
        server.stop()
        svc.stop()


def test_status_json_is_the_service_snapshot(live_unit: tuple[Any, StatusServer]) -> None:
    svc, server = live_unit
    assert server.url.startswith("http://127.0.0.1:") and server.port > 0
    status, headers, body = get(server.url + "status.json")
    assert status == 200 and headers["Content-Type"] == "application/json"
    snap = json.loads(body)
    assert [m["name"] for m in snap["modems"]] == ["sim0", "sim1"]
    assert {m["state"] for m in snap["modems"]} == {"ready"}
    assert snap["registry"]["state"] == "ok" and snap["registry"]["version"] == 1
    assert snap["queue"]["pending"] == 0 and snap["unit"] == "test"
    from appliance import __version__
    assert snap["version"] == __version__


def test_metrics_follow_traffic(live_unit: tuple[Any, StatusServer], sim: Any) -> None:
    svc, server = live_unit
    before = metrics(server.url)
    from appliance import __version__
    assert before[("nsor_build_info", (("version", __version__),))] == 1
    assert before[("nsor_modem_state", (("modem", "sim0"), ("state", "ready")))] == 1
    assert before[("nsor_modem_state", (("modem", "sim0"), ("state", "gone")))] == 0
    assert before[("nsor_registry_version", ())] == 1
    assert before[("nsor_registry_state", (("state", "ok"),))] == 1
    assert before[("nsor_modem_up", (("modem", "sim1"),))] == 1
    assert before[("nsor_modem_rssi", (("modem", "sim0"),))] == 17
    assert before[("nsor_queue_pending", ())] == 0
    assert 0 <= before[("nsor_registry_age_seconds", ())] < 3600

    sim.citizen_send(CITIZEN, 0, demo_cnics().misses[0])
    assert wait_until(lambda: sim.inbox(CITIZEN), 20)
    after: dict[Any, float] = {}

    def counted() -> bool:
        after.update(metrics(server.url))
        return after[("nsor_modem_received_total", (("modem", "sim0"),))] >= 1 and sum(
            v for (name, _), v in after.items() if name == "nsor_modem_sent_parts_total") >= 1
    assert wait_until(counted, 10), after
    assert after[("nsor_messages", (("direction", "inbound"), ("status", "answered")))] == 1


def test_metrics_carry_alarms_and_sync_results(tmp_path: Path) -> None:
    from appliance.registry.status import RegistryPaths, record_attempt, sync_status

    db = tmp_path / "registry.db"
    record_attempt(RegistryPaths(db), "2026-01-02T03:04:05+00:00",
                   error=("registry_sync", "publisher unreachable"))
    snap = {"unit": "u", "modems": [],
            "registry": {"state": "stale", "age_s": 9e5, "sync": sync_status(db)},
            "alarms": [{"kind": "registry_stale", "message": "old", "since": 0, "count": 2}],
            "alarms_total": {"registry_stale": 2, "modem_down:sim0": 5}}
    server = StatusServer(lambda: snap, "127.0.0.1:0")
    server.start()
    try:
        m = metrics(server.url)
    finally:
        server.stop()
    assert m[("nsor_alarm_active", (("kind", "registry_stale"),))] == 1
    assert m[("nsor_alarms_raised_total", (("kind", "modem_down:sim0"),))] == 5
    assert m[("nsor_registry_state", (("state", "stale"),))] == 1
    assert m[("nsor_registry_sync_consecutive_failures", ())] == 1
    assert m[("nsor_registry_sync_last_attempt_timestamp_seconds", ())] == 1767323045.0
    assert ("nsor_registry_sync_last_success_timestamp_seconds", ()) not in m


def test_page_escapes_everything_and_refreshes(live_unit: tuple[Any, StatusServer]) -> None:
    svc, server = live_unit
    svc.alarms.raise_("queue_growing", '<script>alert("x")</script> & more')
    status, headers, body = get(server.url)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    assert '<meta http-equiv="refresh" content="10">' in page
    assert "script-src" not in headers["Content-Security-Policy"]  # default-src 'none'
    assert "sim0" in page and "sim1" in page and "version 1" in page


@pytest.mark.parametrize("method", ["POST", "PUT", "DELETE", "PATCH", "OPTIONS", "BREW"])
def test_only_get_and_head_are_served(method: str) -> None:
    server = StatusServer(lambda: {"unit": "u"}, "127.0.0.1:0")
    server.start()
    try:
        conn = http.client.HTTPConnection("127.0.0.1", server.port, timeout=5)
        conn.request(method, "/status.json", body=b"x")
        resp = conn.getresponse()
        assert resp.status == 405 and resp.getheader("Allow") == "GET, HEAD"
        conn.close()
        status, headers, body = get(server.url + "status.json", method="HEAD")
        assert status == 200 and body == b"" and int(headers["Content-Length"]) > 0
        assert get(server.url + "secret")[0] == 404
    finally:
        server.stop()


def test_failing_snapshot_gives_500_and_the_server_lives_on() -> None:
    calls = []

    def snapshot() -> dict[str, Any]:
        calls.append(1)
        if len(calls) == 1:
            raise OSError("disk I/O error")
        return {"unit": "u"}
    server = StatusServer(snapshot, "127.0.0.1:0")
    server.start()
    try:
        status, _, body = get(server.url + "status.json")
        assert status == 500 and b"disk I/O error" in body
        assert get(server.url + "status.json")[0] == 200
    finally:
        server.stop()


def test_binds_only_where_configured_and_says_why_it_cannot() -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="status.http_bind"):
            StatusServer(dict, f"127.0.0.1:{port}").start()
    # Linux routes all of 127/8 to lo: a server bound to 127.0.0.2 must not answer on
    # 127.0.0.1, as one bound to a LAN address must not answer on the others.
    server = StatusServer(lambda: {"unit": "u"}, "127.0.0.2:0")
    server.start()
    try:
        assert get(f"http://127.0.0.2:{server.port}/status.json")[0] == 200
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", server.port), timeout=2).close()
    finally:
        server.stop()


def test_page_renders_in_headless_chromium(live_unit: tuple[Any, StatusServer],
                                           tmp_path: Path) -> None:
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    if browser is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    svc, server = live_unit
    svc.alarms.raise_("modem_down:sim9", "modem sim9 is gone: port vanished")
    shot = tmp_path / "status.png"
    proc = subprocess.run(
        [browser, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
         "--no-first-run", "--disable-background-networking", "--disable-component-update",
         "--disable-sync", f"--user-data-dir={tmp_path / 'chromium'}",
         f"--screenshot={shot}", "--window-size=1200,900", server.url],
        capture_output=True, text=True, timeout=120)
    assert shot.is_file(), proc.stderr[-2000:]
    assert shot.stat().st_size > 5_000
    print(f"status page screenshot: {shot}")
