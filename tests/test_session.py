"""ATSession on a real pty, with the modem's side written by hand byte for byte: answers
that a simulator built to behave would never give."""

from __future__ import annotations

import logging
import os
import queue
import threading
from collections.abc import Iterator

import pytest

from appliance.errors import ModemCommandError
from appliance.modem.port import Item, Port
from appliance.modem.session import ATSession

SUBMIT = "0021000C9129031032547600000AD4F29C0E9297E1EC3C"
log = logging.getLogger("test.session")


@pytest.fixture
def pty_session() -> Iterator[tuple[int, ATSession]]:
    master, slave = os.openpty()
    mailbox: queue.Queue[Item] = queue.Queue()
    port = Port(os.ttyname(slave), baudrate=115200, flow_control="none", mailbox=mailbox,
                generation=1, logger=log)
    try:
        yield master, ATSession(port, mailbox, log, lambda: None)
    finally:
        port.close()
        os.close(master)
        os.close(slave)


def answer(master: int, reply: bytes) -> threading.Thread:
    """Play the modem: read one command line, then write ``reply`` in one go."""
    def modem() -> None:
        got = b""
        while b"\r" not in got:
            got += os.read(master, 256)
        os.write(master, reply)
    t = threading.Thread(target=modem, daemon=True)
    t.start()
    return t


def test_a_prompt_and_an_error_in_one_read_are_the_error(
        pty_session: tuple[int, ATSession]) -> None:
    # Found by the protocol fuzz test: "> " and "+CMS ERROR" arriving together ended the
    # command before the session wrote its PDU, and writing it then raised a ProtocolError
    # (an "internal error" that reopened the modem) instead of a command error.
    master, sess = pty_session
    modem = answer(master, b"\r\n> \r\n+CMS ERROR: 304\r\n")
    with pytest.raises(ModemCommandError, match="CMS ERROR: 304"):
        sess.submit(22, SUBMIT, prompt_timeout=5, timeout=5)
    modem.join(5)
    assert sess.proto.pending is None


def test_a_prompt_then_the_answer_sends_the_pdu(pty_session: tuple[int, ATSession]) -> None:
    master, sess = pty_session
    answered = threading.Event()

    def modem() -> None:
        got = b""
        while b"\r" not in got:
            got += os.read(master, 256)
        os.write(master, b"\r\n> ")
        got = b""
        while b"\x1a" not in got:
            got += os.read(master, 256)
        assert got.strip(b"\x1a") == SUBMIT.encode()
        os.write(master, b"\r\n+CMGS: 17\r\n\r\nOK\r\n")
        answered.set()

    threading.Thread(target=modem, daemon=True).start()
    assert sess.submit(22, SUBMIT, prompt_timeout=5, timeout=5) == 17
    assert answered.is_set()


def test_a_full_memory_answer_is_noted_by_the_session(
        pty_session: tuple[int, ATSession]) -> None:
    """+CMS ERROR: 322 (memory full, TS 27.005 §3.2.5) to a write: the session notes it, so
    the engine drains the SIM next, whichever command met it (the sender no longer sets the
    flag itself)."""
    master, sess = pty_session
    assert not sess.memory_full
    modem = answer(master, b"\r\n+CMS ERROR: 322\r\n")
    with pytest.raises(ModemCommandError, match="322"):
        sess.write_submit(22, SUBMIT, timeout=5)
    modem.join(5)
    assert sess.memory_full
    sess.memory_full = False
    modem = answer(master, b"\r\n+CMS ERROR: 500\r\n")
    with pytest.raises(ModemCommandError):
        sess.run("AT+CMSS=3", 5)
    modem.join(5)
    assert not sess.memory_full, "only 322 means the memory is full"
