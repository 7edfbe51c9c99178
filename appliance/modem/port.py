"""A modem's serial port and the byte pump that reads it.

The owner thread (:mod:`appliance.modem.engine`) is the only writer and the only reader of
meaning. A second, dumb thread only reads bytes and posts them into the owner's mailbox, the
way pySerial's ``threaded.ReaderThread`` does: the owner can then wait on ONE queue for
bytes, work and wake-ups, with no polling delay between a reply being queued and its
``AT+CMGS`` leaving.

Ports are pySerial URLs (``serial_for_url``): device paths in the field
(``/dev/nsor/modem0``), ``spy://`` to hexdump traffic while debugging, and the simulator's
pty symlinks in tests and the demo.
"""

from __future__ import annotations

import logging
import queue
import threading
from dataclasses import dataclass
from typing import Any

import serial

from ..errors import ModemGone

#: Inbox item kinds.
DATA, GONE, POKE, CALL, STOP = "data", "gone", "poke", "call", "stop"


@dataclass(frozen=True)
class Item:
    kind: str
    payload: Any = None
    generation: int = 0


class Port:
    """One open serial port plus its reader thread. Re-open by creating a new ``Port``."""

    def __init__(self, url: str, *, baudrate: int, flow_control: str, mailbox: "queue.Queue[Item]",
                 generation: int, logger: logging.Logger) -> None:
        self.url = url
        self.generation = generation
        self._mailbox = mailbox
        self._log = logger
        self._closed = threading.Event()
        try:
            self._serial = serial.serial_for_url(
                url, baudrate=baudrate, timeout=0.2, write_timeout=10,
                rtscts=flow_control == "rtscts", dsrdtr=flow_control == "dsrdtr",
                xonxoff=flow_control == "xonxoff", do_not_open=True)
            if hasattr(self._serial, "exclusive") and url.startswith("/"):
                # flock(): a second process (ModemManager, a stray minicom) fails loudly here
                # instead of silently stealing half of the modem's answers.
                self._serial.exclusive = True
            self._serial.open()
        except (serial.SerialException, OSError, ValueError) as exc:
            raise ModemGone(f"cannot open {url}: {exc}") from exc
        self._thread = threading.Thread(target=self._pump, name=f"pump-{url}", daemon=True)
        self._thread.start()

    def _pump(self) -> None:
        ser = self._serial
        while not self._closed.is_set():
            try:
                data = ser.read(max(1, ser.in_waiting))
            except Exception as exc:  # SerialException, OSError(EIO) on unplug, TypeError on close
                if not self._closed.is_set():
                    self._mailbox.put(Item(GONE, exc, self.generation))
                return
            if data:
                self._mailbox.put(Item(DATA, data, self.generation))

    def write(self, data: bytes) -> None:
        try:
            self._serial.write(data)
        except Exception as exc:  # SerialTimeoutException, OSError: the modem is gone or wedged
            raise ModemGone(f"write to {self.url} failed: {exc}") from exc

    def close(self) -> None:
        self._closed.set()
        try:
            self._serial.close()
        except Exception:  # closing an unplugged device may raise; it is closed either way
            pass
        self._thread.join(timeout=2)
