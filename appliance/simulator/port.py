"""The simulated modem's serial side: a pty pair, a stable symlink, and V.250 framing.

A real USB modem appears as a device node that vanishes when it is unplugged and comes back
(often with another number) when replugged; configurations therefore name a stable path
(``/dev/serial/by-path/…``). Here the pty slave plays the device node and ``DIR/<name>``
the stable path: unplug closes the master (the client's reads fail with EIO, as on a USB
disconnect) and removes the link; replug opens a new pty and re-points the same link.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import tty
from pathlib import Path

from appliance.simulator.at import ATState, AtReply

log = logging.getLogger(__name__)

# V.250 §5.7.1 numeric result codes, for ATV0.
NUMERIC_RESULT = {"OK": "0", "CONNECT": "1", "RING": "2", "NO CARRIER": "3", "ERROR": "4"}


def to_bytes(line: str) -> bytes:
    """A line as the modem would send it: Latin-1 so that a '\\xff' text is the byte 0xFF."""
    try:
        return line.encode("latin-1")
    except UnicodeEncodeError:
        return line.encode("utf-8")


def frame_reply(state: ATState, reply: AtReply, injected: list[str]) -> bytes:
    """Frame information text and the final result (V.250 §5.7.1, §5.7.2).

    ``injected`` lines are unsolicited results placed *inside* the response, after its first
    line: the URC-in-response fault that breaks parsers which assume a response is atomic.
    """
    lines = list(reply.lines)
    lines[1 if lines else 0:1 if lines else 0] = injected
    if state.verbose:
        out = b"".join(b"\r\n" + to_bytes(line) for line in lines) + (b"\r\n" if lines else b"")
    else:
        out = b"".join(to_bytes(line) + b"\r\n" for line in lines)
    if reply.prompt is not None:
        return out + b"\r\n> "
    if state.quiet:
        return out
    final = reply.error or "OK"
    if state.verbose:
        return out + b"\r\n" + to_bytes(final) + b"\r\n"
    return out + to_bytes(NUMERIC_RESULT.get(final, final)) + b"\r"


def frame_urc(state: ATState, lines: list[str]) -> bytes:
    if state.verbose:
        return b"\r\n" + b"\r\n".join(to_bytes(line) for line in lines) + b"\r\n"
    return b"".join(to_bytes(line) + b"\r\n" for line in lines)


class PtyPort:
    """One plug-in of a modem: a raw pty pair and the symlink that names its slave."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)  # the line discipline must not echo, translate or buffer
        os.set_blocking(self.master, False)
        self.device = os.ttyname(self.slave)
        self.dropped = 0
        tmp = link.with_name(f".{link.name}.tmp")
        tmp.unlink(missing_ok=True)
        os.symlink(self.device, tmp)
        os.replace(tmp, link)  # atomic: a client never sees the name missing while replugging

    def read(self) -> bytes:
        try:
            return os.read(self.master, 4096)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno != errno.EIO:
                raise
            return b""

    def write(self, data: bytes) -> None:
        """Write, or drop what a reader that stopped reading cannot take (a UART would too)."""
        view = memoryview(data)
        while view:
            try:
                sent = os.write(self.master, view)
            except BlockingIOError:
                _, writable, _ = select.select([], [self.master], [], 0.05)
                if not writable:
                    if not self.dropped:
                        log.warning("%s: nobody reads the port; dropping output", self.link)
                    self.dropped += len(view)
                    return
                continue
            except OSError as exc:
                log.debug("%s: write failed: %s", self.link, exc)
                return
            view = view[sent:]

    def close(self) -> None:
        try:
            if os.readlink(self.link) == self.device:
                self.link.unlink()
        except OSError:
            pass
        for fd in (self.master, self.slave):
            try:
                os.close(fd)
            except OSError:
                pass
