"""What a modem's owner thread and the rest of the unit agree on: the settings it is given
and the status it reports (the calls it makes are its two ports, :mod:`.ports`)."""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any

from .atvalues import Signal


class ModemState:
    STARTING = "starting"
    READY = "ready"
    NO_NETWORK = "no network"
    FAILED = "failed"
    GONE = "gone"
    STOPPED = "stopped"


@dataclass
class ModemStatus:
    """A snapshot for status pages, the bank and the watchdog (copied on read)."""

    name: str
    port: str
    state: str = ModemState.STARTING
    rssi: int | None = None
    operator: str = ""
    registered: bool = False
    network: str = ""          # why it is (not) registered for SMS (atregistration.sms_service)
    identity: dict[str, str] = field(default_factory=dict)
    sim_used: int | None = None
    sim_total: int | None = None
    last_error: str = ""
    last_error_at: float | None = None
    received: int = 0
    sent_parts: int = 0
    send_failures: int = 0
    reopens: int = 0
    held: int = 0   # +CMT messages not yet stored, kept by the owner thread (no SIM copy)
    balance: float | None = None
    balance_text: str = ""
    balance_at: float | None = None
    since: float = field(default_factory=time.time)

    @property
    def bars(self) -> int:
        """0–5 signal bars from RSSI (TS 27.007 §8.5: 0..31, 99 = unknown)."""
        return 0 if self.rssi is None else Signal(self.rssi).bars


@dataclass(frozen=True)
class ModemSettings:
    """What the engine needs from ``ModemConfig`` (kept apart so tests can build one)."""

    name: str
    port: str
    pin: str | None = None
    smsc: str | None = None
    baudrate: int = 115200
    flow_control: str = "none"
    command_timeout_s: float = 10.0
    send_timeout_s: float = 60.0
    storage: str = "SM"
    cmms: bool = True
    status_reports: bool = True
    concat_ref16: bool = False
    validity_hours: int = 24
    sweep_interval_s: float = 60.0
    idle_check_s: float = 5.0
    health_interval_s: float = 30.0
    send_mode: str = "stored"
    balance_ussd: str = ""
    balance_pattern: str = ""
    balance_interval_minutes: float = 360.0
    country_code: str = "92"

    @classmethod
    def from_config(cls, cfg: Any, country_code: str = "92") -> ModemSettings:
        names = cls.__dataclass_fields__.keys() - {"country_code"}
        return cls(country_code=country_code, **{n: getattr(cfg, n) for n in names})
