"""The centre's live table of units (``fleet watch``), from retained MQTT messages.

Each unit's last heartbeat (``<root>/units/<unit>/status``) and online flag (``…/online``,
whose last will says "0") are retained, so a watcher that starts sees every unit's last
known state at once, offline units included.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from typing import Any, TextIO

from appliance.config import FleetConfig
from appliance.fleet import topics
from appliance.fleet.centre import centre_client


class FleetView:
    """The last heartbeat and online flag of every unit, as received."""

    def __init__(self, root: str) -> None:
        self.root = root
        self.units: dict[str, dict[str, Any]] = {}
        self.lock = threading.Lock()
        self.changed = threading.Event()

    def on_message(self, topic: str, payload: bytes, now: float) -> None:
        where = topics.split_unit_topic(self.root, topic)
        if where is None:
            return
        unit, leaf = where
        with self.lock:
            entry = self.units.setdefault(unit, {"unit": unit, "online": None, "hb": None,
                                                 "seen": None})
            if leaf == "online":
                entry["online"] = payload == topics.ONLINE
            elif leaf == "status":
                hb = topics.decode(payload)
                if hb is not None:
                    entry["hb"] = hb
                    at = hb.get("at")
                    entry["seen"] = float(at) if isinstance(at, (int, float)) else now
        self.changed.set()

    def rows(self, now: float) -> list[dict[str, Any]]:
        with self.lock:
            entries = [dict(e) for e in self.units.values()]
        return [fleet_row(e, now) for e in sorted(entries, key=lambda e: e["unit"])]


def fleet_row(entry: Mapping[str, Any], now: float) -> dict[str, Any]:
    """One unit's line: what a centre operator scans the table for."""
    hb: Mapping[str, Any] = entry.get("hb") or {}
    reg: Mapping[str, Any] = hb.get("reg") or {}
    modems: Mapping[str, Any] = hb.get("modems") or {}
    seen = entry.get("seen")
    return {"unit": entry["unit"],
            "online": entry.get("online"),
            "last_seen_s": None if seen is None else max(0.0, now - float(seen)),
            "version": hb.get("sw"),
            "registry": reg.get("v"), "registry_state": reg.get("state"),
            "registry_age_s": reg.get("age_s"),
            "modems_up": modems.get("up"), "modems_down": modems.get("down"),
            "queue": hb.get("queue"), "alarms": list(hb.get("alarms") or []),
            "hits_waiting": hb.get("hits_wait")}


def _age(seconds: Any) -> str:
    if not isinstance(seconds, (int, float)):
        return "-"
    s = int(seconds)
    if s < 120:
        return f"{s}s"
    if s < 7200:
        return f"{s // 60}m"
    if s < 172800:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def render_table(rows: list[dict[str, Any]]) -> Any:
    from rich.table import Table

    table = Table(title=f"NSOR fleet: {len(rows)} unit(s)", expand=False)
    for col in ("unit", "link", "last seen", "version", "registry", "age", "modems", "queue",
                "hits wait", "alarms"):
        table.add_column(col)
    for r in rows:
        link = {True: "[green]online", False: "[red]offline", None: "?"}[r["online"]]
        reg = f"v{r['registry']} {r['registry_state'] or ''}" if r["registry"] is not None \
            else (r["registry_state"] or "-")
        modems = ("-" if r["modems_up"] is None else
                  f"{r['modems_up']} up" + (f" [red]{r['modems_down']} down"
                                            if r["modems_down"] else ""))
        table.add_row(r["unit"], link, _age(r["last_seen_s"]), str(r["version"] or "-"), reg,
                      _age(r["registry_age_s"]), modems, str(r["queue"] if r["queue"]
                                                                is not None else "-"),
                      str(r["hits_waiting"] if r["hits_waiting"] is not None else "-"),
                      ", ".join(r["alarms"]) or "-")
    return table


def watch(cfg: FleetConfig, *, once: bool, wait_s: float, as_json: bool,
          out: TextIO) -> None:
    from appliance.fleet.mqtt import connect_blocking

    view = FleetView(cfg.topic_root)
    client = centre_client(cfg, f"nsor-centre-watch-{time.time_ns() % 10**9}")
    client.on_message = lambda _c, _u, msg: view.on_message(msg.topic, msg.payload,
                                                            time.time())
    subs = [(topics.units_topic(cfg.topic_root, leaf), 1) for leaf in ("status", "online")]
    connect_blocking(client, cfg)
    client.on_connect = lambda c, *_a: c.subscribe(subs)
    client.subscribe(subs)
    try:
        if once:
            # Retained messages arrive right after the SUBACK; stop when they pause.
            deadline = time.monotonic() + wait_s
            while time.monotonic() < deadline:
                view.changed.clear()
                if not view.changed.wait(min(0.5, wait_s)) and view.units:
                    break
            rows = view.rows(time.time())
            if as_json:
                out.write(json.dumps(rows, ensure_ascii=False) + "\n")
            else:
                from rich.console import Console
                Console(file=out, width=120).print(render_table(rows))
            return
        from rich.live import Live
        with Live(render_table(view.rows(time.time())), refresh_per_second=2) as live:
            while True:
                view.changed.wait(1.0)
                view.changed.clear()
                live.update(render_table(view.rows(time.time())))
    finally:
        client.disconnect()
        client.loop_stop()
