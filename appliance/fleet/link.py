"""The unit's side of the fleet link: one outbound MQTT connection, three jobs.

Threads (none of them on a citizen's path):

* paho's network thread (``loop_start``): connects, reconnects with backoff (``[fleet]
  reconnect_min_s`` doubling to ``reconnect_max_s``), runs the callbacks below, which only
  record what happened and wake a worker;
* ``fleet-link``: publishes hit reports from state.db (at most :data:`WINDOW` waiting
  for their PUBACK), deletes each when its PUBACK arrives, publishes heartbeats, raises
  the ``fleet_link`` alarm when the link has been down for ``offline_alarm_after_s``;
* ``fleet-sync``: on a "latest version" hint from the centre, runs the registry sync (the
  same TUF verification as the nightly one) unless the installed version is already that
  one. The hint is a reason to look, never data.

A citizen's answer only ever touches this module through :meth:`FleetLink.record_hits`,
which inserts rows into ``state.db`` inside the answer's own transaction: no network, no
lock shared with paho. With the broker down, unreachable, or refusing us, answers go out
exactly as without a link; reports wait on disk.
"""

from __future__ import annotations

import logging
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import paho.mqtt.client as mqtt

from appliance.config import FleetConfig
from appliance.fleet import topics
from appliance.fleet.mqtt import make_client
from appliance.fleet.hits import HitOutbox

log = logging.getLogger(__name__)

#: Hit reports published and not yet acknowledged, at most (bounded memory in paho).
WINDOW = 100

#: A report neither acknowledged nor failed this long after it was (re)sent on a live
#: connection is published again (the centre drops the duplicate by id).
ACK_TIMEOUT_S = 60.0

#: How often the worker looks at the clock when nothing wakes it.
TICK_S = 1.0

ALARM = "fleet_link"


class AlarmPort(Protocol):
    def raise_(self, kind: str, message: str) -> None: ...
    def clear(self, kind: str) -> None: ...


class Verdictish(Protocol):
    """What :meth:`FleetLink.record_hits` reads of a responder ``Verdict``."""

    @property
    def cnic(self) -> str: ...
    @property
    def hit(self) -> bool: ...


Snapshot = Callable[[], Mapping[str, Any]]


class FleetLink:
    """The link of unit ``unit`` as ``cfg`` describes it. :meth:`start`, then :meth:`stop`."""

    def __init__(self, cfg: FleetConfig, unit: str, *, alarms: AlarmPort,
                 hash_number: Callable[[str], str], version: str) -> None:
        self.cfg = cfg
        self.unit = unit
        self.topics = topics.UnitTopics(cfg.topic_root, unit)
        self.alarms = alarms
        self.hash_number = hash_number
        self.version = version
        self.hits = HitOutbox()
        self.client = make_client(cfg, f"nsor-{unit}", default_username=unit,
                                  will=(self.topics.online, topics.OFFLINE))
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_publish = self._on_publish
        self.client.on_message = self._on_message
        self.client.on_connect_fail = self._on_connect_fail
        self.client.max_inflight_messages_set(WINDOW)

        self._stop = threading.Event()
        self._wake = threading.Event()
        self._sync_wake = threading.Event()
        self._connected = threading.Event()
        self._acked: deque[int] = deque()
        self._inflight: dict[int, tuple[int, float]] = {}  # mid -> (row, sent at)
        self._connected_at = 0.0
        self._down_since: float | None = time.monotonic()
        self._alarmed = False
        self._last_error = ""
        self._hinted: int | None = None
        self._hb_at = 0.0
        self._hb_key = ""
        self._hb_checked = 0.0
        self._hb_force = True
        self._snapshot: Snapshot | None = None
        self._threads: list[threading.Thread] = []
        self.stats = {"hits_sent": 0, "hits_acked": 0, "heartbeats": 0, "hints": 0,
                      "push_syncs": 0, "connects": 0}

    # -- the citizen's path (inside the answer's transaction) ---------------------------

    def record_hits(self, verdicts: tuple[Verdictish, ...], sender: str, modem: str, *,
                    now: float | None = None) -> int:
        """Queue one report per verdict that matched an active record; joins the caller's
        write transaction. Returns how many. The caller wakes the link after its commit."""
        if not self.cfg.hit_reports:
            return 0
        now = time.time() if now is None else now
        fields = self.cfg.hit_fields
        count = 0
        for verdict in verdicts:
            if not verdict.hit:
                continue
            report_id = uuid.uuid4().hex
            payload = topics.encode(topics.hit_report(
                report_id=report_id, unit=self.unit, cnic=verdict.cnic, at=now,
                fields=fields, district=self.cfg.district,
                number_hash=self.hash_number(sender) if "number_hash" in fields else None,
                number=sender if self.cfg.hit_clear_number else None, modem=modem))
            self.hits.add(report_id, payload, now=now)
            count += 1
        return count

    def wake(self) -> None:
        self._wake.set()

    # -- lifecycle -------------------------------------------------------------------------

    def start(self, snapshot: Snapshot, *, sync_now: Callable[[str], object] | None = None,
              installed_version: Callable[[], int | None] | None = None) -> None:
        """Connect in the background (never blocks: the broker may be down for days)."""
        self._snapshot = snapshot
        self.client.connect_async(self.cfg.broker_host, self.cfg.broker_port,
                                  keepalive=self.cfg.keepalive_s)
        self.client.loop_start()
        worker = threading.Thread(target=self._run, name="fleet-link", daemon=True)
        self._threads.append(worker)
        if self.cfg.push_sync and sync_now is not None:
            syncer = threading.Thread(target=self._run_sync, args=(sync_now, installed_version),
                                      name="fleet-sync", daemon=True)
            self._threads.append(syncer)
        for thread in self._threads:
            thread.start()
        log.info("fleet link to %s:%d started (%s)", self.cfg.broker_host,
                 self.cfg.broker_port, "TLS" if self.cfg.tls else "no TLS")

    def stop(self, timeout: float = 5.0) -> None:
        self._stop.set()
        self._wake.set()
        self._sync_wake.set()
        if self._connected.is_set():
            # A clean DISCONNECT suppresses the will: say "offline" ourselves.
            self.client.publish(self.topics.online, topics.OFFLINE, qos=1, retain=True)
        self.client.disconnect()
        self.client.loop_stop()
        for thread in self._threads:
            thread.join(timeout)

    def status(self) -> dict[str, Any]:
        down = self._down_since
        return {"connected": self._connected.is_set(),
                "down_s": None if down is None else time.monotonic() - down,
                "hits_waiting": self.hits.count(), "last_error": self._last_error,
                **self.stats}

    # -- paho callbacks (network thread: record and wake, nothing more) -----------------

    def _on_connect(self, client: mqtt.Client, _userdata: object, _flags: object,
                    reason: Any, _props: object) -> None:
        if reason.is_failure:
            self._error(f"broker refused the connection: {reason}")
            return
        self.stats["connects"] += 1
        self._connected_at = time.monotonic()
        self._connected.set()
        client.publish(self.topics.online, topics.ONLINE, qos=1, retain=True)
        client.subscribe(self.topics.centre, qos=1)
        self._hb_force = True
        self._wake.set()
        log.info("fleet link: connected to %s:%d", self.cfg.broker_host, self.cfg.broker_port)

    def _on_connect_fail(self, _client: mqtt.Client, _userdata: object) -> None:
        self._error("cannot reach the broker (network, DNS, firewall, or TLS: check ca_file "
                    "and the clock)")
        self._wake.set()

    def _error(self, text: str) -> None:
        # Retries come every few seconds to minutes: log a cause once, not every retry.
        if text != self._last_error:
            log.warning("fleet link: %s; retrying with backoff", text)
        self._last_error = text

    def _on_disconnect(self, _client: mqtt.Client, _userdata: object, _flags: object,
                       reason: Any, _props: object) -> None:
        was = self._connected.is_set()
        self._connected.clear()
        if was:
            self._down_since = time.monotonic()
            self._last_error = f"disconnected: {reason}"
            log.warning("fleet link: %s; reconnecting with backoff", self._last_error)
        elif not self._last_error.startswith("broker refused"):
            self._error("the connection closed before the broker answered (tls on a plain "
                        "port or the other way round? check tls and broker_port)")
        self._wake.set()

    def _on_publish(self, _client: mqtt.Client, _userdata: object, mid: int, _reason: object,
                    _props: object) -> None:
        self._acked.append(mid)  # deque.append is atomic; the worker does the deleting
        self._wake.set()

    def _on_message(self, _client: mqtt.Client, _userdata: object,
                    msg: mqtt.MQTTMessage) -> None:
        if msg.topic == topics.registry_hint_topic(self.cfg.topic_root):
            self._hinted = topics.parse_hint(bytes(msg.payload))
            self.stats["hints"] += 1
            log.info("fleet link: the centre announces registry version %s", self._hinted)
            self._sync_wake.set()

    # -- the worker ------------------------------------------------------------------------

    def _run(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(TICK_S)
            self._wake.clear()
            if self._stop.is_set():
                break
            try:
                self._step()
            except Exception:  # the link must outlive any one bad moment
                log.exception("fleet link: worker step failed; continuing")

    def _step(self) -> None:
        now = time.monotonic()
        self._collect_acks()
        if self._connected.is_set():
            if self._down_since is not None:
                self._down_since = None
                if self._alarmed:
                    self._alarmed = False
                    self.alarms.clear(ALARM)
            self._pump(now)
            self._heartbeat(now)
        elif self._down_since is not None and not self._alarmed \
                and now - self._down_since >= self.cfg.offline_alarm_after_s:
            self._alarmed = True
            why = self._last_error or "never connected"
            self.alarms.raise_(ALARM, f"no connection to the centre's broker "
                               f"{self.cfg.broker_host}:{self.cfg.broker_port} for "
                               f"{now - self._down_since:.0f} s ({why}); "
                               f"{self.hits.count()} hit report(s) wait on disk; answers "
                               "are not affected")

    def _collect_acks(self) -> None:
        rows = []
        while self._acked:
            entry = self._inflight.pop(self._acked.popleft(), None)
            if entry is not None:
                rows.append(entry[0])
        if rows:
            self.hits.delete(rows)
            self.stats["hits_acked"] += len(rows)

    def _pump(self, now: float) -> None:
        # Reports sent on an earlier connection are resent by paho itself on reconnect;
        # only one that stays unanswered on a live link is given up and published again.
        since = max(self._connected_at, 0.0)
        for mid, (row, sent) in list(self._inflight.items()):
            if now - max(sent, since) > ACK_TIMEOUT_S:
                del self._inflight[mid]
        room = WINDOW - len(self._inflight)
        if room <= 0:
            return
        waiting = {row for row, _ in self._inflight.values()}
        for item in self.hits.pending(room, exclude=sorted(waiting)):
            info = self.client.publish(self.topics.hits, item.payload, qos=1)
            if info.rc not in (mqtt.MQTT_ERR_SUCCESS, mqtt.MQTT_ERR_NO_CONN):
                log.warning("fleet link: hit report not queued (%s); will retry",
                            mqtt.error_string(info.rc))
                break
            self._inflight[info.mid] = (item.row, now)
            self.stats["hits_sent"] += 1

    def _heartbeat(self, now: float) -> None:
        cfg = self.cfg
        due = now - self._hb_at >= cfg.heartbeat_interval_s
        look = self._hb_force or due or now - self._hb_checked >= cfg.heartbeat_min_interval_s
        if not look or self._snapshot is None:
            return
        self._hb_checked = now
        hb = topics.heartbeat(self._snapshot(), version=self.version,
                              backlog=self.hits.count())
        key = topics.heartbeat_change_key(hb)
        changed = key != self._hb_key and now - self._hb_at >= cfg.heartbeat_min_interval_s
        if not (due or changed or self._hb_force):
            return
        self._hb_force = False
        self._hb_at, self._hb_key = now, key
        self.client.publish(self.topics.status, topics.encode(hb), qos=1, retain=True)
        self.stats["heartbeats"] += 1

    # -- pushed updates --------------------------------------------------------------------

    def _run_sync(self, sync_now: Callable[[str], object],
                  installed_version: Callable[[], int | None] | None) -> None:
        while True:
            self._sync_wake.wait()
            self._sync_wake.clear()
            if self._stop.is_set():
                return
            installed = installed_version() if installed_version is not None else None
            if not topics.hint_wants_sync(self._hinted, installed):
                continue
            log.info("fleet link: syncing the registry now (hint v%s, installed v%s)",
                     self._hinted, installed)
            self.stats["push_syncs"] += 1
            try:
                sync_now("push")  # RegistryScheduler.run: verifies, retries on failure
            except Exception:
                log.exception("fleet link: registry sync after a hint failed")
            self._hb_force = True  # let the centre see the new version at once
            self._wake.set()
