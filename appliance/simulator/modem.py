"""One simulated GSM modem: identity, SIM, settings and the services its AT commands use.

The modem's state lives here; its serial side (the pty and the thread serving it) lives in
:mod:`appliance.simulator.serial_side`. Everything here runs with the network lock held, so the
network, tests and the control socket may call it from any thread; queued unsolicited
results and timers are carried out by the serving thread.
"""

from __future__ import annotations

import collections
import heapq
import itertools
import logging
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from appliance.errors import PduError
from appliance.simulator.at import CME_TEXT, CMS_TEXT, ATState, AtReply, CommandTable
from appliance.simulator.commands import COMMANDS
from appliance.simulator.faults import Faults
from appliance.simulator.pdu import EncodedPdu, decode_deliver
from appliance.simulator.profiles import ModemProfile, Operator
from appliance.simulator.serial_side import SerialSide
from appliance.simulator.storage import StoredMessage, build_memories

if TYPE_CHECKING:
    from appliance.simulator.network import Network


@dataclass
class _Urc:
    lines: list[str]
    due: float = 0.0


@dataclass(frozen=True)
class StoredSms:
    """A message slot as a test sees it: where it is, and what it says when decodable."""

    memory: str
    index: int
    stat: int
    kind: str
    pdu: str
    sender: str | None
    text: str | None


def _luhn_complete(digits: str) -> str:
    total = 0
    for i, ch in enumerate(reversed(digits)):
        d = int(ch) * (2 if i % 2 == 0 else 1)
        total += d - 9 if d > 9 else d
    return digits + str((10 - total % 10) % 10)


class SimModem:
    """A modem of the bank; see the module docstring. Create through :class:`Simulator`."""

    def __init__(self, *, name: str, index: int, profile: ModemProfile, operator: Operator,
                 number: str, pin: str | None, sim_capacity: int, balance: float,
                 directory: Path, network: Network, time_scale: float, seed: int) -> None:
        self.name, self.profile, self.operator, self.number = name, profile, operator, number
        self.command_table: CommandTable = COMMANDS   # what it answers (simulator.at)
        self.pin, self.balance, self.network = pin, balance, network
        self.port = str(directory / name)
        self.log = logging.getLogger(f"{__name__}.{name}")
        self.imei = _luhn_complete(f"86148003{index:06d}")
        self.imsi = f"{operator.mcc_mnc}{index:010d}"
        self.smsc = operator.smsc
        self.rng = random.Random(seed * 7919 + index)
        self.time_scale = time_scale
        self.memories = build_memories(profile.storages, sim_capacity,
                                       profile.me_capacity, profile.first_index)
        self.rejected: list[tuple[str, str]] = []   # (pdu, reason) refused with CMS 304
        self.dropped_urcs = 0
        self.clock_offset = timedelta(0)
        self.cfun = 1
        self.lock: threading.RLock = network.lock
        self._pin_ok = pin is None
        self.state = self._fresh_state()
        self._mr = 0
        self.serial = SerialSide(self)
        self._urcs: list[_Urc] = []
        self._ta_buffer: list[_Urc] = []
        self._timers: list[tuple[float, int, Callable[[], None]]] = []
        self._timer_seq = itertools.count()
        self._was_registered = False
        self._reboot_pending = False
        self.command_log: collections.deque[tuple[float, str]] = collections.deque(maxlen=2000)
        self.submits_since_fault = 0   # counts submits for Faults.fail_submits
        self.faults = Faults()
        self.faults._listener = self._fault_changed

    # --- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        with self.lock:
            self.serial.open_port()
            self.power_on()
            if self.profile.periodic_interval:
                self.schedule(self.profile.periodic_interval, self._periodic)
            self.serial.flush_boot_noise()
        self.serial.start()

    def stop(self) -> None:
        self.serial.stop()

    def unplug(self) -> None:
        """Pull the USB plug: the pty closes (client reads fail) and the symlink vanishes."""
        self.serial.request("unplug")

    def replug(self) -> None:
        """Plug back in: a new pty behind the same symlink; the module boots afresh."""
        self.serial.request("replug")

    def commands(self) -> list[str]:
        """The AT command lines received so far (the last 2,000), for tests."""
        with self.lock:
            return [line for _, line in self.command_log]

    def command_times(self) -> list[tuple[float, str]]:
        """The same lines with the Unix time each arrived (the benchmark's AT trace)."""
        with self.lock:
            return list(self.command_log)

    @property
    def plugged(self) -> bool:
        return self.serial.port is not None

    @property
    def sim_capacity(self) -> int:
        return self.memories["SM"].capacity

    @sim_capacity.setter
    def sim_capacity(self, value: int) -> None:
        with self.lock:
            self.memories["SM"].capacity = value
            self.storage_freed()

    def stored(self) -> list[StoredSms]:
        """What the SIM (and module memory) hold now, decoded where possible."""
        out: list[StoredSms] = []
        with self.lock:
            for name in ("SM", "ME"):
                memory = self.memories.get(name)
                for index, msg in memory.items() if memory and memory.capacity else []:
                    sender = text = None
                    if msg.kind == "deliver":
                        try:
                            deliver = decode_deliver(msg.pdu)
                            sender, text = deliver.sender, deliver.user_data.text
                        except PduError:
                            pass
                    out.append(StoredSms(name, index, msg.stat, msg.kind, msg.pdu, sender, text))
        return out

    # --- services for the interpreter (called with the lock held) --------------------------

    def scaled(self, seconds: float) -> float:
        return max(0.0, seconds) * self.time_scale

    def cme(self, code: int) -> AtReply:
        if self.state.cmee == 0:
            return AtReply(error="ERROR")
        shown = CME_TEXT.get(code, str(code)) if self.state.cmee == 2 else str(code)
        return AtReply(error=f"+CME ERROR: {shown}")

    def cms(self, code: int) -> AtReply:
        shown = CMS_TEXT.get(code, str(code)) if self.state.cmee == 2 else str(code)
        return AtReply(error=f"+CMS ERROR: {shown}")

    def pin_required(self) -> bool:
        return not self._pin_ok

    def unlock_sim(self) -> None:
        self._pin_ok = True
        self.queue_urc("+CPIN: READY")
        self.check_registration()

    def radio_on(self) -> bool:
        return self.plugged and self.cfun == 1

    def registered(self) -> bool:
        return self.radio_on() and self._pin_ok and self.faults.registered

    def registration_line(self, name: str, n: int, *, urc: bool) -> str:
        """TS 27.007 §7.2: the read answer is ``<n>,<stat>[,…]``, the URC ``<stat>[,…]``;
        the registered <stat> of each report is the profile's (an LTE module "SMS only"
        says +CREG 6, and its +CGREG may stay 0)."""
        p = self.profile
        stat = p.registered_stat.get(name, 1) if self.registered() else 0
        cell = ""
        if n == 2 and stat:
            area, ci = ("00A1", "01A2D001") if name == "+CEREG" else ("0FA1", "1B2C")
            cell = (f", {area}, {ci}" if p.unquoted_location else f',"{area}","{ci}"') \
                + (",7" if name == "+CEREG" or p.registered_stat.get(name) == 6 else "")
        return f"{name}: {stat}{cell}" if urc else f"{name}: {n},{stat}{cell}"

    def next_mr(self) -> int:
        self._mr = (self._mr + 1) % 256
        return self._mr

    def reset_settings(self) -> None:
        self.state = self._fresh_state()

    def reboot_after_reply(self) -> None:
        self._reboot_pending = True

    def cnmi_changed(self) -> None:
        """TS 27.005 §3.4.1 <bfr>: entering mode 1-3 flushes (0) or clears (1) the TA buffer."""
        if self.state.cnmi[0] == 0:
            return
        if self.state.cnmi[4] == 0:
            self._urcs.extend(self._ta_buffer)
        self._ta_buffer.clear()
        self.serial.wake()

    def storage_freed(self) -> None:
        self.network.retry(self)

    def schedule(self, delay: float, fn: Callable[[], None]) -> None:
        heapq.heappush(self._timers, (time.monotonic() + delay, next(self._timer_seq), fn))
        self.serial.wake()

    def queue_urc(self, *lines: str, delay: float = 0.0, droppable: bool = False,
                  sms: bool = False) -> None:
        """Queue an unsolicited result. ``sms`` ones obey +CNMI mode 0 (kept in the TA)."""
        if droppable and self.faults.drop_cmti_rate and \
                self.rng.random() < self.faults.drop_cmti_rate:
            self.dropped_urcs += 1
            self.log.debug("fault: dropped %s", lines[0])
            return
        urc = _Urc(list(lines), time.monotonic() + delay)
        if sms and self.state.cnmi[0] == 0:
            self._ta_buffer.append(urc)
            return
        self._urcs.append(urc)
        self.serial.wake()

    # --- what the network hands the modem (called with the lock held) ----------------------

    def accept_deliver(self, pdu: EncodedPdu, *, notify: bool = True,
                       force: bool = False) -> bool:
        """Take an SMS-DELIVER from the network; False if it must wait (off, full)."""
        if not force and not self.registered():
            return False
        if notify and self.state.cnmi[1] == 2 and self.plugged:
            self.queue_urc(f"+CMT: ,{pdu.tpdu_length}", pdu.pdu, sms=True)  # TS 27.005 §3.4.1
            return True
        memory = self.memories[self.state.cpms[2]]
        if self.faults.sim_full or memory.full():
            return False
        index = memory.put(StoredMessage(pdu.pdu, pdu.tpdu_length))
        if notify and self.state.cnmi[1] in (1, 3):
            self.queue_urc(f'+CMTI: "{memory.name}",{index}', droppable=True, sms=True)
        return True

    def accept_status_report(self, pdu: EncodedPdu) -> bool:
        """Take an SMS-STATUS-REPORT, routed by +CNMI <ds> (TS 27.005 §3.4.1)."""
        if not self.registered():
            return False
        ds = self.state.cnmi[3]
        if ds == 0:
            self.log.debug("status report not routed (+CNMI ds=0)")
        elif ds == 1:
            self.queue_urc(f"+CDS: {pdu.tpdu_length}", pdu.pdu, sms=True)
        else:
            memory = self.memories[self.state.cpms[2]]
            if self.faults.sim_full or memory.full():
                return False
            index = memory.put(StoredMessage(pdu.pdu, pdu.tpdu_length, kind="status-report"))
            self.queue_urc(f'+CDSI: "{memory.name}",{index}', droppable=True, sms=True)
        return True

    # --- internals ---------------------------------------------------------------------------

    def _fresh_state(self) -> ATState:
        p = self.profile
        return ATState(echo=p.echo, cnmi=list(p.cnmi_default), cpms=list(p.default_storage))

    def power_on(self) -> None:
        self.state = self._fresh_state()
        self._pin_ok = self.pin is None
        self.cfun = 1
        self.serial.reset_parser()
        self._urcs.clear()
        self._ta_buffer.clear()
        boot = [u for u in self.profile.boot_urcs if self._pin_ok or "READY" not in u]
        for line in boot:
            self.queue_urc(line)
        if not self._pin_ok:
            self.queue_urc("+CPIN: SIM PIN")
        self.check_registration()

    def check_registration(self) -> None:
        now = self.registered()
        if now == self._was_registered:
            return
        self._was_registered = now
        for name, n in (("+CREG", self.state.creg), ("+CGREG", self.state.cgreg),
                        ("+CEREG", self.state.cereg)):
            if name not in self.profile.registration:
                continue
            if n >= 1:
                self.queue_urc(self.registration_line(name, n, urc=True))
        if now:
            self.network.retry(self)

    def _fault_changed(self, name: str, old: Any, new: Any) -> None:
        with self.lock:
            self.log.info("fault %s: %r -> %r", name, old, new)
            if name == "fail_submits":
                self.submits_since_fault = 0
            if name == "registered":
                self.check_registration()
            elif name == "sim_full" and not new:
                self.storage_freed()
            self.serial.wake()

    def _periodic(self) -> None:
        if self.plugged and self.state.curc:
            for line in self.profile.periodic_urcs:
                self.queue_urc(line)
        # Not time-scaled: this is background noise, not a delay a test wants shortened.
        self.schedule(self.profile.periodic_interval, self._periodic)

    # --- for the serving thread (lock held) -------------------------------------------------

    def next_timeout(self) -> float:
        """Seconds until the next timer or queued URC is due (at most 1)."""
        now = time.monotonic()
        dues = [t[0] for t in self._timers[:1]]
        if not self.faults.urc_in_response:
            dues += [u.due for u in self._urcs]
        return min([1.0] + [max(0.0, d - now) for d in dues])

    def run_due_timers(self) -> None:
        with self.lock:
            now = time.monotonic()
            while self._timers and self._timers[0][0] <= now:
                _, _, fn = heapq.heappop(self._timers)
                fn()

    def take_due_urcs(self) -> list[list[str]]:
        now = time.monotonic()
        due = [u.lines for u in self._urcs if u.due <= now]
        self._urcs = [u for u in self._urcs if u.due > now]
        return due

    def take_all_urcs(self) -> list[list[str]]:
        urcs, self._urcs = [u.lines for u in self._urcs], []
        return urcs

    def after_reply(self) -> None:
        if self._reboot_pending:  # AT+CFUN=1,1 answers OK, then restarts
            self._reboot_pending = False
            self.power_on()
