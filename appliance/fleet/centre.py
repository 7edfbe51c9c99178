"""The centre's side: clients of the broker, not a server of ours.

* ``fleet watch`` -- the retained heartbeats and online flags of every unit as a live table
  (``--once`` prints it once; ``--json`` for scripts), in :mod:`.watch`;
* ``fleet hits`` -- hit reports collected through a *persistent session* (a fixed client
  id, clean session off, QoS 1) into a local SQLite archive keyed by report id, so that
  duplicates are dropped and the broker keeps reports for the collector while it is away;
  printed as CSV or NDJSON from ``--since``;
* ``fleet hint`` and ``registry publish --notify`` -- the retained "latest version"
  message that makes units sync at once.

All of them read the broker settings from the ``[fleet]`` section of a TOML file (the
centre's own, with the centre's credentials; docs/fleet.md).
"""

from __future__ import annotations

import argparse
import csv
import json
import sqlite3
import sys
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

from appliance.config import FleetConfig, load_config
from appliance.rules.when import parse_since
from appliance.errors import ConfigError, FleetError
from appliance.fleet import topics

HIT_COLUMNS = ("id", "unit", "district", "cnic", "time", "at", "number_hash", "number",
               "modem", "received_at")


# -- settings --------------------------------------------------------------------------


def centre_settings(path: Path) -> FleetConfig:
    cfg = load_config(path).fleet
    if not cfg.broker_host:
        raise ConfigError(f"{path}: fleet.broker_host: not set; the centre's tools need the "
                          "broker's address")
    return cfg


def centre_client(cfg: FleetConfig, client_id: str, *, clean_session: bool = True) -> Any:
    from appliance.fleet.mqtt import make_client

    return make_client(cfg, client_id, default_username="centre", clean_session=clean_session)


# -- the hint --------------------------------------------------------------------------


def publish_hint(cfg: FleetConfig, version: int, published_at: str,
                 timeout_s: float = 15.0) -> None:
    """Post the retained "latest version" message; returns once the broker has it."""
    from appliance.fleet.mqtt import connect_blocking

    client = centre_client(cfg, f"nsor-centre-publish-{time.time_ns() % 10**9}")
    connect_blocking(client, cfg, timeout_s)
    try:
        info = client.publish(topics.registry_hint_topic(cfg.topic_root),
                              topics.hint_payload(version, published_at), qos=1, retain=True)
        info.wait_for_publish(timeout_s)
        if not info.is_published():
            raise FleetError(f"broker {cfg.broker_host}:{cfg.broker_port} did not acknowledge "
                             f"the registry hint in {timeout_s:.0f} s (is this user allowed "
                             "to write the centre's topics? see firmware_config/fleet/acl)")
    finally:
        client.disconnect()
        client.loop_stop()


# -- the hits archive ------------------------------------------------------------------


class HitArchive:
    """The centre's de-duplicated hit reports (SQLite, one row per report id)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self.conn = sqlite3.connect(str(path), check_same_thread=False)
        self.conn.execute("PRAGMA journal_mode=WAL")
        self.conn.execute("PRAGMA synchronous=FULL")  # acked to the broker only once stored
        self.conn.execute("CREATE TABLE IF NOT EXISTS hit (id TEXT PRIMARY KEY, unit TEXT, "
                          "at REAL, received_at REAL, payload TEXT)")
        self.conn.execute("CREATE INDEX IF NOT EXISTS hit_at ON hit (at)")
        self.conn.commit()
        self.lock = threading.Lock()
        self.added = 0
        self.duplicates = 0
        self.rejected = 0

    def add(self, unit: str, payload: bytes, received_at: float) -> dict[str, Any] | None:
        """Store one report; the report, or None for a duplicate or a malformed one. The
        unit comes from the topic (the broker's ACL vouches for it), not the payload."""
        report = topics.decode(payload)
        if report is None or not isinstance(report.get("id"), str) or not report["id"]:
            self.rejected += 1
            return None
        report["unit"] = unit
        report["received_at"] = round(received_at, 3)
        at = report.get("at")
        at = float(at) if isinstance(at, (int, float)) and not isinstance(at, bool) \
            else received_at
        with self.lock, self.conn:
            cur = self.conn.execute(
                "INSERT OR IGNORE INTO hit (id, unit, at, received_at, payload) "
                "VALUES (?, ?, ?, ?, ?)",
                (report["id"], unit, at, received_at, json.dumps(report, ensure_ascii=False)))
        if cur.rowcount == 0:
            self.duplicates += 1
            return None
        self.added += 1
        return report

    def since(self, when: float) -> list[dict[str, Any]]:
        with self.lock:
            rows = self.conn.execute("SELECT payload FROM hit WHERE at >= ? ORDER BY at, id",
                                     (when,)).fetchall()
        return [json.loads(r[0]) for r in rows]

    def close(self) -> None:
        self.conn.close()


def collect_hits(cfg: FleetConfig, archive: HitArchive, *, client_id: str,
                 idle_s: float, follow: bool = False,
                 on_new: Callable[[dict[str, Any]], None] | None = None,
                 stop: threading.Event | None = None,
                 ready: threading.Event | None = None) -> None:
    """Receive hit reports into ``archive`` until ``idle_s`` pass without one (or, with
    ``follow``, until ``stop`` is set or Ctrl-C). ``ready`` is set once subscribed."""
    from appliance.fleet.mqtt import connect_blocking

    last = [time.monotonic()]
    subscribed = threading.Event()
    topic = topics.units_topic(cfg.topic_root, "hits")

    def on_message(_c: Any, _u: object, msg: Any) -> None:
        where = topics.split_unit_topic(cfg.topic_root, msg.topic)
        if where is None:
            return
        report = archive.add(where[0], msg.payload, time.time())
        last[0] = time.monotonic()
        if report is not None and on_new is not None:
            on_new(report)

    def on_subscribe(*_args: Any) -> None:
        last[0] = time.monotonic()
        subscribed.set()

    client = centre_client(cfg, client_id, clean_session=False)
    client.on_message = on_message
    client.on_subscribe = on_subscribe
    connect_blocking(client, cfg)
    client.on_connect = lambda c, *_a: c.subscribe(topic, qos=1)  # after a reconnect
    client.subscribe(topic, qos=1)
    stop = stop or threading.Event()
    try:
        if not subscribed.wait(15):
            raise FleetError(f"broker {cfg.broker_host}:{cfg.broker_port}: no SUBACK for "
                             f"{topic}")
        if ready is not None:
            ready.set()
        while not stop.wait(0.1):
            if not follow and time.monotonic() - last[0] >= idle_s:
                break
    finally:
        client.disconnect()
        client.loop_stop()


def write_hits(rows: Iterable[Mapping[str, Any]], fmt: str, out: TextIO) -> int:
    n = 0
    if fmt == "csv":
        writer = csv.DictWriter(out, fieldnames=HIT_COLUMNS, extrasaction="ignore")
        writer.writeheader()
        for row in rows:
            at = row.get("at", row.get("received_at"))
            when = (datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds")
                    if isinstance(at, (int, float)) else "")
            writer.writerow({**{k: row.get(k, "") for k in HIT_COLUMNS}, "time": when})
            n += 1
    else:
        for row in rows:
            out.write(json.dumps(row, ensure_ascii=False, sort_keys=True) + "\n")
            n += 1
    return n


# -- CLI -------------------------------------------------------------------------------


def add_parsers(subparsers: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    fleet = subparsers.add_parser("fleet", help="centre: watch units, collect hit reports "
                                  "(MQTT broker clients; docs/fleet.md)")
    sub = fleet.add_subparsers(dest="fleet_command", required=True)

    p = sub.add_parser("watch", help="live table of units (last seen, version, registry, "
                       "modems, queue, alarms)")
    config_arg(p)
    p.add_argument("--once", action="store_true", help="print the table once and exit")
    p.add_argument("--json", action="store_true", help="with --once: JSON lines")
    p.add_argument("--wait-s", type=float, default=3.0,
                   help="with --once: wait this long for the retained statuses (3)")
    p.set_defaults(func=cmd_watch)

    p = sub.add_parser("hits", help="collect hit reports (de-duplicated) and print them")
    config_arg(p)
    p.add_argument("--since", default="24h",
                   help="ISO date/time or an age (24h, 7d); default 24h")
    p.add_argument("--format", choices=("csv", "ndjson"), default="csv")
    p.add_argument("--out", type=Path, default=None, help="file to write (default stdout)")
    p.add_argument("--db", type=Path, default=Path("fleet-hits.db"),
                   help="the centre's archive of reports (default ./fleet-hits.db)")
    p.add_argument("--client-id", default="nsor-centre-hits",
                   help="persistent session name: the broker keeps reports for it while "
                   "it is away; one per collector")
    p.add_argument("--idle-s", type=float, default=3.0,
                   help="stop collecting after this long without a new report (3)")
    p.add_argument("--follow", action="store_true",
                   help="keep collecting; print each new report as an NDJSON line")
    p.add_argument("--no-collect", action="store_true",
                   help="only print what the archive already holds")
    p.set_defaults(func=cmd_hits)

    p = sub.add_parser("hint", help="post the retained 'latest registry version' message")
    config_arg(p)
    p.add_argument("version", type=int)
    p.set_defaults(func=cmd_hint)


def cmd_watch(args: argparse.Namespace) -> int:
    from appliance.fleet.watch import watch

    cfg = centre_settings(args.config)
    try:
        watch(cfg, once=args.once, wait_s=args.wait_s, as_json=args.json, out=sys.stdout)
    except KeyboardInterrupt:
        pass
    return 0


def cmd_hits(args: argparse.Namespace) -> int:
    since = parse_since(args.since, now=time.time())
    cfg = centre_settings(args.config)
    archive = HitArchive(args.db)
    try:
        if args.follow:
            def show(report: dict[str, Any]) -> None:
                if float(report.get("at", report["received_at"])) >= since:
                    sys.stdout.write(json.dumps(report, ensure_ascii=False,
                                                sort_keys=True) + "\n")
                    sys.stdout.flush()
            try:
                collect_hits(cfg, archive, client_id=args.client_id, idle_s=args.idle_s,
                             follow=True, on_new=show)
            except KeyboardInterrupt:
                pass
            return 0
        if not args.no_collect:
            collect_hits(cfg, archive, client_id=args.client_id, idle_s=args.idle_s)
        rows = archive.since(since)
        if args.out is not None:
            with open(args.out, "w", encoding="utf-8", newline="") as fh:
                write_hits(rows, args.format, fh)
        else:
            write_hits(rows, args.format, sys.stdout)
        start = datetime.fromtimestamp(since, timezone.utc).isoformat(timespec="seconds")
        print(f"{len(rows)} hit report(s) since {start}; this run: {archive.added} new, "
              f"{archive.duplicates} duplicate(s) dropped, {archive.rejected} malformed",
              file=sys.stderr)
    finally:
        archive.close()
    return 0


def cmd_hint(args: argparse.Namespace) -> int:
    cfg = centre_settings(args.config)
    publish_hint(cfg, args.version, datetime.now(timezone.utc).isoformat(timespec="seconds"))
    print(f"posted: registry version {args.version} is the latest "
          f"({topics.registry_hint_topic(cfg.topic_root)}, retained)")
    return 0

