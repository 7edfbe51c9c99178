"""The status page, /status.json and /metrics: a real HTTP server in front of a real Service
on simulated modems, read with a real HTTP client (urllib) and once with headless Chromium."""

from __future__ import annotations

import http.client
import json
import os
import re
import socket
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from prometheus_client.parser import text_string_to_metric_families

from appliance import __version__
from appliance.errors import ConfigError
from appliance.registry.importer import demo_cnics
from appliance.status.server import StatusServer
from tests.browser_support import Browser, chromium_path
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
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, sim, modem_overrides={
        "balance_ussd": "*123#", "balance_pattern": r"Rs\.?\s*([0-9.,]+)"}))
    svc.start()
    server = StatusServer(svc.snapshot, "127.0.0.1:0", history=svc.history.window)
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
    assert snap["version"] == __version__


def test_metrics_follow_traffic(live_unit: tuple[Any, StatusServer], sim: Any) -> None:
    svc, server = live_unit
    before = metrics(server.url)
    assert before[("nsor_modem_state", (("modem", "sim0"), ("state", "ready")))] == 1
    assert before[("nsor_modem_state", (("modem", "sim0"), ("state", "gone")))] == 0
    assert before[("nsor_registry_version", ())] == 1
    assert before[("nsor_registry_state", (("state", "ok"),))] == 1
    assert before[("nsor_modem_up", (("modem", "sim1"),))] == 1
    assert before[("nsor_modem_rssi", (("modem", "sim0"),))] == 17
    assert before[("nsor_queue_pending_replies", ())] == 0
    assert before[("nsor_modem_state", (("modem", "sim0"), ("state", "no_network")))] == 0
    assert before[("nsor_modem_window_sent_parts", (("modem", "sim0"), ("window", "1h")))] == 0
    assert before[("nsor_modem_window_cap_parts", (("modem", "sim0"), ("window", "24h")))] > 0
    assert before[("nsor_build_info", (("version", __version__),))] == 1
    assert before[("process_open_fds", ())] > 0
    assert any(name == "python_info" for name, _ in before)
    assert before[("nsor_replies_total", (("verdict", "no_record"),))] == 0
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
    assert after[("nsor_replies_total", (("verdict", "no_record"),))] == 1
    assert after[("nsor_replies_total", (("verdict", "hit"),))] == 0
    assert after[("nsor_modem_window_sent_parts", (("modem", "sim0"), ("window", "1h")))] >= 1
    # The simulator's SIMs answer *123# with "Rs 123.45" (balance_pattern reads 123.45).
    assert wait_until(lambda: metrics(server.url).get(
        ("nsor_modem_balance_rupees", (("modem", "sim1"),))) == 123.45, 20)


def served_metrics(snap: dict[str, Any]) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    """``/metrics`` of a real server in front of a fixed snapshot."""
    server = StatusServer(lambda: snap, "127.0.0.1:0")
    server.start()
    try:
        return metrics(server.url)
    finally:
        server.stop()


def test_metrics_carry_alarms_and_sync_results(tmp_path: Path) -> None:
    from appliance.registry.status import RegistryPaths, record_attempt, sync_status

    db = tmp_path / "registry.db"
    record_attempt(RegistryPaths(db), "2026-01-02T03:04:05+00:00",
                   error=("registry_sync", "publisher unreachable"))
    snap = {"unit": "u", "modems": [],
            "registry": {"state": "stale", "age_s": 9e5, "sync": sync_status(db)},
            "alarms": [{"kind": "registry_stale", "message": "old", "since": 0, "count": 2},
                       {"kind": "credit_low:sim0", "message": "Rs 3", "since": 0, "count": 1}],
            "alarms_total": {"registry_stale": 2, "modem_down:sim0": 5}}
    m = served_metrics(snap)
    assert m[("nsor_alarm_active", (("kind", "registry_stale"), ("modem", "")))] == 1
    assert m[("nsor_alarm_active", (("kind", "credit_low"), ("modem", "sim0")))] == 1
    assert m[("nsor_alarms_raised_total", (("kind", "modem_down"), ("modem", "sim0")))] == 5
    assert m[("nsor_registry_state", (("state", "stale"),))] == 1
    assert m[("nsor_registry_sync_consecutive_failures", ())] == 1
    assert m[("nsor_registry_sync_last_attempt_timestamp_seconds", ())] == 1767323045.0
    assert ("nsor_registry_sync_last_success_timestamp_seconds", ()) not in m
    assert ("nsor_fleet_connected", ()) not in m  # no fleet link: no fleet series


def test_metrics_and_page_show_split_replies_and_the_fleet_link() -> None:
    from appliance.status.html import render_page

    snap = {"unit": "u", "modems": [], "registry": {"state": "ok"}, "split_replies": 2,
            "crash_resent": 4, "queue": {"pending": 0, "unassigned": 0},
            "fleet": {"connected": False, "down_s": 90.0, "hits_waiting": 7,
                      "last_error": "cannot reach the broker"}}
    m = served_metrics(snap)
    assert m[("nsor_replies_split", ())] == 2
    assert m[("nsor_replies_resumed_total", ())] == 4
    assert m[("nsor_fleet_connected", ())] == 0 and m[("nsor_fleet_hits_waiting", ())] == 7
    page = render_page(snap, {}, "en")
    assert "split across two SIMs" in page and "not connected for" in page
    assert "cannot reach the broker" in page
    assert "جوابات دو سموں میں بٹ گئے" in render_page(snap, {}, "ur")


def test_page_escapes_everything_and_refreshes(live_unit: tuple[Any, StatusServer]) -> None:
    svc, server = live_unit
    svc.alarms.raise_("queue_growing", '<script>alert("x")</script> & more')
    status, headers, body = get(server.url)
    page = body.decode()
    assert status == 200 and headers["Content-Type"].startswith("text/html")
    # Only the unit's own script files, never inline script; the hostile text is inert.
    scripts = re.findall(r"<script[^>]*>", page, re.I)
    assert [re.sub(r"\?v=[0-9a-f]{12}", "", s) for s in scripts] == [
        '<script defer src="/static/uPlot.iife.min.js">', '<script defer src="/static/status.js">']
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt; &amp; more" in page
    assert '<meta http-equiv="refresh" content="10">' in page
    csp = headers["Content-Security-Policy"]
    assert "script-src 'self';" in csp and "unsafe" not in csp and "default-src 'none'" in csp
    assert "sim0" in page and "sim1" in page and "version 1" in page
    assert "<title>⚠ 1 alarm(s) · NSOR test · v" + __version__ + "</title>" in page


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


def _chromium() -> str:
    browser = chromium_path()
    if browser is None:
        pytest.skip("Debian chromium is not installed (apt-get install chromium)")
    return browser


def _seed_day(svc: Any, now: float) -> None:
    """24 hours of minutes through the real History API: a working day's traffic, a queue
    that builds up at noon, one modem's signal fading, a balance spent down."""
    from appliance.state.history import STEP_S
    from appliance.state.store import write_txn

    with write_txn():  # one transaction for 1,440 minutes
        for i in range(24 * 60, 0, -1):
            t = now - i * STEP_S
            hour = (i // 60) % 24
            busy = 8 <= (24 - hour) % 24 <= 20
            if 300 < i < 330:
                continue  # the unit was off for half an hour: a gap, not zeros
            values = {"queue": float((i % 97 == 0) * 4 + (busy and i % 13 == 0) * 2),
                      "rssi.sim0": 18.0 + (i % 7) / 2, "rssi.sim1": 9.0 + (i % 240) / 40,
                      "balance.sim0": 80.0 + i / 20, "balance.sim1": 40.0 + i / 60}
            if busy and i % 3 == 0:
                values["replies.no_record"] = float(1 + i % 4)
            if busy and i % 41 == 0:
                values["replies.hit"] = 1.0
            if i % 57 == 0:
                values["replies.invalid"] = 1.0
            if i % 211 == 0:
                values["replies.limit"] = 1.0
            svc.history.record(values, now=t)


def test_page_in_headless_chromium_both_languages_phone_and_desktop(
        live_unit: tuple[Any, StatusServer], sim: Any, tmp_path: Path) -> None:
    """The page as a technician sees it: English and Urdu, at 390 px (a phone) and 1280 px,
    with 24 hours of charts. The screenshots are kept for a person to look at
    (``NSOR_SCREENSHOTS=dir`` keeps them there; otherwise under pytest's tmp dir)."""
    import time

    browser = _chromium()
    svc, server = live_unit
    _seed_day(svc, time.time())
    # Real traffic for the last minute: a hit and a miss, answered through the simulator.
    cnics = demo_cnics()
    sim.citizen_send(CITIZEN, 0, cnics.hits[0])
    sim.citizen_send("+923001112255", 1, cnics.misses[0])
    assert wait_until(lambda: len(svc.snapshot()["replies_total"]) == 2
                      and svc.snapshot()["queue"]["pending"] == 0, 30)
    svc.sample_history()
    assert wait_until(lambda: all(m["balance"] for m in svc.snapshot()["modems"]), 20)
    svc.alarms.raise_("credit_low:sim1", "modem sim1: SIM balance 40.00 is below 50.00; "
                      "recharge the SIM")

    history = json.loads(get(server.url + "history.json")[2])
    assert len(history["times"]) == 24 * 60 and history["replies_24h"]["hit"] >= 1
    assert history["queue"][-330 + 10] is None  # the half hour the unit was off

    out = Path(os.environ.get("NSOR_SCREENSHOTS") or tmp_path / "screenshots")
    out.mkdir(parents=True, exist_ok=True)
    with Browser(browser, tmp_path / "chromium") as page:
        for lang in ("en", "ur"):
            for width, height, mobile in ((390, 844, True), (1280, 900, False)):
                page.open(f"{server.url}?lang={lang}", width, height, mobile=mobile)
                # status.js drew every chart with uPlot, and the Urdu font came from the unit.
                page.wait_for("document.querySelectorAll('.chart[data-drawn]').length === 4"
                              " && document.fonts.status === 'loaded'")
                drawn = page.evaluate("Array.from(document.querySelectorAll('.chart'))"
                                      ".map(c => c.dataset.series + '=' + c.dataset.drawn)")
                assert drawn == ["replies=4", "queue=1", "rssi=2", "balance=2"], drawn
                assert page.evaluate("document.querySelectorAll('canvas').length") == 4
                assert page.evaluate("[document.documentElement.lang, document.dir]") == [
                    lang, "rtl" if lang == "ur" else "ltr"]
                # Nothing wider than the screen: no sideways scrolling on a phone.
                assert page.evaluate("document.documentElement.scrollWidth") <= width
                if lang == "ur":
                    assert page.evaluate("""document.fonts.check('16px "NSOR Nastaliq"', 'اردو')""")
                    assert page.evaluate("Array.from(document.fonts).filter(f => "
                                         "f.family.includes('Nastaliq') && f.status === "
                                         "'loaded').length") == 1
                assert page.evaluate("document.title").startswith("⚠ 1 ")
                assert page.console_errors() == []
                shot = page.screenshot(out / f"status-{lang}-{width}.png")
                assert shot.stat().st_size > 20_000
                print(f"status page screenshot: {shot}")


def test_static_files_are_served_and_nothing_else(live_unit: tuple[Any, StatusServer]) -> None:
    _, server = live_unit
    status, headers, body = get(server.url + "static/uPlot.iife.min.js?v=1")
    assert status == 200 and headers["Content-Type"].startswith("text/javascript")
    assert b"uPlot" in body and "immutable" in headers["Cache-Control"]
    status, headers, body = get(server.url + "static/NotoNastaliqUrdu-Regular.woff2")
    assert status == 200 and headers["Content-Type"] == "font/woff2" and body[:4] == b"wOF2"
    for path in ("static/LICENSE.uPlot", "static/../../cli.py", "static/",
                 "static/%2e%2e/%2e%2e/cli.py"):
        assert get(server.url + path)[0] == 404, path


def test_language_follows_the_query_then_the_browser(
        live_unit: tuple[Any, StatusServer]) -> None:
    _, server = live_unit
    req = urllib.request.Request(server.url, headers={"Accept-Language": "ur-PK,ur;q=0.9,en"})
    with _NO_PROXY.open(req, timeout=5) as resp:
        page = resp.read().decode()
    assert '<html lang="ur" dir="rtl">' in page and "موڈیم" in page
    assert 'href="?lang=en"' in page
    page = get(server.url + "?lang=en")[2].decode()
    assert '<html lang="en" dir="ltr">' in page and 'href="?lang=ur"' in page
    # Times carry their zone.
    assert re.search(r"as of <bdi dir=\"ltr\">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d "
                     r"\([A-Z]*,? ?UTC[+-]\d\d:\d\d\)</bdi>", page), page[:2000]
