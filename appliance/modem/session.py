"""Run AT commands one at a time over a :class:`Port`, inside the owner thread.

The session feeds every byte from the mailbox through the sans-I/O core
(:mod:`appliance.modem.protocol`). Whatever is not the answer to the running command is set
aside, never lost: URCs go to ``urcs`` (a +CMTI inside an ``AT+CMGS`` exchange is still
read, docs/field-notes.md B1), and work items that arrive meanwhile go to ``deferred``.

``AT+CMGS=n`` → ``> `` → PDU + Ctrl-Z → ``+CMGS: mr`` is :meth:`submit`: one call, so no
other command can land inside the PDU (B5).
"""

from __future__ import annotations

import logging
import queue
import time
from collections import deque
from collections.abc import Callable

from ..errors import ModemCommandError, ModemGone, ModemTimeout, Stopping
from .answers import parse_reference
from .port import CALL, DATA, GONE, POKE, STOP, Item, Port
from .protocol import ATProtocol, Garbage, Prompt, Response, Stray, Urc

TRACE = 5  # below DEBUG: raw AT traffic
logging.addLevelName(TRACE, "TRACE")

#: Resync probes: each answer carries its own line, so none can pass for another's.
_PROBES = (("AT+CSQ", "+CSQ"), ("AT+CREG?", "+CREG"), ("AT+CPIN?", "+CPIN"))


class ATSession:
    def __init__(self, port: Port, mailbox: "queue.Queue[Item]", logger: logging.Logger,
                 beat: Callable[[], None]) -> None:
        self.port = port
        self.proto = ATProtocol()
        self.mailbox = mailbox
        self.log = logger
        self.urcs: deque[Urc] = deque()
        self.deferred: deque[Item] = deque()
        self.stop_requested = False
        self.memory_full = False   # a +CMS ERROR: 322 (memory full) seen, answered or not
        self._beat = beat

    # -- the mailbox ------------------------------------------------------------------------

    def _wait_item(self, deadline: float) -> Item | None:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            return None
        self._beat()
        try:
            return self.mailbox.get(timeout=min(remaining, 1.0))
        except queue.Empty:
            return None

    def _take(self, item: Item) -> None:
        """Handle one mailbox item while a command is running."""
        if item.kind == DATA:
            if item.generation == self.port.generation:
                if self.log.isEnabledFor(TRACE):
                    self.log.log(TRACE, "<< %r", item.payload)
                self.proto.receive_data(item.payload)
        elif item.kind == GONE:
            if item.generation == self.port.generation:
                raise ModemGone(f"port {self.port.url} failed: {item.payload}")
        elif item.kind == STOP:
            self.stop_requested = True
            self.deferred.append(item)
        elif item.kind in (POKE, CALL):
            self.deferred.append(item)

    def pump(self, timeout: float) -> Item | None:
        """Idle wait: process bytes (URCs land in ``urcs``); return the first work item."""
        deadline = time.monotonic() + timeout
        while True:
            if self.deferred:
                return self.deferred.popleft()
            item = self._wait_item(deadline)
            if item is None:
                return None
            if item.kind == DATA or item.kind == GONE:
                self._take(item)
                self._collect_idle()
                if self.urcs:
                    return None
            else:
                return item

    def take_arrived(self) -> None:
        """Process every byte already in the mailbox, without waiting: URCs that arrived
        together (a burst of +CMTI) are then seen together. Work items keep their order
        in ``deferred``."""
        while True:
            try:
                item = self.mailbox.get_nowait()
            except queue.Empty:
                break
            self._take(item)
        self._collect_idle()

    def _collect_idle(self) -> None:
        for ev in self.proto.events():
            if isinstance(ev, Urc):
                self.urcs.append(ev)
            elif isinstance(ev, Stray) and ev.final.kind == "CMS" and ev.final.code == 322:
                self.memory_full = True  # TS 27.005 §3.2.5: 322 = memory full
            elif isinstance(ev, (Stray, Garbage)):
                self.log.debug("ignored %r", ev)

    # -- commands --------------------------------------------------------------------------

    def _write(self, data: bytes) -> None:
        if self.log.isEnabledFor(TRACE):
            shown = b'AT+CPIN="****"\r' if data.upper().startswith(b"AT+CPIN=") else data
            self.log.log(TRACE, ">> %r", shown)
        self.port.write(data)

    def _await(self, deadline: float, want_prompt: bool, what: str,
               interruptible: bool = True) -> Response | Prompt:
        while True:
            for ev in self.proto.events():
                if isinstance(ev, Urc):
                    self.urcs.append(ev)
                elif isinstance(ev, Response):
                    return ev
                elif isinstance(ev, Prompt) and want_prompt:
                    return ev
                elif isinstance(ev, Stray) and ev.final.kind == "CMS" and ev.final.code == 322:
                    self.memory_full = True
                else:
                    self.log.debug("ignored %r while waiting for %s", ev, what)
            if self.stop_requested and interruptible:
                # A stop never interrupts a PDU transaction (its +CMGS: mr must be recorded,
                # or the part is sent twice); elsewhere it ends the wait.
                raise Stopping()
            item = self._wait_item(deadline)
            if item is None:
                if time.monotonic() >= deadline:
                    raise ModemTimeout(f"no answer to {what} in time")
                continue
            self._take(item)

    def run(self, command: str, timeout: float, *,
            interruptible: bool = True) -> tuple[str, ...]:
        """Run one command; return its intermediate lines; raise on an error result.
        ``interruptible=False``: a stop request waits for this command (a step of a send)."""
        self._write(self.proto.command(command))
        ev = self._await(time.monotonic() + timeout, False, command, interruptible)
        assert isinstance(ev, Response)
        return self._lines_or_raise(command, ev)

    def _lines_or_raise(self, command: str, ev: Response) -> tuple[str, ...]:
        f = ev.final
        if f.ok:
            return ev.lines
        if f.kind == "CMS" and f.code == 322:
            self.memory_full = True  # TS 27.005 §3.2.5: a write refused, the SIM is full
        label = {"CMS": "+CMS ERROR", "CME": "+CME ERROR"}.get(f.kind, f.kind)
        detail = f"{label}: {f.code}" if f.code is not None else (f.text or label)
        raise ModemCommandError(f"{command} answered {detail}", kind=f.kind, code=f.code,
                                text=f.text)

    def submit(self, tpdu_length: int, pdu_hex: str, *, prompt_timeout: float,
               timeout: float) -> int:
        """One SMS-SUBMIT: ``AT+CMGS=n``, ``> ``, PDU + Ctrl-Z, ``+CMGS: mr`` (TS 27.005 §3.5.1)."""
        return self._with_pdu(f"AT+CMGS={tpdu_length}", pdu_hex, "+CMGS",
                              prompt_timeout=prompt_timeout, timeout=timeout)

    def write_submit(self, tpdu_length: int, pdu_hex: str, *, timeout: float) -> int:
        """Store an SMS-SUBMIT unsent: ``AT+CMGW=n,2`` … ``+CMGW: index`` (§3.5.3)."""
        return self._with_pdu(f"AT+CMGW={tpdu_length},2", pdu_hex, "+CMGW",
                              prompt_timeout=timeout, timeout=timeout)

    def send_stored(self, index: int, *, timeout: float) -> int:
        """Send a stored message: ``AT+CMSS=index`` → ``+CMSS: mr`` (§3.5.2)."""
        command = f"AT+CMSS={index}"
        self._write(self.proto.command(command))
        # Uninterruptible like CMGS: its +CMSS: mr must be recorded.
        ev = self._await(time.monotonic() + timeout, False, command, interruptible=False)
        assert isinstance(ev, Response)
        return self._reference(command, ev, "+CMSS")

    def _with_pdu(self, command: str, pdu_hex: str, answer: str, *, prompt_timeout: float,
                  timeout: float) -> int:
        self._write(self.proto.command(command, prompt=True))
        ev = self._await(time.monotonic() + prompt_timeout, True, f"the > prompt of {command}",
                         interruptible=False)
        if isinstance(ev, Prompt) and self.proto.pending is None:
            # "> " and the final result in one read: the modem ended the command before
            # taking a PDU. Its result is already parsed, next in the queue.
            ev = self._await(time.monotonic() + timeout, False, command, interruptible=False)
        if isinstance(ev, Response):  # an error instead of the prompt
            self._lines_or_raise(command, ev)
            raise ModemCommandError(f"{command} answered OK without a prompt")
        self._write(self.proto.pdu(pdu_hex))
        ev = self._await(time.monotonic() + timeout, False, command, interruptible=False)
        assert isinstance(ev, Response)
        return self._reference(command, ev, answer)

    def _reference(self, command: str, ev: Response, answer: str) -> int:
        """The number in ``+CMGS: <mr>`` / ``+CMSS: <mr>`` / ``+CMGW: <index>``."""
        number = parse_reference(self._lines_or_raise(command, ev), answer)
        if number is not None:
            return number
        raise ModemCommandError(f"{command} answered OK without {answer}: <number>")

    def wait_urc(self, name: str, timeout: float) -> Urc | None:
        """Wait for one URC by name (``+CUSD`` after ``AT+CUSD=1,…``); others are kept."""
        deadline = time.monotonic() + timeout
        while True:
            for i, urc in enumerate(self.urcs):
                if urc.name == name:
                    del self.urcs[i]
                    return urc
            item = self._wait_item(deadline)
            if item is None:
                if time.monotonic() >= deadline:
                    return None
                continue
            self._take(item)
            self._collect_idle()

    def resync(self, probe_timeout: float) -> bool:
        """After a timeout, get back in step with the modem (B4). True when in sync.

        Cancel any PDU entry (ESC), forget the pending command, and drain until the line is
        quiet. Then probe with commands whose answers carry their own line (``+CSQ:``,
        ``+CREG:``, ``+CPIN:``). A late answer to something older — the ``+CMSS: 2 OK`` of a
        send that took longer than its timeout, a bare ``OK`` — may still arrive first and
        look like the probe's answer; it is recognised by the missing line, and then the
        probe's own answer is waited for *without writing the probe again*: a second probe
        would take the first one's answer, and every later command would then read the
        answer of the one before it (an ``AT+CMGR`` the previous message's PDU). Each probe
        is a different command, so a late answer to an earlier probe cannot pass either.
        """
        self._write(self.proto.escape())
        self.proto.abort()
        self._drain_quiet(probe_timeout)
        for command, tag in _PROBES:
            self._write(self.proto.command(command))
            deadline = time.monotonic() + probe_timeout
            while True:
                try:
                    ev = self._await(deadline, False, command)
                except ModemTimeout:
                    self.proto.abort()
                    self._drain_quiet(probe_timeout)
                    break  # try the next probe
                assert isinstance(ev, Response)
                if ev.final.ok and any(line.upper().startswith(tag) for line in ev.lines):
                    return True
                self.log.debug("resync: %r is not the answer to %s; waiting on", ev, command)
                self.proto.command(command)  # re-arm the same probe; nothing is written
        return False

    def _drain_quiet(self, limit: float, quiet: float = 0.3) -> None:
        """Read (never tcflush: that races the byte pump) until nothing has come for
        ``quiet`` seconds, or ``limit`` has passed. What comes is Stray or a URC."""
        end = time.monotonic() + limit
        while (now := time.monotonic()) < end:
            item = self._wait_item(min(end, now + quiet))
            if item is None:
                return
            self._take(item)
            self._collect_idle()
