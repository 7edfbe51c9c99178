"""Keep credentials in URLs out of everything a person reads: logs, status, errors, alarms.

``registry.repository_url`` may carry HTTP basic credentials (``https://user:pass@host/…``,
as a publisher behind a password-protected web server needs). The sync needs them to
connect; nobody reading the journal, the status page, ``nsor status --json``, an alarm SMS
or an error message does. The whole user-info part is replaced (a token is often passed
as the user name alone), so ``https://nsor:s3cret@repo.example/`` reads
``https://***@repo.example/``.

Applied at the edges rather than at each message: the log formatter the entry points
install, the alarm list, the service's status snapshot, the offline status, and the CLI's
error lines. Whatever a lower layer puts in a message, it is redacted on the way out.
"""

from __future__ import annotations

import logging
import re
from typing import Any

# scheme://userinfo@ — userinfo runs to the LAST "@" before the path, query or fragment, so
# an unescaped "@" inside a password is redacted with the rest of it.
_USERINFO = re.compile(r"(?P<scheme>\b[A-Za-z][A-Za-z0-9+.-]*://)[^/\s?#]*@")
REDACTED = "***"


def redact_credentials(text: str) -> str:
    """``text`` with the user-info of every URL in it replaced by ``***``."""
    if "@" not in text:
        return text
    return _USERINFO.sub(lambda m: f"{m.group('scheme')}{REDACTED}@", text)


def redact_tree(value: Any) -> Any:
    """A copy of JSON-like data (dicts, lists, tuples, strings) with every string redacted."""
    if isinstance(value, str):
        return redact_credentials(value)
    if isinstance(value, dict):
        return {k: redact_tree(v) for k, v in value.items()}
    if isinstance(value, list):
        return [redact_tree(v) for v in value]
    if isinstance(value, tuple):
        return tuple(redact_tree(v) for v in value)
    return value


class RedactingFormatter(logging.Formatter):
    """Wraps the formatter a handler would use; redacts the finished line (message,
    arguments and traceback alike)."""

    def __init__(self, inner: logging.Formatter) -> None:
        super().__init__()
        self.inner = inner

    def format(self, record: logging.LogRecord) -> str:
        return redact_credentials(self.inner.format(record))


class RedactingFilter(logging.Filter):
    """Redacts a record's message in place, for handlers that build their output without
    a formatter (the native journald handler sends ``record.getMessage()`` as a field)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        clean = redact_credentials(message)
        if clean != message:
            record.msg, record.args = clean, ()
        return True
