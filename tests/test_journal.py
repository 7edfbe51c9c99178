"""The journal: one line per SMS in and per reply out, read from the real ``run`` process
over simulated modems, and the native-protocol handler read back from a real datagram
socket with a decoder written here from systemd's protocol description."""

from __future__ import annotations

import logging
import os
import re
import signal
import socket
import struct
import subprocess
import sys
from pathlib import Path
from typing import Any

from appliance.state.audit import keyed_hash
from appliance.journal import (MSG_REPLY_OUT, MSG_SMS_IN, NOTICE, JournalHandler, reply_out,
                               sms_in, tail)
from appliance.registry.importer import demo_cnics
from tests.conftest import ROOT, wait_until, write_unit_toml

CNICS = demo_cnics()


def test_lines_are_built_from_values() -> None:
    line = sms_in(modem="sim0", sender="+923001234567", cnic_hmacs=["ab" * 32, "cd" * 32],
                  verdict="mixed", parts=2, inbound_ids=[7, 8], reply_id=3)
    assert line.level == NOTICE
    assert line.text == ("sms in: modem sim0, from …4567, cnic#abababababababab, "
                         "cnic#cdcdcdcdcdcdcdcd, verdict mixed, 2 parts, inbound #7,8: "
                         "reply #3 queued")
    fields = line.fields
    assert ("NSOR_CNIC_HMAC", "ab" * 32) in fields and ("NSOR_CNIC_HMAC", "cd" * 32) in fields
    assert ("MESSAGE_ID", MSG_SMS_IN) in fields and ("NSOR_SENDER_TAIL", "4567") in fields
    ignored = sms_in(modem="sim1", sender="Jazz", cnic_hmacs=[], verdict="ignored", parts=1,
                     inbound_ids=[9], reason="alphanumeric sender")
    assert ignored.text.endswith("from (name), no CNIC, verdict ignored, 1 part, inbound #9: "
                                 "not answered: alphanumeric sender")
    out = reply_out(modem="sim1", recipient="+923001234567", reply_id=3, verdict="hit",
                    parts=2, attempt=2, outcome="failed", error="+CMS ERROR: 38")
    assert out.level == logging.ERROR and ("NSOR_ATTEMPTS", "2") in out.fields
    assert out.text == ("reply out: modem sim1, to …4567, reply #3 hit, 2 parts, attempt 2: "
                        "failed: +CMS ERROR: 38")
    assert ("MESSAGE_ID", MSG_REPLY_OUT) in out.fields
    assert tail(None) == "?" and tail("0300-1234567", 3) == "…567"


# -- the real process ------------------------------------------------------------------------

LINE = re.compile(r"^<(\d)>appliance\.sms: (.*)$")


def test_run_logs_every_sms_in_and_reply_out(tmp_path: Path, sim: Any,
                                             sample_registry: Path) -> None:
    config = write_unit_toml(tmp_path, [(m.name, m.port) for m in sim.modems],
                             own_numbers=[m.number for m in sim.modems])
    hit, miss = CNICS.hits[0], CNICS.misses[0]
    citizens = ["+923001110001", "+923001110002", "+923001110003"]
    proc = subprocess.Popen([sys.executable, "-m", "appliance", "run", "--config", str(config)],
                            cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            env=dict(os.environ, PYTHONUNBUFFERED="1"))
    try:
        sim.citizen_send(citizens[0], 0, f"{hit[:5]}-{hit[5:12]}-{hit[12]}")
        sim.citizen_send(citizens[1], 1, miss)
        sim.citizen_send(citizens[2], 0, "3520212345")  # too few digits for a CNIC
        sim.citizen_send("Jazz", 1, "Your bundle expires today")  # never answered
        assert wait_until(lambda: all(sim.inbox(c) for c in citizens), 40)
        # the reply-out line is written just after the +CMSS answer that the inbox shows
        assert wait_until(lambda: sum(1 for c in sim.submitted) >= 3, 10)
    finally:
        proc.send_signal(signal.SIGTERM)
        _, err_bytes = proc.communicate(timeout=30)
    err = err_bytes.decode("utf-8", errors="replace")
    assert proc.returncode == 0, err[-3000:]
    lines = [(int(m.group(1)), m.group(2)) for m in map(LINE.match, err.splitlines()) if m]
    print("\n".join(f"<{p}> {t}" for p, t in lines))
    secret = bytes.fromhex((tmp_path / "data" / "secret.key").read_text().strip())
    ins = [(p, t) for p, t in lines if t.startswith("sms in:")]
    outs = [(p, t) for p, t in lines if t.startswith("reply out:")]
    assert len(ins) == 4 and len(outs) == 3, lines

    def one(items: list[tuple[int, str]], needle: str) -> tuple[int, str]:
        [found] = [x for x in items if needle in x[1]]
        return found

    prio, text = one(ins, "from …0001")
    assert prio == 5 and f"cnic#{keyed_hash(secret, hit)[:16]}" in text
    assert "verdict hit, 1 part" in text and "modem sim0" in text
    prio, text = one(ins, "from …0002")
    assert prio == 6 and f"cnic#{keyed_hash(secret, miss)[:16]}" in text
    assert "verdict no_record" in text and "modem sim1" in text
    prio, text = one(ins, "from …0003")
    assert prio == 6 and "no CNIC, verdict invalid" in text
    prio, text = one(ins, "from (name)")
    assert prio == 5 and "verdict ignored" in text and "not answered" in text
    for who, verdict in (("…0001", "hit"), ("…0002", "no_record"), ("…0003", "invalid")):
        prio, text = one(outs, f"to {who}")
        assert prio == 6 and re.search(f" {verdict}, [12] parts?, attempt 1: sent$", text), text
    # Never a CNIC, never a whole number, in the log.
    for secret_text in (hit, miss, f"{hit[:5]}-{hit[5:12]}-{hit[12]}", *citizens,
                        *(c[3:] for c in citizens)):
        assert secret_text not in err


# -- the native protocol ---------------------------------------------------------------------

def parse_native(datagram: bytes) -> list[tuple[str, str]]:
    """systemd's native journal protocol: ``KEY=value\\n``, or for a value with a newline
    ``KEY\\n`` + little-endian u64 length + value + ``\\n``."""
    fields: list[tuple[str, str]] = []
    rest = datagram
    while rest:
        nl = rest.index(b"\n")
        head = rest[:nl]
        if b"=" in head:
            key, _, value = head.partition(b"=")
            rest = rest[nl + 1:]
        else:
            key = head
            (size,) = struct.unpack("<Q", rest[nl + 1:nl + 9])
            value = rest[nl + 9:nl + 9 + size]
            assert rest[nl + 9 + size:nl + 10 + size] == b"\n"
            rest = rest[nl + 10 + size:]
        assert re.fullmatch(rb"[A-Z0-9][A-Z0-9_]*", key), key
        fields.append((key.decode(), value.decode()))
    return fields


def test_native_handler_sends_fields_to_the_journal_socket(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    server.settimeout(5)
    handler = JournalHandler("nsor-test", socket_path=path)
    logger = logging.getLogger("appliance.sms.test_native")
    logger.propagate = False
    logger.addHandler(handler)
    logger.setLevel(logging.DEBUG)
    try:
        sms_in(modem="sim2", sender="+923001234567", cnic_hmacs=["ab" * 32, "cd" * 32],
               verdict="hit", parts=1, inbound_ids=[4], reply_id=9).log(logger)
        first = parse_native(server.recv(65536))
        try:
            raise ValueError("bad\nthing")
        except ValueError:
            logger.exception("two\nlines")
        second = parse_native(server.recv(65536))
    finally:
        logger.removeHandler(handler)
        handler.close()
        server.close()
    values = dict(first)
    assert values["PRIORITY"] == "5" and values["SYSLOG_IDENTIFIER"] == "nsor-test"
    assert values["MESSAGE"].startswith("appliance.sms.test_native: sms in: modem sim2")
    assert values["NSOR_VERDICT"] == "hit" and values["MESSAGE_ID"] == MSG_SMS_IN
    assert [v for k, v in first if k == "NSOR_CNIC_HMAC"] == ["ab" * 32, "cd" * 32]
    message = dict(second)["MESSAGE"]
    assert dict(second)["PRIORITY"] == "3" and "two\nlines" in message
    assert "ValueError: bad\nthing" in message


def test_handler_falls_back_to_stderr_when_the_socket_goes(tmp_path: Path) -> None:
    path = tmp_path / "journal.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(str(path))
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    handler = JournalHandler("nsor-test", socket_path=path, fallback=Keep())
    server.close()
    path.unlink()  # journald gone
    record = logging.LogRecord("appliance.sms", logging.INFO, __file__, 1, "still here", (),
                               None)
    handler.handle(record)
    handler.close()
    assert [r.getMessage() for r in seen] == ["still here"]


def test_journal_stream_is_recognised_only_on_the_stderr_systemd_named(tmp_path: Path) -> None:
    """systemd sets JOURNAL_STREAM to stderr's device:inode; the native handler is used
    only then (a shell that inherited the variable must not get it)."""
    code = ("from appliance.journal import journal_stream_is_stderr as j; "
            "import sys; print(j(), file=sys.stdout)")
    err_file = tmp_path / "stderr"
    with open(err_file, "wb") as err:
        st = os.fstat(err.fileno())
        results = []
        for stream in (f"{st.st_dev}:{st.st_ino}", f"{st.st_dev}:{st.st_ino + 1}", "junk"):
            out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stderr=err,
                                 stdout=subprocess.PIPE, text=True, timeout=30,
                                 env=dict(os.environ, JOURNAL_STREAM=stream))
            results.append(out.stdout.strip())
    assert results == ["True", "False", "False"]
