"""A deliberately plain AT client for exercising the simulator from tests and a REPL.

It is not the appliance's engine (``engine.py`` is): it writes one command, collects lines
until a final result, and keeps every other line it saw as unsolicited, which is all a
test of the simulator's AT surface needs. Blocking pyserial, timeouts everywhere.
"""

from __future__ import annotations

import re
import time

import serial

from appliance.errors import ModemTimeout

FINAL = re.compile(rb"^(OK|ERROR|NO CARRIER|\+CME ERROR:.*|\+CMS ERROR:.*)$")


class ATClient:
    """Send AT commands over a (simulated) port and read what comes back."""

    def __init__(self, port: str, *, timeout: float = 5.0) -> None:
        self.port = port
        self.timeout = timeout
        self.serial = serial.Serial(port, 115200, timeout=0.05)
        self.buffer = bytearray()
        self.unsolicited: list[bytes] = []

    def close(self) -> None:
        self.serial.close()

    def __enter__(self) -> ATClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _fill(self, deadline: float, what: str) -> None:
        if time.monotonic() > deadline:
            raise ModemTimeout(f"{self.port}: no {what} within {self.timeout} s; "
                               f"buffer {bytes(self.buffer)!r}")
        self.buffer += self.serial.read(max(1, self.serial.in_waiting))

    def read_until(self, marker: bytes, timeout: float | None = None) -> bytes:
        """Everything up to and including ``marker``."""
        deadline = time.monotonic() + (timeout or self.timeout)
        while marker not in self.buffer:
            self._fill(deadline, repr(marker))
        end = self.buffer.index(marker) + len(marker)
        out = bytes(self.buffer[:end])
        del self.buffer[:end]
        return out

    def read_line(self, timeout: float | None = None) -> bytes:
        """The next non-empty line, without its line ending."""
        while True:
            line = self.read_until(b"\n", timeout).strip(b"\r\n")
            if line:
                return line

    def command(self, command: str, timeout: float | None = None,
                prompt_data: str | None = None) -> list[bytes]:
        """Run one command line; return its lines, the final result last.

        The echo of the command is dropped; with ``prompt_data`` the ``> `` prompt is
        awaited and the PDU sent with Ctrl-Z.
        """
        self.serial.write(command.encode("latin-1") + b"\r")
        lines: list[bytes] = []
        deadline = time.monotonic() + (timeout or self.timeout)
        if prompt_data is not None:
            self.read_until(b"> ", timeout)
            self.serial.write(prompt_data.encode("ascii") + b"\x1a")
        while True:
            while b"\n" not in self.buffer:
                self._fill(deadline, f"answer to {command}")
            end = self.buffer.index(b"\n") + 1
            line = bytes(self.buffer[:end]).strip(b"\r\n")
            del self.buffer[:end]
            echoes = (command.encode("latin-1"), (prompt_data or "").encode("ascii") + b"\x1a")
            if not line or line in echoes:
                continue
            lines.append(line)
            if FINAL.match(line):
                return lines

    def wait_line(self, prefix: bytes, timeout: float | None = None) -> bytes:
        """Skip lines until one starts with ``prefix`` (an unsolicited result, usually)."""
        while True:
            line = self.read_line(timeout)
            if line.startswith(prefix):
                return line
            self.unsolicited.append(line)
