"""The serial side of a simulated modem: one thread that alone reads and writes its pty.

Like a modem's firmware owning its UART, this thread parses the client's bytes robustly
(command lines end with CR, V.250 §5.2.1; after ``> `` a PDU is collected until Ctrl-Z,
and ESC cancels, TS 27.005 §3.5.1), runs each command under the network lock, writes the
answer after any simulated delay, and sends unsolicited results only between commands, as
``+CNMI`` mode 2 buffers them while the link is busy (TS 27.005 §3.4.1) — unless the
``urc_in_response`` fault says otherwise. Other threads never touch the port: they change
state under the lock and wake this thread through a pipe; plugging is a request it carries
out, so a port is never closed under a ``select``.
"""

from __future__ import annotations

import os
import queue
import select
import threading
from pathlib import Path
from typing import TYPE_CHECKING

from appliance.simulator import at_sms as sim_at_sms
from appliance.simulator.at import AtReply, execute_line
from appliance.simulator.port import PtyPort, frame_reply, frame_urc

if TYPE_CHECKING:
    from appliance.simulator.modem import SimModem

TRACE = 5  # raw AT traffic, below DEBUG
MAX_LINE = 1024
MAX_PDU_HEX = 2 * 200


class SerialSide:
    """The pty, the thread serving it, and the command-line parser state."""

    def __init__(self, modem: SimModem) -> None:
        self.modem = modem
        self.port: PtyPort | None = None
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._requests: queue.SimpleQueue[tuple[str, threading.Event]] = queue.SimpleQueue()
        self._interrupt = threading.Event()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._rx = bytearray()
        self._pdu = bytearray()
        self._echo = bytearray()
        self.prompt_len: int | None = None  # set while a PDU is being collected
        self.prompt_stat: int | None = None  # AT+CMGW: store instead of send

    # --- called from any thread ------------------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=f"sim-{self.modem.name}",
                                        daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stopping = True
        self._interrupt.set()
        self.wake()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.close_port()
        for fd in (self._wake_r, self._wake_w):
            os.close(fd)

    def wake(self) -> None:
        try:
            os.write(self._wake_w, b"x")
        except OSError:
            pass  # the pipe is full (already awake) or closed (stopping)

    def request(self, kind: str) -> None:
        """Carry out "unplug" or "replug" in the serving thread and wait for it."""
        if self._thread is None or threading.current_thread() is self._thread:
            self._carry_out(kind)
            return
        done = threading.Event()
        self._requests.put((kind, done))
        self._interrupt.set()
        self.wake()
        if not done.wait(timeout=5):
            raise TimeoutError(f"modem {self.modem.name}: {kind} not carried out within 5 s")

    def reset_parser(self) -> None:
        self._rx.clear()
        self._pdu.clear()
        self.prompt_len = None
        self.prompt_stat = None

    def open_port(self) -> None:
        self.port = PtyPort(Path(self.modem.port))

    def close_port(self) -> None:
        if self.port is not None:
            self.port.close()
            self.port = None

    # --- the serving thread ------------------------------------------------------------------

    def _carry_out(self, kind: str) -> None:
        modem = self.modem
        with modem.lock:
            if self.port is not None:
                self.close_port()
                modem.log.info("unplugged")
            if kind == "replug":
                self.open_port()
                assert self.port is not None
                modem.log.info("replugged at %s -> %s", modem.port, self.port.device)
                modem.power_on()
                self.flush_boot_noise()
            else:
                modem.check_registration()

    def _run(self) -> None:
        while not self._stopping:
            with self.modem.lock:
                timeout = self.modem.next_timeout()
            port = self.port
            fds = [self._wake_r] + ([port.master] if port else [])
            try:
                ready, _, _ = select.select(fds, [], [], timeout)
            except (OSError, ValueError):
                ready = []
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            self._serve_requests()
            port = self.port
            if port is not None and port.master in ready:
                data = port.read()
                if data:
                    self.modem.log.log(TRACE, "<< %r", data)
                    self._feed(data)
            self.modem.run_due_timers()
            self._flush_urcs()

    def _serve_requests(self) -> None:
        self._interrupt.clear()
        while True:
            try:
                kind, done = self._requests.get_nowait()
            except queue.Empty:
                return
            self._carry_out(kind)
            done.set()

    def flush_boot_noise(self) -> None:
        """Write what the module printed while booting now, before anyone can open the port.

        A client that opens later never sees it (pySerial flushes input on open), as with a
        UART modem that booted before the port was opened; without this, whether a client
        sees "RDY" would depend on thread timing.
        """
        self._flush_urcs()

    def _flush_urcs(self) -> None:
        modem = self.modem
        with modem.lock:
            if modem.faults.urc_in_response or self.prompt_len is not None:
                return
            due = modem.take_due_urcs()
            if not due:
                return
            if modem.faults.hang:
                modem.dropped_urcs += len(due)
                return
            data = b"".join(frame_urc(modem.state, lines) for lines in due)
        self._write(data)

    def _write(self, data: bytes) -> None:
        port = self.port
        if port is not None and data:
            self.modem.log.log(TRACE, ">> %r", data)
            port.write(data)

    def _feed(self, data: bytes) -> None:
        """Consume the client's bytes: command lines, or a PDU after the prompt."""
        if self.modem.faults.hang:
            self.reset_parser()  # a hung firmware forgets everything it was sent
            return
        for byte in data:
            if self.modem.state.echo:  # V.250 E1: echo as received, before acting on it
                self._echo.append(byte)
            if self.prompt_len is not None:
                self._feed_pdu(byte)
            elif byte == 0x0D:  # S3, command line termination
                line = bytes(self._rx)
                self._rx.clear()
                self._flush_echo()
                self._execute(line)
            elif byte == 0x08:  # S5, editing character
                del self._rx[-1:]
            elif byte == 0x0A and not self._rx:
                continue
            elif len(self._rx) < MAX_LINE:
                self._rx.append(byte)
        self._flush_echo()

    def _feed_pdu(self, byte: int) -> None:
        if byte == 0x1A:
            pdu = bytes(self._pdu).decode("latin-1")
            length = self.prompt_len or 0
            stat = self.prompt_stat
            self.reset_parser()
            self._flush_echo()
            with self.modem.lock:
                reply = (sim_at_sms.submit_pdu(self.modem, pdu, length) if stat is None
                         else sim_at_sms.write_pdu(self.modem, pdu, length, stat))
            self._send(reply)
        elif byte == 0x1B:
            self.reset_parser()
            self._flush_echo()
            self._send(AtReply())
        elif byte not in b"\r\n " and len(self._pdu) < MAX_PDU_HEX:
            self._pdu.append(byte)

    def _flush_echo(self) -> None:
        if self._echo:
            self._write(bytes(self._echo))
            self._echo.clear()

    def _execute(self, raw: bytes) -> None:
        text = raw.decode("latin-1").strip()
        if not text or all(ord(ch) < 0x20 for ch in text):
            return  # an empty line is no command (V.250 §5.2.1)
        start = text.upper().find("AT")  # V.250: characters before the "AT" prefix are ignored
        with self.modem.lock:
            reply = execute_line(self.modem, text[start + 2:]) if start >= 0 \
                else AtReply(error="ERROR")
            self.modem.check_registration()
        self._send(reply)

    def _send(self, reply: AtReply) -> None:
        modem = self.modem
        if reply.delay > 0 and self._interrupt.wait(reply.delay):
            return  # unplugged or stopped while "the network" was busy: the answer is lost
        with modem.lock:
            if modem.faults.hang:
                return
            if reply.before_write is not None:
                reply.before_write()
            injected: list[str] = []
            if modem.faults.urc_in_response:
                injected = [line for lines in modem.take_all_urcs() for line in lines]
                noise = modem.profile.noise_urc + ("\xff" if modem.faults.non_utf8 else "")
                injected = injected or [noise]
            data = frame_reply(modem.state, reply, injected)
            if reply.prompt is not None:
                self.prompt_len = reply.prompt
                self.prompt_stat = reply.prompt_stat
        self._write(data)
        with modem.lock:
            modem.after_reply()
