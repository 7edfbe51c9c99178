"""A fleet of 500 units on one local mosquitto: publish once, every unit syncs.

What is real: the broker (the shipped config: TLS, a password per unit, the ACLs), one
MQTT connection per unit (paho, the unit's own ``make_client`` with its own credentials,
subscribed to the centre's topics as the link does), the retained hint posted by the
centre's ``publish_hint``, the hint's parsing and the "newer than installed?" decision
(``topics.parse_hint`` / ``hint_wants_sync``), and for every unit its own full
``RegistrySync.sync()`` from the static server on 127.0.0.1: TUF refresh of timestamp,
snapshot and targets metadata into its own metadata directory, signature and hash checks,
the delta downloaded and applied to its own ``registry.db``.

What is simulated, precisely: the units share one process, so their syncs run on a pool
of 4 worker threads (a unit syncs in its own process in the field), and the 500 paho
clients are driven by one epoll loop through paho's external-loop API (``loop_read``,
``loop_write``, ``loop_misc``) instead of a network thread each: ``loop_start`` uses
``select()``, which cannot watch the 1,500 descriptors that 500 clients hold. There are
no modems, no state.db and no heartbeats. Each unit starts from a
copy of one unit's synced version 1 (setup, not measured). Figures are printed.
"""

from __future__ import annotations

import queue
import resource
import selectors
import shutil
import signal
import sqlite3
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import pytest

from appliance.config import config_from_dict
from appliance.fleet import topics
from appliance.fleet.centre import publish_hint
from appliance.fleet.mqtt import make_client
from appliance.registry.sync import RegistrySync
from tests.conftest import wait_until
from tests.fault_support import show_figures
from tests.fleet_support import Broker
from tests.test_registry_support import Env, people

UNITS = 500
WORKERS = 4


class EpollLoop:
    """Many paho clients, one thread: paho's external-loop API on an epoll selector."""

    def __init__(self) -> None:
        self.sel = selectors.DefaultSelector()
        self.clients: list[Any] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def add(self, client: Any, host: str, port: int, keepalive: int) -> None:
        client.on_socket_open = lambda c, _u, sock: self.sel.register(
            sock, selectors.EVENT_READ, c)
        client.on_socket_close = lambda _c, _u, sock: self._forget(sock)
        client.on_socket_register_write = lambda c, _u, sock: self.sel.modify(
            sock, selectors.EVENT_READ | selectors.EVENT_WRITE, c)
        client.on_socket_unregister_write = lambda c, _u, sock: self.sel.modify(
            sock, selectors.EVENT_READ, c)
        client.connect(host, port, keepalive=keepalive)  # TCP + TLS now; CONNACK later
        self.clients.append(client)

    def _forget(self, sock: Any) -> None:
        try:
            self.sel.unregister(sock)
        except (KeyError, ValueError):
            pass

    def _run(self) -> None:
        misc = time.monotonic()
        while not self.stop.is_set():
            for key, mask in self.sel.select(timeout=0.2):
                if mask & selectors.EVENT_READ:
                    key.data.loop_read()
                if mask & selectors.EVENT_WRITE:
                    key.data.loop_write()
            if time.monotonic() - misc >= 1.0:  # keep-alive pings, timeouts
                misc = time.monotonic()
                for client in self.clients:
                    client.loop_misc()

    def close(self) -> None:
        self.stop.set()
        if self.thread.is_alive():
            self.thread.join(10)
        for client in self.clients:
            client.disconnect()
            try:
                client.loop_write()
            except Exception:
                pass


def _version(db: Path) -> int:
    con = sqlite3.connect(f"file:{db}?mode=ro", uri=True)
    try:
        return int(con.execute("SELECT version FROM registry_meta WHERE id = 1")
                   .fetchone()[0])
    finally:
        con.close()


def test_500_units_sync_within_seconds_of_one_publish(
        tmp_path: Path, request: pytest.FixtureRequest, record_property: Any) -> None:
    names = [f"unit{i:03d}" for i in range(UNITS)]
    broker = Broker(tmp_path / "broker")
    # All users at once, hashed by mosquitto's own tool in one pass (-U hashes every line,
    # so not on the file that already holds the centre's hash).
    plain = tmp_path / "units.passwd"
    plain.write_text("".join(f"{name}:pw-{name}\n" for name in names))
    subprocess.run(["mosquitto_passwd", "-U", str(plain)], check=True, capture_output=True)
    with open(broker.passwd, "a") as fh:
        fh.write(plain.read_text())
    for name in names:
        broker.passwords[name] = f"pw-{name}"
    env = Env(tmp_path / "pub")
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft < 4 * UNITS:  # 3 descriptors per client (socket + paho's wake-up pair)
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, 8 * UNITS), hard))
    loop = EpollLoop()
    try:
        broker.start()
        env.publish(people(300))                          # version 1
        first = tmp_path / "units" / names[0] / "registry.db"
        RegistrySync(first, env.server.url, env.root, socket_timeout=10).sync()
        for name in names[1:]:
            shutil.copytree(first.parent, tmp_path / "units" / name)
        cpu0, rss0 = broker.usage()

        hints: queue.Queue[tuple[int, int | None]] = queue.Queue()
        synced_at: dict[int, float] = {}
        failures: list[str] = []
        subscribed = threading.Semaphore(0)

        def worker() -> None:
            while True:
                item = hints.get()
                if item[0] < 0:
                    return
                i, hinted = item
                db = tmp_path / "units" / names[i] / "registry.db"
                try:
                    if topics.hint_wants_sync(hinted, _version(db)):
                        RegistrySync(db, env.server.url, env.root, socket_timeout=30).sync()
                        synced_at[i] = time.monotonic()
                except Exception as exc:  # counted and shown, never hidden
                    failures.append(f"{names[i]}: {exc!r}")

        pool = [threading.Thread(target=worker, daemon=True) for _ in range(WORKERS)]
        for t in pool:
            t.start()

        began = time.monotonic()
        for i, name in enumerate(names):
            cfg = config_from_dict({"fleet": broker.fleet(name)}).fleet
            unit_topics = topics.UnitTopics(cfg.topic_root, name)
            client = make_client(cfg, f"nsor-{name}", default_username=name,
                                 will=(unit_topics.online, topics.OFFLINE))

            def on_connect(c: Any, _u: Any, _f: Any, reason: Any, _p: Any,
                           t: topics.UnitTopics = unit_topics) -> None:
                if not reason.is_failure:
                    c.subscribe(t.centre, qos=1)

            def on_message(_c: Any, _u: Any, msg: Any, i: int = i) -> None:
                if msg.topic == topics.registry_hint_topic("nsor"):
                    hints.put((i, topics.parse_hint(msg.payload)))

            client.on_connect = on_connect
            client.on_subscribe = lambda *_a: subscribed.release()
            client.on_message = on_message
            loop.add(client, cfg.broker_host, cfg.broker_port, cfg.keepalive_s)
            if i == 0:
                loop.thread.start()
        for _ in range(UNITS):
            assert subscribed.acquire(timeout=120), "not every unit connected and subscribed"
        connected_s = time.monotonic() - began
        cpu1, rss1 = broker.usage()

        # Version 2 withdraws person 0; the centre posts the hint once the files are served.
        t0 = time.monotonic()
        env.publish(people(299, start=1))
        t_files = time.monotonic()
        centre = config_from_dict({"fleet": broker.fleet("centre")}).fleet
        publish_hint(centre, 2, "2026-12-04T00:00:00+00:00")
        t_hint = time.monotonic()
        assert wait_until(lambda: len(synced_at) + len(failures) >= UNITS, 150,
                          interval=0.1), (len(synced_at), failures[:5])
        cpu2, rss2 = broker.usage()
        for _ in pool:
            hints.put((-1, None))
        assert not failures, failures[:5]
        versions = {_version(tmp_path / "units" / n / "registry.db") for n in names}
        assert versions == {2}
        gone = people(1)[0]["cnic"]
        for name in names[::50]:
            con = sqlite3.connect(tmp_path / "units" / name / "registry.db")
            try:
                assert con.execute("SELECT COUNT(*) FROM offender WHERE cnic = ?",
                                   (gone,)).fetchone()[0] == 0
            finally:
                con.close()
        done = sorted(t - t_hint for t in synced_at.values())
    finally:
        loop.close()
        env.server.close()
        broker.stop(signal.SIGKILL)
    show_figures(request, record_property, "fleet_scale", {
        "units": UNITS, "sync_workers": WORKERS, "connect_all_s": connected_s,
        "publish_files_s": t_files - t0, "hint_post_s": t_hint - t_files,
        "hint_to_first_synced_s": done[0], "hint_to_half_synced_s": done[UNITS // 2],
        "hint_to_all_synced_s": done[-1],
        "publish_start_to_all_synced_s": t_hint - t0 + done[-1],
        "broker_cpu_connect_s": cpu1 - cpu0, "broker_cpu_push_s": cpu2 - cpu1,
        "broker_rss_idle_kib": rss0, "broker_rss_500_kib": rss1,
        "broker_rss_after_kib": rss2})
