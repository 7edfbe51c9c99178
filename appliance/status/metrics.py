"""``/metrics``: the status snapshot as Prometheus metrics, through prometheus-client.

A custom collector rather than module-level ``Gauge`` objects: the service already keeps
every figure (modem counters in each owner, queue depth in ``state.db``, alarms in
:class:`~appliance.service.alarms.Alarms`), so each scrape reads one fresh snapshot and translates
it. Nothing is counted twice and nothing here can drift from what ``status`` shows.

Names follow the Prometheus conventions (``_total`` counters, ``_seconds``/``_bytes``
units, and the counted thing as the unit of a count: ``_parts``, ``_replies``); label
values are single tokens (``state="no_network"``); enumerations are one 0/1 series per
value (``nsor_modem_state{state=...}``) so an alert can match on a state that is absent as
well as present. An alarm of one modem (``credit_low:sim0`` inside the service) is
``{kind="credit_low", modem="sim0"}`` here, so that one alert rule covers every modem.

The alert rules and the Grafana dashboard in ``firmware_config/monitoring/`` use these
names; ``tests/test_monitoring.py`` checks them against a real scrape.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import datetime
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, InfoMetricFamily, Metric

from .. import __version__
from ..state.history import VERDICTS

Snapshot = Callable[[], dict[str, Any]]

#: Every state a modem owner reports (appliance.modem.engine.ModemState), so that a
#: ``nsor_modem_state`` series exists for each.
MODEM_STATES = ("starting", "ready", "no network", "failed", "gone", "stopped")
REGISTRY_STATES = ("ok", "stale", "missing", "corrupt")


def label_value(text: str) -> str:
    """A state or kind as one token: ``"no network"`` → ``"no_network"``."""
    return "_".join(str(text).split())


def split_alarm(kind: str) -> tuple[str, str]:
    """``"credit_low:sim0"`` → ``("credit_low", "sim0")``; ``"disk_full"`` → ``("disk_full",
    "")`` (the service names a modem's alarm ``kind:modem``, appliance.service.alarms)."""
    base, _, modem = str(kind).partition(":")
    return base, modem


def build_info() -> Metric:
    """``nsor_build_info{version="…"} 1``: the one place the software version is exported."""
    return InfoMetricFamily("nsor_build", "The appliance software", value={"version": __version__})


def _up(m: dict[str, Any]) -> int:
    """In service: ready and not out of rotation (blocked, capped)."""
    return int(m.get("state") == "ready" and not m.get("unavailable"))


class SnapshotCollector:
    """A prometheus-client custom collector: each scrape reads one fresh snapshot.

    Counters come from the service's own running totals (they restart at zero with the
    process, which Prometheus' ``rate()`` handles); gauges are read as they are now.
    """

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot

    def collect(self) -> Iterator[Metric]:
        snap = self.snapshot()
        yield build_info()
        yield InfoMetricFamily("nsor_unit", "The unit", value={"unit": str(snap.get("unit", ""))})
        yield from _modem_metrics(snap.get("modems") or [])
        q = snap.get("queue") or {}
        yield GaugeMetricFamily("nsor_queue_pending_replies", "Replies waiting to be sent",
                                value=q.get("pending", 0))
        yield GaugeMetricFamily("nsor_queue_unassigned_replies", "Replies any modem may send",
                                value=q.get("unassigned", 0))
        yield GaugeMetricFamily("nsor_replies_split", "Replies in state.db that moved to "
                                "another SIM after a part had left (an orphan part on a phone)",
                                value=snap.get("split_replies") or 0)
        yield CounterMetricFamily("nsor_replies_resumed", "Replies resumed at their first "
                                  "unsent part after a crash, since start",
                                  value=snap.get("crash_resent") or 0)
        fleet = snap.get("fleet")
        if fleet is not None:  # the fleet link is enabled
            yield GaugeMetricFamily("nsor_fleet_connected", "1 while the fleet link is "
                                    "connected to the broker", value=int(bool(fleet.get(
                                        "connected"))))
            yield GaugeMetricFamily("nsor_fleet_hits_waiting", "Hit reports not yet "
                                    "acknowledged by the broker",
                                    value=fleet.get("hits_waiting") or 0)
        msgs = GaugeMetricFamily("nsor_messages", "Rows in state.db by direction and status",
                                 labels=["direction", "status"])
        for direction, by_status in (snap.get("counts") or {}).items():
            for status, n in by_status.items():
                msgs.add_metric([direction, str(status)], n)
        yield msgs
        yield from _registry_metrics(snap.get("registry") or {})
        replies = CounterMetricFamily("nsor_replies", "Replies queued since start, by verdict",
                                      labels=["verdict"])
        made = snap.get("replies_total") or {}
        for verdict in dict.fromkeys([*VERDICTS, *made]):  # every verdict, seen or not
            replies.add_metric([label_value(verdict)], made.get(verdict, 0))
        yield replies
        active = GaugeMetricFamily("nsor_alarm_active", "1 while an alarm of this kind is on "
                                   "(modem is empty for a unit-wide alarm)",
                                   labels=["kind", "modem"])
        for a in snap.get("alarms") or []:
            active.add_metric(list(split_alarm(a.get("kind", ""))), 1)
        yield active
        raised = CounterMetricFamily("nsor_alarms_raised", "Alarms raised since start",
                                     labels=["kind", "modem"])
        for kind, n in (snap.get("alarms_total") or {}).items():
            raised.add_metric(list(split_alarm(kind)), n)
        yield raised
        disk = snap.get("disk")
        if disk:
            for key in ("total", "used", "free"):
                yield GaugeMetricFamily(f"nsor_disk_{key}_bytes", f"Data disk {key} bytes",
                                        value=disk[key])
        if snap.get("uptime_s") is not None:
            yield GaugeMetricFamily("nsor_uptime_seconds", "Seconds since the service started",
                                    value=snap["uptime_s"])


def _modem_metrics(modems: list[dict[str, Any]]) -> Iterator[Metric]:
    labels = ["modem"]
    gauges = {key: GaugeMetricFamily(f"nsor_modem_{key}", doc, labels=labels) for key, doc in (
        ("up", "1 when the modem is ready and in rotation"),
        ("registered", "1 when registered on the network (TS 27.007 +CREG 1 or 5)"),
        ("rssi", "Signal, +CSQ rssi 0-31 (TS 27.007 §8.5)"),
        ("signal_bars", "Signal bars 0-5"),
        ("queue_replies", "Replies waiting for this modem"),
        ("sim_used_messages", "Messages stored on the SIM"),
        ("sim_slots_messages", "SIM message slots"),
        ("balance_rupees", "SIM balance the last check read (balance_pattern)"),
        ("balance_timestamp_seconds", "Unix time of the last balance check that answered"))}
    # Rolling windows (appliance.outbox.bank): the window is a label, so that an alert can
    # divide sent by cap series by series.
    window_sent = GaugeMetricFamily("nsor_modem_window_sent_parts",
                                    "Parts sent in the rolling window", labels=["modem", "window"])
    window_cap = GaugeMetricFamily("nsor_modem_window_cap_parts",
                                   "Cap on parts sent in the rolling window",
                                   labels=["modem", "window"])
    counters = {key: CounterMetricFamily(f"nsor_modem_{key}", doc, labels=labels)
                for key, doc in (("received", "SMS PDUs received"),
                                 ("sent_parts", "SMS parts submitted (+CMGS)"),
                                 ("send_failures", "Replies whose sending failed"),
                                 ("reopens", "Times the port was (re)opened"))}
    state = GaugeMetricFamily("nsor_modem_state", "1 for the modem's current state",
                              labels=["modem", "state"])
    for m in modems:
        name = [str(m.get("name"))]
        values = dict(m, up=_up(m), registered=int(bool(m.get("registered"))),
                      signal_bars=m.get("bars"), queue_replies=m.get("queue"),
                      sim_used_messages=m.get("sim_used"), sim_slots_messages=m.get("sim_total"),
                      balance_rupees=m.get("balance"),
                      balance_timestamp_seconds=m.get("balance_at"))
        if values.get("rssi") == 99:
            values["rssi"] = None  # 99 = not known (TS 27.007 §8.5), not a signal level
        for key, gauge in gauges.items():
            if values.get(key) is not None:
                gauge.add_metric(name, values[key])
        for key, counter in counters.items():
            counter.add_metric(name, m.get(key) or 0)
        for window, sent, cap in (("1h", "sent_hour", "hourly_cap"),
                                  ("24h", "sent_day", "daily_cap")):
            if m.get(sent) is not None:
                window_sent.add_metric(name + [window], m[sent])
            if m.get(cap) is not None:
                window_cap.add_metric(name + [window], m[cap])
        for s in MODEM_STATES:
            state.add_metric(name + [label_value(s)], int(m.get("state") == s))
    yield from gauges.values()
    yield from counters.values()
    yield window_sent
    yield window_cap
    yield state


def _timestamp(value: Any) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, str):
        try:
            return datetime.fromisoformat(value).timestamp()
        except ValueError:
            return None
    return None


def _registry_metrics(reg: dict[str, Any]) -> Iterator[Metric]:
    for key, name, doc in (("version", "version", "Installed registry version"),
                           ("records", "records", "Records in the registry"),
                           ("age_s", "age_seconds", "Age of the registry's signature/import"),
                           ("max_age_s", "max_age_seconds", "Age at which verdicts stop")):
        if reg.get(key) is not None:
            yield GaugeMetricFamily(f"nsor_registry_{name}", doc, value=reg[key])
    state = GaugeMetricFamily("nsor_registry_state", "1 for the registry's current state",
                              labels=["state"])
    for s in REGISTRY_STATES:
        state.add_metric([s], int(reg.get("state") == s))
    yield state
    sync = reg.get("sync")  # appliance.registry.status.sync_status()
    if not sync or sync.get("last_attempt") is None:
        return  # never synced (imported by hand): no sync series rather than zeros
    yield GaugeMetricFamily("nsor_registry_sync_consecutive_failures",
                            "Failed sync attempts since the last success",
                            value=int(sync.get("consecutive_failures") or 0))
    for key in ("last_attempt", "last_success"):
        ts = _timestamp(sync.get(key))
        if ts is not None:
            yield GaugeMetricFamily(f"nsor_registry_sync_{key}_timestamp_seconds",
                                    f"Unix time of the {key.replace('_', ' ')}", value=ts)
