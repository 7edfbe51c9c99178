"""Pure: the fleet's topics and payloads. No I/O, no clock, no paho.

Topic layout (the broker's ACL template, firmware_config/fleet/acl, enforces it):

    <root>/units/<unit>/status   retained  heartbeat JSON (QoS 1)
    <root>/units/<unit>/online   retained  "1" while connected; "0" is the last will
    <root>/units/<unit>/hits     QoS 1     one hit report JSON per message
    <root>/centre/registry       retained  {"version": N, ...}: a hint, never trusted data

A unit writes only under its own ``units/<unit>/`` and reads only ``centre/``; the centre
reads ``units/#`` and writes ``centre/#``. The online flag is its own topic so that the
last will does not overwrite the last status: the centre keeps seeing what an offline
unit last reported.

Payloads are compact JSON (short keys, no spaces): a heartbeat is a few hundred bytes
over a metered GSM/ISP link, every few minutes, from every unit of the country.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

#: Payload schema version: the centre tools read ``v`` and skip what they do not know.
SCHEMA = 1

ONLINE, OFFLINE = b"1", b"0"

#: Every field a hit report may carry beyond ``id``, ``unit`` and ``v`` (``[fleet]
#: hit_fields``); ``number`` is added only with ``hit_clear_number``.
HIT_FIELDS = ("cnic", "district", "time", "number_hash", "modem")

#: Modem states counted as "up" in a heartbeat.
UP_STATES = frozenset({"ready"})


@dataclass(frozen=True)
class UnitTopics:
    """The topics of one unit under ``root``."""

    root: str
    unit: str

    @property
    def base(self) -> str:
        return f"{self.root}/units/{self.unit}"

    @property
    def status(self) -> str:
        return f"{self.base}/status"

    @property
    def online(self) -> str:
        return f"{self.base}/online"

    @property
    def hits(self) -> str:
        return f"{self.base}/hits"

    @property
    def centre(self) -> str:
        """What a unit subscribes to: everything the centre says."""
        return f"{self.root}/centre/#"


def registry_hint_topic(root: str) -> str:
    return f"{root}/centre/registry"


def units_topic(root: str, leaf: str) -> str:
    """The centre's subscription to one leaf of every unit (``status``, ``online``…)."""
    return f"{root}/units/+/{leaf}"


def split_unit_topic(root: str, topic: str) -> tuple[str, str] | None:
    """``<root>/units/<unit>/<leaf>`` -> (unit, leaf); None for any other topic."""
    parts = topic.split("/")
    if len(parts) != 4 or parts[0] != root or parts[1] != "units" or not parts[2]:
        return None
    return parts[2], parts[3]


def encode(obj: Mapping[str, Any]) -> bytes:
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False,
                      allow_nan=False).encode("utf-8")


def decode(payload: bytes) -> dict[str, Any] | None:
    """A JSON object, or None for anything else (a payload is input, never trusted)."""
    try:
        obj = json.loads(payload.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return None
    return obj if isinstance(obj, dict) else None


# -- heartbeat ---------------------------------------------------------------------------


def _int(value: Any) -> int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return int(value) if math.isfinite(value) else None


def heartbeat(snapshot: Mapping[str, Any], *, version: str, backlog: int) -> dict[str, Any]:
    """The compact status built from ``Service.snapshot()``.

    ``backlog`` is the number of hit reports still waiting for the broker's PUBACK.
    """
    reg = snapshot.get("registry", {})
    modems = snapshot.get("modems", [])
    up = sum(1 for m in modems if m.get("state") in UP_STATES)
    counts = snapshot.get("counts", {})
    inbound: Mapping[str, int] = counts.get("inbound", {})
    outbound: Mapping[str, int] = counts.get("outbound", {})
    return {
        "v": SCHEMA,
        "unit": snapshot.get("unit"),
        "at": _int(snapshot.get("time")),
        "sw": version,
        "up_s": _int(snapshot.get("uptime_s")),
        "reg": {"v": reg.get("version"), "state": reg.get("state"),
                "ok": int(reg.get("state") == "ok"),
                "age_s": _int(reg.get("age_s")), "n": reg.get("records")},
        "modems": {"up": up, "down": len(modems) - up,
                   "m": [{"name": m.get("name"), "state": m.get("state"),
                          "bal": m.get("balance"), "q": m.get("queue", 0)} for m in modems]},
        "queue": snapshot.get("queue", {}).get("pending", 0),
        "alarms": sorted(a.get("kind", "?") for a in snapshot.get("alarms", [])),
        "n_alarms": len(snapshot.get("alarms", [])),  # numeric, for exporters
        "in": sum(inbound.values()),
        "out": dict(sorted(outbound.items())),
        "hits_wait": backlog,
    }


def heartbeat_change_key(hb: Mapping[str, Any]) -> str:
    """What makes a heartbeat worth sending before its interval: anything but the clock,
    the uptime, the registry's age and the counters, which change all the time."""
    reg = dict(hb.get("reg", {}))
    reg.pop("age_s", None)
    kept = {k: v for k, v in hb.items() if k not in ("at", "up_s", "in", "out", "reg")}
    kept["reg"] = reg
    return json.dumps(kept, sort_keys=True, default=str)


# -- hit reports -------------------------------------------------------------------------


def hit_report(*, report_id: str, unit: str, cnic: str, at: float, fields: Iterable[str],
               district: str = "", number_hash: str | None = None, number: str | None = None,
               modem: str | None = None) -> dict[str, Any]:
    """One hit report: ``id`` and ``unit`` always (the centre drops duplicates by ``id``),
    the rest as the policy (``fields``) allows; ``number`` only when it is given, which the
    caller does only with ``hit_clear_number``."""
    wanted = set(fields)
    report: dict[str, Any] = {"v": SCHEMA, "id": report_id, "unit": unit}
    if "cnic" in wanted:
        report["cnic"] = cnic
    if "district" in wanted:
        report["district"] = district
    if "time" in wanted:
        report["at"] = round(at, 3)
    if "number_hash" in wanted and number_hash is not None:
        report["number_hash"] = number_hash
    if "modem" in wanted and modem is not None:
        report["modem"] = modem
    if number is not None:
        report["number"] = number
    return report


# -- the registry hint -------------------------------------------------------------------


def hint_payload(version: int, published_at: str) -> bytes:
    return encode({"v": SCHEMA, "version": version, "published_at": published_at})


def parse_hint(payload: bytes) -> int | None:
    """The version a "latest version" message names, or None if it names none.

    Only a hint: it makes a unit sync now, and TUF decides what (if anything) is installed.
    """
    obj = decode(payload)
    if obj is None:
        return None
    version = obj.get("version")
    if isinstance(version, bool) or not isinstance(version, int) or version < 0:
        return None
    return version


def hint_wants_sync(hinted: int | None, installed: int | None) -> bool:
    """Sync when the hint names a newer version than the installed one. A hint that names
    none (garbled, another schema) still triggers a sync: it costs one small signed
    ``timestamp.json`` request when nothing changed, and a hint must never be ignorable
    by its wording alone."""
    if hinted is None or installed is None:
        return True
    return hinted > installed
