"""One exception tree for the whole appliance.

Everything the appliance raises on purpose derives from :class:`ApplianceError`, so the CLI
can translate any of them into one clear line for a technician (no traceback), and library
errors are wrapped with ``raise ... from exc`` at the boundary where they are met.

Example scenarios, by class:

* :class:`ConfigError` -- ``appliance.toml`` names an unknown key, a modem has no port, a
  baud rate is not a number. Carries *every* problem found, each with key and file.
* :class:`ModemTimeout` -- a modem did not answer ``AT+CMGS`` within the send timeout.
* :class:`ModemCommandError` -- a modem answered ``+CMS ERROR: 500`` (temporary network
  failure) or ``+CME ERROR: 10`` (SIM not inserted); ``kind`` and ``code`` tell which.
* :class:`ModemGone` -- the USB modem was unplugged; the port raised an OS error.
* :class:`ProtocolError` -- bytes that cannot be framed as AT at all (a line too long).
* :class:`PduError` -- an SMS PDU that cannot be decoded; keeps the raw PDU so the message
  is quarantined, never dropped.
* :class:`RegistryError` and children -- the registry is missing, stale, badly signed
  (:class:`SignatureError`, :class:`RollbackError`, :class:`FreezeError`), its content does
  not match what was signed (:class:`RegistryCorrupt`), a lookup answered for another
  CNIC (:class:`RegistryMisbehaved`), or a version would remove too many records
  (:class:`MassRemovalRefused`).
* :class:`SyncError` and children -- a registry sync failed and the current registry is
  kept: untrusted clock, past its deadline, another sync running, an unsigned mass
  removal, an unusable delta.
* :class:`IllegalMove` -- a reply asked to make a move its state table forbids.
* :class:`Stopping` -- not an error: the signal that ends a modem owner's wait at a stop.
* :class:`FleetError` -- the centre's broker refused a fleet command's connection (wrong
  credentials, TLS failure) or did not answer in time.
"""

from __future__ import annotations


class ApplianceError(Exception):
    """Base of every error the appliance raises on purpose."""


class ConfigError(ApplianceError):
    """A configuration (or template) file has one or more problems.

    ``problems`` holds one human-readable line per problem, each naming the file and key.
    """

    def __init__(self, problems: list[str] | str) -> None:
        if isinstance(problems, str):
            problems = [problems]
        self.problems: list[str] = list(problems)
        super().__init__("\n".join(self.problems))


class ModemError(ApplianceError):
    """Something went wrong talking to a modem."""


class ModemTimeout(ModemError):
    """A modem did not answer a command (or the ``> `` prompt) in time."""


class ModemCommandError(ModemError):
    """A modem answered a command with ERROR, ``+CME ERROR: n`` or ``+CMS ERROR: n``.

    ``kind`` is ``"ERROR"``, ``"CME"`` or ``"CMS"``; ``code`` is the number (or ``None``
    for plain ERROR or a verbose error text, kept in ``text``).
    """

    def __init__(self, message: str, *, kind: str = "ERROR", code: int | None = None,
                 text: str = "") -> None:
        super().__init__(message)
        self.kind = kind
        self.code = code
        self.text = text


class ModemGone(ModemError):
    """The port disappeared or failed at the OS level (unplugged, closed, I/O error)."""


class ProtocolError(ApplianceError):
    """Bytes from a modem that cannot be framed as AT responses."""


class PduError(ApplianceError):
    """An SMS PDU could not be decoded or encoded.

    ``pdu`` keeps the raw hex PDU (decode side) so the message can be quarantined.
    """

    def __init__(self, message: str, *, pdu: str = "") -> None:
        super().__init__(message)
        self.pdu = pdu


class RegistryError(ApplianceError):
    """The registry is missing, unreadable, or cannot be updated."""


class SignatureError(RegistryError):
    """Registry metadata or a target failed verification (signature, hash, length)."""


class RollbackError(RegistryError):
    """The server offered a registry older than the installed one."""


class FreezeError(RegistryError):
    """The registry metadata has expired (a freeze attack or a stalled publisher)."""


class RegistryCorrupt(RegistryError):
    """The registry's content does not match what was signed: no verdict may be given.

    Scenarios: a flipped bit in ``registry.db`` makes a row's digest differ from the signed
    one at lookup; the scheduled integrity check finds the content digest changed.
    """


class MassRemovalRefused(RegistryError):
    """Publisher side: a version removes too many active records and carries no reason.

    Scenario: an import from a truncated CSV would drop most of the registry.
    """


class RegistryMisbehaved(RegistryError):
    """A lookup answered for another CNIC than the one asked: no verdict may be given.

    Scenario: a registry file whose index points at the wrong row; the citizen is told the
    service is unavailable rather than given someone else's verdict.
    """


class SyncError(RegistryError):
    """A registry sync failed (network, disk, apply); the current registry is kept."""


class DeltaUnusable(SyncError):
    """This delta cannot be applied here; the snapshot can still be. Never leaves sync.py.

    Scenarios: the delta is missing, starts from another version than the installed one,
    carries no content digest, or its result's digest differs from the signed one.
    """


class ClockNotTrusted(SyncError):
    """The clock reads earlier than the installed registry's signing time.

    Scenario: a unit without RTC battery boots in 1970 (or at its fake-hwclock date) before
    NTP; judging the registry's age by that clock would be wrong either way.
    """


class SyncDeadline(SyncError):
    """A download (or the whole sync) ran past its overall deadline.

    Scenario: a GPRS link trickles bytes just fast enough to defeat a per-read timeout.
    """


class SyncBusy(SyncError):
    """Another sync of the same registry is running; nothing was done (not a failure).

    Scenario: a technician runs ``nsor registry sync`` while the nightly sync is running.
    """


class UnsignedMassRemoval(SyncError):
    """Unit side: the offered version removes too many records without a signed reason.

    Scenario: a compromised or broken publisher empties the registry; the unit keeps the
    current one rather than answer "no record" for everybody.
    """


class StoreError(ApplianceError):
    """The message store (state.db) failed."""


class IllegalMove(ApplianceError):
    """A reply was asked to move between states the outbound table does not allow.

    Scenario: a delivery report arrives for a reply already marked failed (a bug, never
    silently accepted: the table in ``outbox/states.py`` is the one authority).
    """


class FleetError(ApplianceError):
    """The MQTT broker of the fleet link could not be reached or refused us."""


class ServiceUnreachable(ApplianceError):
    """A command that must go through the running service found none listening
    (``nsor balance`` with the service stopped)."""


class Stopping(Exception):
    """Not an error: a modem's owner thread was asked to stop while it waited for the modem.

    Raised inside the owner thread and caught there (``modem/engine.py``), so that a stop
    ends a wait at once (never a PDU transaction, whose answer must be recorded). It derives
    from ``Exception``, not :class:`ApplianceError`, so that no ``except ModemError`` of a
    send can take it for a modem fault.
    """


class SchemaError(ApplianceError):
    """A database file has a schema this release cannot use.

    Scenarios: a downgrade to a release older than an incompatible change in ``state.db``
    (the file is refused before anything is written to it); a forward migration that failed
    (rolled back; the file is as it was).
    """
