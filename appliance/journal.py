"""The journal: one line per SMS in and per reply out, with priorities and structured fields.

"Did my 10:05 SMS arrive?" must be answerable with ``journalctl -u nsor-appliance``, as it
is with gammu-smsd and smstools3, without ever putting a CNIC in the log: each CNIC appears
as the audit log's keyed hash (HMAC-SHA256 under the unit secret, :mod:`appliance.state.audit`),
so a journal line and an audit row of one query carry the same hash, and a sender only as
the last four digits of the number.

Two ways to reach journald:

* **Native protocol** (``/run/systemd/journal/socket``, via the well-kept pure-Python
  ``logging_journald`` transport), used when systemd connected our stderr to the journal
  (``$JOURNAL_STREAM`` names stderr's device and inode, see systemd.exec(5)). Each SMS line
  then carries fields: ``journalctl -u nsor-appliance NSOR_VERDICT=hit`` or
  ``NSOR_CNIC_HMAC=<hash>`` finds the lines of one verdict or one CNIC, and ``MESSAGE_ID``
  separates "sms in" from "reply out" (``journalctl MESSAGE_ID=…``).
* **stderr with ``<N>`` priority prefixes** (``SyslogLevelPrefix=yes``, systemd's default)
  everywhere else, and whenever the socket refuses a message: the same text, no fields.

The line builders (:func:`sms_in`, :func:`reply_out`) are pure: values in, a level, a text
and the fields out.
"""

from __future__ import annotations

import logging
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: syslog NOTICE ("normal but significant"): a "convict" reply leaving, a message not
#: answered. Python's logging has no such level; 25 sits between INFO and WARNING.
NOTICE = 25
logging.addLevelName(NOTICE, "NOTICE")

#: Python level -> syslog priority (RFC 5424 §6.2.1), as journald stores it.
PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, NOTICE: 5, logging.WARNING: 4,
            logging.ERROR: 3, logging.CRITICAL: 2}

#: ``journalctl MESSAGE_ID=…`` (128-bit ids, as systemd's catalog uses them; made once
#: with ``journalctl --new-id128``).
MSG_SMS_IN = "5b1c0e6a7f0d4c2f9e3a8d6b2c41f0a7"
MSG_REPLY_OUT = "c2e94f7d1a6b4e0c8f5d3a2b9e7c1d60"

#: Where journald takes native-protocol datagrams (systemd-journald.service(8)).
JOURNAL_SOCKET = Path("/run/systemd/journal/socket")

#: The logger every SMS line goes to (``appliance.sms``), so it can be filtered or raised.
sms_log = logging.getLogger("appliance.sms")


def priority(levelno: int) -> int:
    if levelno in PRIORITY:
        return PRIORITY[levelno]
    return 7 if levelno < logging.INFO else 6 if levelno < NOTICE else 5 \
        if levelno < logging.WARNING else 4 if levelno < logging.ERROR else 3


def tail(number: str | None, digits: int = 4) -> str:
    """The last digits of a phone number ("…4567"): enough to answer "did my SMS arrive",
    not enough to call anyone."""
    only = "".join(c for c in number or "" if c.isdigit())
    if not only:
        return "?" if not number else "(name)"  # an alphanumeric sender such as "Jazz"
    return "…" + only[-digits:]


@dataclass(frozen=True)
class Line:
    """One journal entry: its level, its text and its structured fields (repeatable)."""

    level: int
    text: str
    fields: tuple[tuple[str, str], ...] = field(default_factory=tuple)

    def log(self, logger: logging.Logger = sms_log) -> None:
        logger.log(self.level, "%s", self.text, extra={"journal_fields": self.fields})


def _hashes(cnic_hmacs: Sequence[str]) -> str:
    # The first 16 hex digits in the text (64 bits: no collision among the 10^13 CNICs a
    # unit could ever see is likely); the whole hash is in NSOR_CNIC_HMAC.
    return ", ".join(f"cnic#{h[:16]}" for h in cnic_hmacs) or "no CNIC"


def sms_in(*, modem: str, sender: str | None, cnic_hmacs: Sequence[str], verdict: str,
           parts: int, inbound_ids: Sequence[int], reply_id: int | None = None,
           reason: str = "") -> Line:
    """The line for one SMS received (all its parts) and what was decided about it.

    ``verdict`` is the reply kind (hit, no_record, mixed, invalid, help, empty,
    unavailable, limit), ``ignored`` (not answered; ``reason`` says why) or
    ``quarantined`` (undecodable).
    """
    level = (NOTICE if verdict in ("hit", "mixed", "ignored", "limit")
             else logging.WARNING if verdict in ("unavailable", "quarantined") else logging.INFO)
    ids = ",".join(str(i) for i in inbound_ids)
    outcome = (f"not answered: {reason}" if verdict == "ignored"
               else f"quarantined: {reason}" if verdict == "quarantined"
               else f"reply #{reply_id} queued" if reply_id is not None else "")
    text = (f"sms in: modem {modem}, from {tail(sender)}, {_hashes(cnic_hmacs)}, verdict "
            f"{verdict}, {parts} part{'s' if parts != 1 else ''}, inbound #{ids}"
            f"{': ' + outcome if outcome else ''}")
    fields = [("MESSAGE_ID", MSG_SMS_IN), ("NSOR_EVENT", "sms_in"), ("NSOR_MODEM", modem),
              ("NSOR_SENDER_TAIL", tail(sender).lstrip("…")), ("NSOR_VERDICT", verdict),
              ("NSOR_PARTS", str(parts)), ("NSOR_INBOUND", ids)]
    fields += [("NSOR_CNIC_HMAC", h) for h in cnic_hmacs]
    if reply_id is not None:
        fields.append(("NSOR_REPLY", str(reply_id)))
    if reason:
        fields.append(("NSOR_REASON", reason))
    return Line(level, text, tuple(fields))


def reply_out(*, modem: str, recipient: str, reply_id: int, verdict: str, parts: int,
              attempt: int, outcome: str, error: str = "", took_s: float | None = None) -> Line:
    """The line for one reply leaving (``outcome`` "sent") or not (``retry``, ``failed``,
    ``requeued``: handed back without spending an attempt)."""
    level = {"sent": logging.INFO, "failed": logging.ERROR}.get(outcome, logging.WARNING)
    took = f" in {took_s:.1f} s" if took_s is not None else ""
    text = (f"reply out: modem {modem}, to {tail(recipient)}, reply #{reply_id} {verdict}, "
            f"{parts} part{'s' if parts != 1 else ''}, attempt {attempt}: {outcome}{took}"
            f"{': ' + error if error else ''}")
    fields = [("MESSAGE_ID", MSG_REPLY_OUT), ("NSOR_EVENT", "reply_out"),
              ("NSOR_MODEM", modem), ("NSOR_RECIPIENT_TAIL", tail(recipient).lstrip("…")),
              ("NSOR_REPLY", str(reply_id)), ("NSOR_VERDICT", verdict),
              ("NSOR_PARTS", str(parts)), ("NSOR_ATTEMPTS", str(attempt)),
              ("NSOR_OUTCOME", outcome)]
    if error:
        fields.append(("NSOR_ERROR", error))
    return Line(level, text, tuple(fields))


# -- handlers ------------------------------------------------------------------------------

class PrefixFormatter(logging.Formatter):
    """``<N>logger: message``: systemd reads the ``<N>`` as the syslog priority
    (SyslogLevelPrefix=yes is the default), and the journal adds its own timestamps."""

    def format(self, record: logging.LogRecord) -> str:
        text = f"<{priority(record.levelno)}>{record.name}: {record.getMessage()}"
        if record.exc_info:
            text += "\n" + self.formatException(record.exc_info)
        return text


def journal_stream_is_stderr() -> bool:
    """True when systemd connected stderr to the journal ($JOURNAL_STREAM, systemd.exec(5))."""
    dev_ino = os.environ.get("JOURNAL_STREAM", "")
    try:
        dev, ino = (int(x) for x in dev_ino.split(":", 1))
        st = os.fstat(sys.stderr.fileno())
    except (ValueError, OSError, AttributeError):
        return False
    return (st.st_dev, st.st_ino) == (dev, ino)


class JournalHandler(logging.Handler):
    """Sends each record to journald over its native protocol, with fields; falls back to
    ``fallback`` (stderr with priority prefixes) for a record the socket refuses."""

    def __init__(self, identifier: str, *, socket_path: Path = JOURNAL_SOCKET,
                 fallback: logging.Handler | None = None) -> None:
        super().__init__()
        from logging_journald import JournaldTransport

        self.identifier = identifier
        self.transport = JournaldTransport(socket_path=socket_path)
        self.fallback = fallback

    def fields(self, record: logging.LogRecord) -> list[tuple[str, Any]]:
        message = record.getMessage()
        if record.exc_info:
            message += "\n" + logging.Formatter().formatException(record.exc_info)
        pairs: list[tuple[str, Any]] = [
            ("MESSAGE", f"{record.name}: {message}"), ("PRIORITY", priority(record.levelno)),
            ("SYSLOG_IDENTIFIER", self.identifier), ("LOGGER", record.name),
            ("THREAD_NAME", record.threadName), ("CODE_FILE", record.pathname),
            ("CODE_LINE", record.lineno), ("CODE_FUNC", record.funcName)]
        extra: Iterable[tuple[str, str]] = getattr(record, "journal_fields", ())
        pairs.extend(extra)  # a repeated name (NSOR_CNIC_HMAC) is one journal field, many values
        return pairs

    def emit(self, record: logging.LogRecord) -> None:
        try:
            self.transport.send(self.fields(record))
        except Exception:
            # journald restarting, or a full socket buffer: the line still reaches the
            # journal through stderr, only without its fields.
            if self.fallback is not None:
                self.fallback.handle(record)
            else:
                self.handleError(record)

    def close(self) -> None:
        try:
            self.transport.socket.close()
        finally:
            super().close()


def journal_handler(identifier: str = "nsor-appliance") -> logging.Handler:
    """The best handler for a process whose stderr goes to the journal: native with
    fields when the socket is there, else stderr with priority prefixes."""
    stderr = logging.StreamHandler(sys.stderr)
    stderr.setFormatter(PrefixFormatter())
    if journal_stream_is_stderr() and JOURNAL_SOCKET.exists():
        try:
            return JournalHandler(identifier, fallback=stderr)
        except OSError:
            pass
    return stderr
