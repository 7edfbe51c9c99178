"""Faults a simulated modem can show, switchable while it runs.

Each field reproduces a failure seen in the field (docs/field-notes.md): slow ``AT+CMGS``
(3-15 s on real networks), transient ``+CMS ERROR`` (500, 38), firmware hangs that need a
replug, lost ``+CMTI``, URCs landing inside a command response, a stray 0xFF byte in a
balance text, a slow ``> `` prompt, loss of registration, a full SIM. Tests and the
technician's control socket set them as plain attributes; the modem is told at once so
that, for example, re-registering releases the messages the network was holding.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field, fields
from typing import Any


@dataclass
class Faults:
    """Per-modem fault switches. Durations are in simulated seconds (× ``time_scale``)."""

    cmgs_latency: float = 0.0     # fixed delay before +CMGS
    cmgs_jitter: float = 0.0      # plus uniform 0..jitter
    cms_error_rate: float = 0.0   # probability that a submit fails
    cms_error_code: int = 500     # … this +CMS ERROR (500 unknown, 38 network out of order)
    hang: bool = False            # read and ignore everything; no answers, no URCs
    drop_cmti_rate: float = 0.0   # probability that a +CMTI / +CDSI is never sent
    urc_in_response: bool = False  # pending URCs (or profile noise) land inside responses
    non_utf8: bool = False        # a 0xFF byte in CUSD text, ATI and noise URCs
    slow_prompt: float = 0.0      # delay before "> "
    registered: bool = True       # False: +CREG: n,0; CMGS → +CMS ERROR: 331; SMS wait
    sim_full: bool = False        # receiving storage refuses messages as if full
    rssi: int = 17                # +CSQ <rssi> (0-31, 99 unknown)
    report_delay: float = 1.0     # SMSC → handset → status report, when TP-SRR is set
    # Deterministic failures: the 1-based numbers of the coming submits (counted from when
    # this is set) that fail with cms_error_code, e.g. [2] fails part 2 of the next reply.
    fail_submits: list[int] = field(default_factory=list)
    _listener: Callable[[str, Any, Any], None] | None = field(
        default=None, repr=False, compare=False)

    def __setattr__(self, name: str, value: Any) -> None:
        old = self.__dict__.get(name)
        super().__setattr__(name, value)
        listener = self.__dict__.get("_listener")
        if listener is not None and name != "_listener" and old != value:
            listener(name, old, value)

    def update(self, changes: dict[str, Any]) -> None:
        """Set several fields by name, checking names and types (for the control socket)."""
        known = {f.name: f for f in fields(self) if not f.name.startswith("_")}
        for name, value in changes.items():
            if name not in known:
                raise ValueError(f"unknown fault {name!r}; known: {', '.join(sorted(known))}")
            kind = type(getattr(self, name))
            if kind is bool and isinstance(value, str):
                value = value.lower() in ("1", "true", "yes", "on")
            setattr(self, name, kind(value))

    def as_dict(self) -> dict[str, Any]:
        return {f.name: getattr(self, f.name) for f in fields(self) if not f.name.startswith("_")}
