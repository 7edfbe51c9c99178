"""The audit log: who asked, when, on which modem, what kind of answer they got.

One row per CNIC asked (or one row for a message without a CNIC), in ``state.db`` beside the
messages, with **HMAC-SHA256(CNIC, unit secret)** in place of the CNIC and never a name. A row
with a hash says "the same CNIC as that other row" (a stalker asking about one person from many
numbers, a scraper walking the number space) without saying whose CNIC it is; the key is
the unit's secret (:mod:`appliance.state.secret`), so the 10^13 CNICs cannot be hashed through
by whoever obtains the file alone.

**The sender is kept in clear.** The draft data-protection bill treats identity data as
sensitive, and since PTA's biometric SIM verification a Pakistani mobile number points at
one CNIC holder nearly as well as the CNIC does, so this was weighed, not assumed:

* The log exists to act on abuse. PECA s.16 penalises the unauthorised use of identity
  information; the person to warn, block or report to the FIA is the one behind the
  number. A hash keyed by a unit's secret cannot be acted on at the central office, which
  holds no unit secrets, and differs from unit to unit, so the same abuser at two offices
  would look like two people.
* Hashing here would not take the number off the unit: the message store keeps it in
  clear (``Inbound.sender``, ``Outbound.recipient``) because a reply needs it.
* What makes a row sensitive is the pairing of a person with a query about a named
  offender. The row holds no CNIC, no name and no message text, so it says that a number
  asked and what class of answer it got, not about whom.
* Rows live ``audit.retention_days`` and are then purged, and the export can pseudonymise
  senders (``--hash-senders``) for copies that go beyond the central office.
* The clear number is kept only for ``privacy.message_retention_days`` (the time to
  collect the export and act on it): then :mod:`appliance.state.retention` replaces it with the
  same keyed pseudonym ``--hash-senders`` writes, as it does for the message store, where
  the number is no longer needed once the reply has left.

**Append-only.** SQLite triggers (see ``_TRIGGERS``) abort any ``UPDATE`` of a row but one
that replaces a clear sender by its keyed pseudonym and changes nothing else, and any
``DELETE`` except of rows older than the cutoff held in the one-row ``audit_purge_gate``
table. Only :func:`purge` sets the cutoff, then deletes and clears it again, inside one
``BEGIN IMMEDIATE`` transaction: other connections never see the gate open (WAL readers see
committed state only), and a crash mid-purge rolls the gate back closed with the deletes.
A further trigger refuses a cutoff inside the last day before the newest row, so even code
that opens the gate by hand cannot wipe recent history. There is no other delete path.
"""

from __future__ import annotations

import argparse
import csv
import hashlib
import hmac
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, TextIO

import peewee as pw

from ..errors import ConfigError, StoreError
from ..rules.when import parse_since
from .retention import is_keyed_hash
from .store import db, write_txn

log = logging.getLogger(__name__)

DAY_S = 86_400.0
#: The purge never removes rows from the last day before the newest one (a clock that jumped
#: ahead, or a retention typed in hours, must not empty the log).
MIN_RETENTION_S = DAY_S

#: Verdicts of answered messages; ignored ones are ``"ignored:<code>"`` (see guard.py).
VERDICTS: tuple[str, ...] = ("hit", "no_record", "invalid", "help", "empty", "unavailable",
                             "limit")
EXPORT_FIELDS: tuple[str, ...] = ("unit", "id", "time", "modem", "sender", "cnic_hmac",
                                  "verdict", "reply_id", "inbound_id")
FORMATS: tuple[str, ...] = ("csv", "ndjson")


class AuditEvent(pw.Model):
    """One audited answer (or refusal) for one CNIC, or for a message without one."""

    id = pw.AutoField()
    at = pw.FloatField()                       # Unix seconds, UTC
    modem = pw.CharField(null=True)
    sender = pw.CharField(null=True)           # normalised number ("+923001234567") or name
    cnic_hmac = pw.CharField(null=True)        # hex HMAC-SHA256(CNIC, unit secret)
    verdict = pw.CharField()
    reply = pw.IntegerField(null=True)         # Outbound.id
    inbound = pw.IntegerField(null=True)       # the first Inbound.id of the message

    class Meta:
        database = db
        table_name = "audit_event"
        indexes = ((("at",), False), (("cnic_hmac", "at"), False))


class AuditPurgeGate(pw.Model):
    """The one row whose ``cutoff`` (non-NULL only inside :func:`purge`) lets old rows go."""

    id = pw.IntegerField(primary_key=True)
    cutoff = pw.FloatField(null=True)

    class Meta:
        database = db
        table_name = "audit_purge_gate"


_GATE = "(SELECT cutoff FROM audit_purge_gate WHERE id = 1)"
_HASHED = "(length({v}) = 64 AND {v} NOT GLOB '*[^0-9a-f]*')"
#: The one change a row may undergo: its clear sender replaced by a keyed pseudonym.
_PSEUDONYMISED = (
    "NEW.id IS OLD.id AND NEW.at IS OLD.at AND NEW.modem IS OLD.modem"
    " AND NEW.cnic_hmac IS OLD.cnic_hmac AND NEW.verdict IS OLD.verdict"
    " AND NEW.reply IS OLD.reply AND NEW.inbound IS OLD.inbound"
    f" AND OLD.sender IS NOT NULL AND NOT {_HASHED.format(v='OLD.sender')}"
    f" AND NEW.sender IS NOT NULL AND {_HASHED.format(v='NEW.sender')}")
_ONLY_PSEUDONYMISE = "audit_event is append-only: only a sender may change, to its keyed hash"
#: Triggers of earlier versions, replaced by the ones below.
_OLD_TRIGGERS: tuple[str, ...] = ("audit_event_no_update",)
_TRIGGERS: tuple[str, ...] = (
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_only_pseudonymise BEFORE UPDATE ON audit_event
       WHEN NOT ({_PSEUDONYMISED})
       BEGIN SELECT RAISE(ABORT, '{_ONLY_PSEUDONYMISE}'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_event_no_delete BEFORE DELETE ON audit_event
       WHEN {_GATE} IS NULL OR OLD.at >= {_GATE}
       BEGIN SELECT RAISE(ABORT, 'audit_event is append-only: only the purge deletes'); END""",
    f"""CREATE TRIGGER IF NOT EXISTS audit_purge_gate_floor BEFORE UPDATE ON audit_purge_gate
       WHEN NEW.cutoff IS NOT NULL
            AND NEW.cutoff > (SELECT MAX(at) FROM audit_event) - {MIN_RETENTION_S}
       BEGIN SELECT RAISE(ABORT, 'audit purge cutoff would delete the last day of the log');
       END""",
    """CREATE TRIGGER IF NOT EXISTS audit_purge_gate_keep BEFORE DELETE ON audit_purge_gate
       BEGIN SELECT RAISE(ABORT, 'audit_purge_gate row is permanent'); END""",
)


def ensure_schema() -> None:
    """Create the audit tables and their triggers (idempotent); the Store must be open."""
    db.create_tables([AuditEvent, AuditPurgeGate], safe=True)
    with db.atomic():
        AuditPurgeGate.insert(id=1, cutoff=None).on_conflict_ignore().execute()
        for name in _OLD_TRIGGERS:
            db.execute_sql(f"DROP TRIGGER IF EXISTS {name}")
        for sql in _TRIGGERS:
            db.execute_sql(sql)


def keyed_hash(secret: bytes, value: str) -> str:
    """Hex HMAC-SHA256 of ``value`` (UTF-8) under ``secret``."""
    return hmac.new(secret, value.encode("utf-8", "surrogatepass"), hashlib.sha256).hexdigest()


class Audit:
    """Writes audit rows; holds the unit secret only to hash CNICs (it is never shown)."""

    def __init__(self, secret: bytes) -> None:
        if len(secret) < 16:
            raise ValueError("the audit key must be at least 16 bytes")
        ensure_schema()
        self._secret = secret

    def __repr__(self) -> str:
        return "Audit(<secret hidden>)"

    def cnic_hash(self, cnic: str) -> str:
        """HMAC-SHA256(CNIC, unit secret) of 13 ASCII digits, as hex."""
        return keyed_hash(self._secret, cnic)

    def sender_hash(self, sender: str) -> str:
        """A sender's pseudonym (of its normalised number): in exports shared beyond the
        central office, in the guard's counters, and in place of the number once the
        retention window is over (:mod:`appliance.state.retention`)."""
        return keyed_hash(self._secret, "sender:" + sender)

    def digest_hash(self, digest: str) -> str:
        """A keyed hash of an unkeyed digest of personal data (a PDU's SHA-256)."""
        return keyed_hash(self._secret, "digest:" + digest)

    def append(self, *, modem: str | None, sender: str | None,
               entries: Iterable[tuple[str | None, str]], reply: int | None = None,
               inbound: int | None = None, at: float | None = None) -> int:
        """Append one row per ``(cnic or None, verdict)`` entry; returns the rows written.

        Runs inside the caller's transaction when there is one (the guard's accounting
        and its audit rows commit together).
        """
        at = time.time() if at is None else at
        rows = [(at, modem, sender, self.cnic_hash(cnic) if cnic else None, verdict, reply,
                 inbound) for cnic, verdict in entries]
        if rows:
            with write_txn():
                db.connection().executemany(
                    "INSERT INTO audit_event (at, modem, sender, cnic_hmac, verdict, reply, "
                    "inbound) VALUES (?, ?, ?, ?, ?, ?, ?)", rows)
        return len(rows)


def purge(retention_days: float, now: float | None = None) -> int:
    """Delete rows older than ``retention_days``; returns how many. The only delete path.

    Never removes the last day before the newest row (``MIN_RETENTION_S``), whatever the
    clock says: a Pi without an RTC can wake up years ahead or behind before time sync.
    """
    now = time.time() if now is None else now
    with write_txn():
        newest = AuditEvent.select(pw.fn.MAX(AuditEvent.at)).scalar()
        if newest is None:
            return 0
        if newest > now + 3600:
            log.warning("audit log has rows up to %.0f s ahead of the clock; the clock was or "
                        "is wrong (no time sync yet?)", newest - now)
        cutoff = min(now - retention_days * DAY_S, newest - MIN_RETENTION_S)
        with _gate_open(cutoff):
            deleted = AuditEvent.delete().where(AuditEvent.at < cutoff).execute()
    if deleted:
        log.info("audit purge: %d event(s) older than %g day(s) deleted", deleted,
                 retention_days)
    return int(deleted)


@contextmanager
def _gate_open(cutoff: float) -> Iterator[None]:
    AuditPurgeGate.update(cutoff=cutoff).where(AuditPurgeGate.id == 1).execute()
    try:
        yield
    finally:
        AuditPurgeGate.update(cutoff=None).where(AuditPurgeGate.id == 1).execute()


# --- export ---------------------------------------------------------------------------------

def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, timezone.utc).isoformat(timespec="seconds") \
        .replace("+00:00", "Z")


def iter_events(since: float | None = None) -> Iterator[dict[str, Any]]:
    """Rows in insertion order, as export dictionaries (``unit`` left empty)."""
    query = AuditEvent.select().order_by(AuditEvent.id)
    if since is not None:
        query = query.where(AuditEvent.at >= since)
    for row in query.iterator():
        yield {"unit": "", "id": row.id, "time": _iso(row.at), "modem": row.modem,
               "sender": row.sender, "cnic_hmac": row.cnic_hmac, "verdict": row.verdict,
               "reply_id": row.reply, "inbound_id": row.inbound}


def export(out: TextIO, fmt: str, *, since: float | None = None, unit: str = "",
           pseudonymise: Callable[[str], str] | None = None) -> int:
    """Write the log to ``out`` as CSV (header line, RFC 4180) or NDJSON; returns rows.

    ``time`` is UTC ISO 8601 and every row names its ``unit``, so exports of many units can
    be concatenated by the central office. ``pseudonymise`` replaces each sender.
    """
    if fmt not in FORMATS:
        raise ValueError(f"export format {fmt!r} is not one of {', '.join(FORMATS)}")
    writer = csv.DictWriter(out, EXPORT_FIELDS, lineterminator="\r\n") if fmt == "csv" else None
    if writer is not None:
        writer.writeheader()
    count = 0
    for event in iter_events(since):
        event["unit"] = unit
        if pseudonymise is not None and event["sender"] \
                and not is_keyed_hash(event["sender"]):  # past the window: hashed already
            event["sender"] = pseudonymise(event["sender"])
        if writer is not None:
            writer.writerow(event)
        else:
            out.write(json.dumps(event, ensure_ascii=False) + "\n")
        count += 1
    return count


# --- command line ---------------------------------------------------------------------------

def add_parsers(subparsers: Any, config_arg: Callable[[argparse.ArgumentParser], None]) -> None:
    """Register ``audit export`` and ``audit purge`` under ``python -m appliance``."""
    top = subparsers.add_parser("audit", help="the audit log: export for the central office, "
                                "purge past retention")
    sub = top.add_subparsers(dest="audit_command", metavar="ACTION", required=True)

    sp = sub.add_parser("export", help="write the audit log as CSV or NDJSON")
    config_arg(sp)
    sp.add_argument("--format", choices=FORMATS, default="csv", help="output format (csv)")
    sp.add_argument("--since", default=None, metavar="WHEN",
                    help="only events from then on: YYYY-MM-DD (the unit's time zone), an "
                    "ISO date-time, or an age (24h, 7d)")
    sp.add_argument("--out", type=Path, default=None, metavar="FILE",
                    help="write to FILE (created mode 0600) instead of standard output")
    sp.add_argument("--hash-senders", action="store_true",
                    help="replace each sender by its keyed hash (for copies shared further)")
    sp.set_defaults(func=cmd_export)

    sp = sub.add_parser("purge", help="delete audit events past the retention period now")
    config_arg(sp)
    sp.add_argument("--retention-days", type=float, default=None, metavar="DAYS",
                    help="keep this many days (default: audit.retention_days)")
    sp.set_defaults(func=cmd_purge)


@contextmanager
def _opened_store(config: Any) -> Iterator[None]:
    from .store import Store

    path = Path(config.state_path)
    if not path.is_file():
        raise StoreError(f"no message store at {path}; check unit.data_dir in the "
                         "configuration (the service creates it on first start)")
    store = Store(path)
    try:
        ensure_schema()
        yield
    finally:
        store.close()


def cmd_export(args: argparse.Namespace) -> int:
    from ..config import load_config
    from .secret import load_or_create_secret

    config = load_config(args.config)
    since = (parse_since(args.since, now=time.time(), zone=config.registry.timezone)
             if args.since else None)
    with _opened_store(config):
        pseudonymise = None
        if args.hash_senders:
            pseudonymise = Audit(load_or_create_secret(config.secret_path)).sender_hash
        if args.out is None:
            count = export(sys.stdout, args.format, since=since, unit=config.unit.name,
                           pseudonymise=pseudonymise)
            sys.stdout.flush()
        else:
            count = _export_to_file(args.out, args.format, since, config.unit.name, pseudonymise)
    print(f"exported {count} audit event(s)" + (f" to {args.out}" if args.out else ""),
          file=sys.stderr)
    return 0


def _export_to_file(path: Path, fmt: str, since: float | None, unit: str,
                    pseudonymise: Callable[[str], str] | None) -> int:
    """Write via a 0600 temporary file renamed into place: a half-written export never
    sits under the name the central office will collect."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with open(fd, "w", encoding="utf-8", newline="") as out:
            count = export(out, fmt, since=since, unit=unit, pseudonymise=pseudonymise)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return count


def cmd_purge(args: argparse.Namespace) -> int:
    from ..config import load_config

    config = load_config(args.config)
    days = args.retention_days if args.retention_days is not None else config.audit.retention_days
    if days < 1:
        raise ConfigError(f"--retention-days {days:g}: must be at least 1")
    with _opened_store(config):
        deleted = purge(days)
    print(f"purged {deleted} audit event(s) older than {days:g} day(s)", file=sys.stderr)
    return 0


def verdict_entries(cnics: Sequence[str], verdict: str) -> list[tuple[str | None, str]]:
    """One entry per CNIC, or one without a CNIC when there is none."""
    return [(c, verdict) for c in cnics] or [(None, verdict)]
