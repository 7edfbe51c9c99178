"""One modem: the owner thread that alone talks AT to it, for the life of the service.

What the owner does, in order of importance:

1. **Receive without loss.** ``+CMTI`` → ``AT+CMGR`` → decode → ``inbox.on_inbound``
   (which commits the message) → only then ``AT+CMGD``. Several notices at once (a burst, a
   long SMS) are read with one ``AT+CMGL=4``, not one ``AT+CMGR`` each. Every few seconds
   a cheap ``AT+CPMS?`` asks how many messages the SIM holds; a count that went up without
   a notice (a lost ``+CMTI``) starts the same ``AT+CMGL`` read at once, so a lost notice
   costs seconds, not a minute. A slower storage check (and one at every (re)start) reads
   whatever a crash or a failed commit left behind. The inbox is idempotent on
   (modem, PDU hash), so two paths may see one message.
2. **Send one reply at a time** (:class:`~appliance.modem.sender.Sender`), all its parts
   back to back, each recorded before the next (from modem memory by default).
3. **Stay alive.** A timeout → ESC + resync; a dead port or a modem that no longer
   resyncs → close, back off, reopen (the same by-path name comes back after a replug),
   re-init. The owner refreshes ``heartbeat`` while it waits; a stuck owner (a port call
   that never returns) shows as a stale heartbeat, which the service turns into a systemd
   watchdog restart.

Everything not about the port is behind the engine's two ports (:mod:`.ports`): what
arrives goes to the :class:`~.ports.InboxPort`; which reply to send, pacing, caps and
persistence are the :class:`~.ports.OutboxPort`'s.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import replace
from typing import Any

from ..backoff import Backoff
from ..errors import ModemCommandError, ModemError, ModemGone, ModemTimeout, PduError, Stopping
from . import pdu as pdumod
from .answers import parse_cmgl, parse_cmgr, parse_notice
from .atregistration import Registration, parse_registration, sms_service
from .atsms import (
    CNMI_FALLBACKS, CnmiRanges, choose_cnmi, choose_storage, parse_cnmi_ranges,
    parse_storage_options, parse_storage_use,
)
from .atvalues import parse_sim_state, parse_smsc, ussd_string
from .contract import ModemSettings, ModemState, ModemStatus
from .families import Family, family_for, registration_reports
from .interview import identify, read_network
from .port import CALL, POKE, STOP, Item, Port
from .ports import InboxPort, OutboxPort
from .sender import Sender
from .session import ATSession
from .ussd import UssdAnswer

__all__ = ["Modem", "ModemSettings", "ModemState", "ModemStatus"]

#: Inbound messages stored between two replies: enough to keep up with a burst, few enough
#: that replies keep leaving (each store is a commit; 16 at once stalled a 3 s radio 0.5 s).
READS_PER_TURN = 4

#: URCs after which the SIM should be swept at once (vendor "storage full" signals).
_FULL_URCS = frozenset({"^SMMEMFULL", "+CIEV", "+CMS ERROR"})


#: How often a message delivered straight to the unit (+CMT) and not yet stored is offered
#: to the inbox again, and how many per turn (each may wait for the database's lock).
HELD_RETRY_S = 5.0
HELD_PER_TURN = 3


class Modem:
    """The owner of one modem port. ``start()`` it; talk to it only through its methods."""

    def __init__(self, settings: ModemSettings, inbox: InboxPort, outbox: OutboxPort, *,
                 concat_ref_start: int = 0) -> None:
        self.settings = settings
        self.name = settings.name
        self._inbox = inbox
        self._outbox = outbox
        self.log = logging.getLogger(f"appliance.modem.{settings.name}")
        self.mailbox: queue.Queue[Item] = queue.Queue()
        self._status = ModemStatus(settings.name, settings.port)
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None
        self._stopping = threading.Event()
        self._generation = 0
        self._session: ATSession | None = None
        self._pending_reads: list[tuple[str, int]] = []
        # Messages listed by the last AT+CMGL, still on the SIM, not yet stored: read a few
        # per turn so that replies keep leaving during a burst.
        self._listed: list[tuple[int, str]] = []
        # Messages routed straight to us (+CMT, the last +CNMI fallback) whose store failed:
        # they exist nowhere else, so this owner keeps them until they are stored.
        self._held: list[str] = []
        # Messages the SIM held after the last full read (kept there because they could not
        # be stored): a count above it means something arrived that no notice announced.
        self._sim_baseline: int | None = None
        self._mem1 = settings.storage
        self._storage = settings.storage   # chosen at init from what AT+CPMS=? offers
        self._pin_rejected = False
        # The last report of each registration domain (+CREG, +CEREG…), from the health
        # check's read answers and from URCs; "can do SMS" is decided from all of them.
        self._regs: dict[str, Registration] = {}
        self._reg_commands: tuple[str, ...] = ("+CREG",)
        self._family: Family | None = None  # its row in families.py, from +CGMI/+CGMM
        # "stored" (AT+CMGW/AT+CMSS) unless configured "direct" or the modem lacks them.
        self._send_mode = settings.send_mode
        self.sender = Sender(settings, outbox, self.log, concat_ref_start=concat_ref_start,
                             on_part=self._part_sent, on_failure=self._send_failed)
        self.heartbeat = time.monotonic()

    # -- public, thread-safe ---------------------------------------------------------------

    def start(self) -> None:
        self._stopping.clear()
        self._thread = threading.Thread(target=self._run, name=f"modem-{self.name}", daemon=True)
        self._thread.start()

    def request_stop(self) -> None:
        """Ask the owner to stop after the transaction in flight (an AT+CMGS finishes)."""
        self._stopping.set()
        self.mailbox.put(Item(STOP))

    def stop(self, timeout: float = 10.0) -> None:
        self.request_stop()
        if self._thread is not None:
            self._thread.join(timeout)

    def poke(self) -> None:
        """Work may be waiting (a reply queued for this modem)."""
        self.mailbox.put(Item(POKE))

    def call(self, fn: Callable[[ATSession], Any]) -> "Future[Any]":
        """Run ``fn(session)`` in the owner thread between two transactions (probe, USSD…)."""
        fut: Future[Any] = Future()
        self.mailbox.put(Item(CALL, (fn, fut)))
        return fut

    @property
    def alive(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def status(self) -> ModemStatus:
        with self._lock:
            return replace(self._status, identity=dict(self._status.identity))

    # -- owner thread ----------------------------------------------------------------------

    def _beat(self) -> None:
        self.heartbeat = time.monotonic()

    def _set(self, **changes: Any) -> None:
        with self._lock:
            before = self._status.state
            for k, v in changes.items():
                setattr(self._status, k, v)
            if "state" in changes and changes["state"] != before:
                self._status.since = time.time()
                self.log.info("state %s -> %s", before, changes["state"])
            snapshot = replace(self._status, identity=dict(self._status.identity))
        for port in (self._outbox, self._inbox):  # the outbox first: routing, then alarms
            try:
                port.on_status(snapshot)
            except Exception:
                self.log.exception("status report to %s failed", type(port).__name__)

    def _error(self, message: str) -> None:
        self.log.warning("%s", message)
        self._set(last_error=message, last_error_at=time.time())

    def _part_sent(self) -> None:
        with self._lock:
            self._status.sent_parts += 1

    def _send_failed(self, message: str) -> None:
        with self._lock:
            self._status.send_failures += 1
        self._error(message)

    def _run(self) -> None:
        reopen = Backoff(1.0, 30.0)
        while not self._stopping.is_set():
            try:
                self._open_and_init()
                reopen.reset()
                self._serve()
            except Stopping:
                break
            except (ModemError, OSError) as exc:
                self._error(f"modem {self.name} ({self.settings.port}): {exc}")
                self._set(state=ModemState.GONE if isinstance(exc, (ModemGone, OSError))
                          else ModemState.FAILED)
            except Exception as exc:  # a bug must not kill the owner silently
                self.log.exception("modem %s: unexpected error", self.name)
                self._error(f"internal error: {exc!r}")
                self._set(state=ModemState.FAILED)
            finally:
                self._close()
            if self._stopping.wait(0) or self._sleep(reopen.next_delay()):
                break
        if self._held:  # +CMT messages that exist nowhere else: say so, loudly
            self.log.error("modem %s stops with %d message(s) delivered straight to the unit "
                           "(+CMT) that could never be stored; they are lost", self.name,
                           len(self._held))
        self._set(state=ModemState.STOPPED)

    def _sleep(self, seconds: float) -> bool:
        """Back off while still answering calls (so a probe fails fast); True on stop."""
        deadline = time.monotonic() + seconds
        while (remaining := deadline - time.monotonic()) > 0:
            self._beat()
            try:
                item = self.mailbox.get(timeout=min(remaining, 1.0))
            except queue.Empty:
                continue
            if item.kind == STOP:
                return True
            if item.kind == CALL:
                fn, fut = item.payload
                fut.set_exception(ModemGone(f"modem {self.name} is not connected"))
        return self._stopping.is_set()

    def _close(self) -> None:
        if self._session is not None:
            self._session.port.close()
            self._session = None

    def _open_and_init(self) -> None:
        s = self.settings
        self._generation += 1
        port = Port(s.port, baudrate=s.baudrate, flow_control=s.flow_control,
                    mailbox=self.mailbox, generation=self._generation, logger=self.log)
        self._session = sess = ATSession(port, self.mailbox, self.log, self._beat)
        self._set(state=ModemState.STARTING, reopens=self._status.reopens + 1)
        if not sess.resync(min(3.0, s.command_timeout_s)):
            raise ModemTimeout(f"modem {self.name} ({s.port}) does not answer AT; "
                               "check power, cable and baud rate")
        t = s.command_timeout_s
        sess.run("ATE0", t)
        sess.run("AT+CMEE=1", t)
        self._unlock_sim(sess)
        def ask(command: str) -> tuple[str, ...]:
            try:
                return sess.run(command, t)
            except ModemCommandError:   # an unanswered question leaves its field empty
                return ()
        ident = identify(ask, imsi=True).as_dict()
        self._set(identity=ident)
        sess.run("AT+CMGF=0", t)
        self._set_storage(sess, t)
        self._set_cnmi(sess, t)
        if self._send_mode == "stored":
            try:  # TS 27.005 §3.5.2-3: test forms answer OK where the commands exist
                sess.run("AT+CMGW=?", t)
                sess.run("AT+CMSS=?", t)
            except ModemCommandError:
                self._send_mode = "direct"
                self._error(f"modem {self.name}: no AT+CMGW/AT+CMSS; sending with AT+CMGS "
                            "(set send_mode = \"direct\" for it to silence this)")
        if s.smsc:
            sess.run(f'AT+CSCA="{s.smsc}",145', t)
        else:
            if not parse_smsc(sess.run("AT+CSCA?", t)):
                self._error(f"modem {self.name}: no SMS centre number on the SIM; "
                            "set smsc in the [[modems]] block")
        if s.cmms:
            try:  # TS 27.005 §3.5.6: keep the link up between the parts of a reply
                sess.run("AT+CMMS=2", t)
            except ModemCommandError:
                self.log.debug("AT+CMMS not supported")
        self._enable_registration_reports(sess, ident)
        self._health(sess)
        if self._send_mode == "stored":
            self.sender.resolve_stored(sess)
        self._sweep(sess)
        self.log.info("ready: %s %s IMEI %s", ident.get("manufacturer"), ident.get("model"),
                      ident.get("imei"))

    def _unlock_sim(self, sess: ATSession) -> None:
        t = self.settings.command_timeout_s
        state = parse_sim_state(sess.run("AT+CPIN?", t))
        if state == "READY":
            return
        if state == "SIM PIN" and self.settings.pin and not self._pin_rejected:
            try:
                sess.run(f'AT+CPIN="{self.settings.pin}"', t)
            except ModemCommandError as exc:
                # Never retried by the reopen loop: three wrong PINs lock the SIM (PUK).
                # The message must not carry the PIN (it reaches logs and the status page).
                self._pin_rejected = True
                raise ModemCommandError(
                    f"modem {self.name}: the SIM refused the configured PIN "
                    f"({exc.kind} {exc.code}); SIM PIN not retried until the service "
                    "restarts: check pin in the [[modems]] block", kind=exc.kind,
                    code=exc.code) from None
            return
        if state == "SIM PIN" and self._pin_rejected:
            raise ModemCommandError(f"modem {self.name}: SIM PIN needed and the configured "
                                    "PIN was refused; fix pin and restart", kind="CME")
        hint = {"SIM PIN": "set pin in the [[modems]] block",
                "SIM PUK": "the SIM is PUK-locked: unlock it in a phone (never retried here)"}
        raise ModemCommandError(f"modem {self.name}: SIM state {state or 'unknown'}; "
                                f"{hint.get(state, 'check the SIM')}", kind="CME")

    def _set_storage(self, sess: ATSession, t: float) -> None:
        """One message storage for reading, writing and receiving, chosen from what
        ``AT+CPMS=?`` offers (TS 27.005 §3.2.2): the configured one where possible."""
        try:
            offered = parse_storage_options(sess.run("AT+CPMS=?", t))
        except ModemCommandError:
            offered = None
        choice = choose_storage(offered, self.settings.storage)
        m = choice.memory
        sess.run(f'AT+CPMS="{m}","{m}","{m}"', t)
        self._mem1 = self._storage = m
        if choice.why:
            self.log.warning("storage %s: %s", m, choice.why)
        else:
            self.log.info("storage %s", m)

    def _set_cnmi(self, sess: ATSession, t: float) -> None:
        """New-message indications chosen from the modem's own ``AT+CNMI=?`` ranges
        (:func:`~appliance.modem.atsms.choose_cnmi`: store, then announce). A modem that
        does not answer the test form, or refuses its own choice, gets the usual settings
        in turn, with both <bfr> values."""
        try:
            ranges = parse_cnmi_ranges(sess.run("AT+CNMI=?", t))
        except ModemCommandError:
            ranges = None
        choice = choose_cnmi(ranges, status_reports=self.settings.status_reports) \
            if ranges is not None else None
        tried = []
        if choice is not None:
            tried.append(choice.command)
            try:
                sess.run(choice.command, t)
                self.log.info("%s (offered %s)%s", choice.command, _ranges_text(ranges),
                              f": {choice.why}" if choice.why else "")
                return
            except ModemCommandError:
                pass
        for cnmi in CNMI_FALLBACKS:
            if f"AT+CNMI={cnmi}" in tried:
                continue
            try:
                sess.run(f"AT+CNMI={cnmi}", t)
                self.log.info("AT+CNMI=%s (%s)", cnmi, "the modem's own choice was refused"
                              if choice else "AT+CNMI=? not answered")
                return
            except ModemCommandError:
                continue
        raise ModemCommandError(f"modem {self.name}: no AT+CNMI setting accepted "
                                f"(offered {_ranges_text(ranges)})")

    def _enable_registration_reports(self, sess: ATSession, ident: dict[str, str]) -> None:
        """URCs on registration changes for each domain that can decide SMS (TS 27.007
        §7.2, §10.1.22, §10.1.52; families.registration_reports: the family's where known,
        else all), keeping those the modem accepts. The health check reads the same."""
        self._family = family = family_for(ident.get("manufacturer", ""),
                                           ident.get("model", ""))
        self.log.info("family: %s", family.name if family else "not in the table (generic)")
        candidates = registration_reports(ident.get("manufacturer", ""),
                                          ident.get("model", ""))
        accepted = []
        for name in candidates:
            # n=2 adds the location (and access technology) to each URC, for the log;
            # n=1 where a modem refuses 2.
            for n in (2, 1):
                try:
                    sess.run(f"AT{name}={n}", self.settings.command_timeout_s)
                    accepted.append(name)
                    break
                except ModemCommandError:
                    self.log.debug("AT%s=%d refused", name, n)
        self._reg_commands = tuple(accepted) or ("+CREG",)
        self._regs = {}

    # -- steady state ----------------------------------------------------------------------

    def _serve(self) -> None:
        s = self.settings
        sess = self._session
        assert sess is not None
        now = time.monotonic()
        next_health = now + s.health_interval_s
        next_sweep = now + s.sweep_interval_s
        next_check = now + s.idle_check_s if s.idle_check_s > 0 else float("inf")
        # First balance check shortly after start-up, then every balance_interval_minutes.
        next_balance = now + 5.0 if s.balance_ussd else float("inf")
        next_held = now + HELD_RETRY_S
        timeouts = 0
        while not self._stopping.is_set():
            self._beat()
            try:
                self._handle_urcs(sess)
                self._do_reads(sess)
                now = time.monotonic()
                # Deadlines move before the work: a check the modem refuses is tried again
                # at its interval, not at once in a tight loop.
                if now >= next_health:
                    next_health = now + s.health_interval_s
                    self._health(sess)
                if sess.memory_full:
                    sess.memory_full = False
                    next_sweep = now + s.sweep_interval_s
                    self._sweep(sess)
                elif now >= next_sweep:
                    next_sweep = now + s.sweep_interval_s
                    next_check = now + s.idle_check_s if s.idle_check_s > 0 else float("inf")
                    self._check_storage(sess, anything=True)
                elif now >= next_check:
                    next_check = now + s.idle_check_s
                    if not (self._pending_reads or self._listed):  # else: known, being read
                        self._check_storage(sess, anything=False)
                if now >= next_balance:
                    next_balance = now + s.balance_interval_minutes * 60
                    self._check_balance(sess)
                if self._held and now >= next_held:
                    next_held = now + HELD_RETRY_S
                    tried = self._held[:HELD_PER_TURN]
                    for pdu_hex in tried:
                        self._beat()
                        self._deliver(pdu_hex, index=None)
                    # Those still held go to the back: one that can never be stored must
                    # not keep the others from their turn.
                    self._held = ([p for p in self._held if p not in tried]
                                  + [p for p in tried if p in self._held])
                sent = False
                if self._status.state == ModemState.READY:
                    job = self._outbox.next_job(self.name)
                    if job is not None:
                        self.sender.send(sess, job, stored=self._send_mode == "stored")
                        sent = True
                timeouts = 0
            except ModemCommandError as exc:
                # The modem answered, so it is in sync; whatever failed is retried by the
                # next sweep or health check.
                self._error(f"modem {self.name}: {exc}")
                continue
            except ModemTimeout as exc:
                timeouts += 1
                self._error(f"modem {self.name}: {exc}")
                if timeouts >= 3 or not sess.resync(min(3.0, s.command_timeout_s)):
                    raise ModemTimeout(f"modem {self.name} stopped answering; reopening") \
                        from exc
                # A send cut short may have left a part "stored" whose AT+CMSS was never
                # answered. Ask its slot now, before the reply resumes on this SIM (in about
                # a second): a part that did leave must not be sent again.
                try:
                    self.sender.resolve_stored(sess)
                except ModemCommandError as again:
                    self._error(f"modem {self.name}: {again}")
                except ModemTimeout as again:
                    raise ModemTimeout(f"modem {self.name} stopped answering; reopening") \
                        from again
                continue
            if sent or sess.urcs or self._pending_reads or self._listed:
                continue
            item = sess.pump(timeout=min(1.0, max(0.0, min(next_health, next_sweep, next_check)
                                                 - time.monotonic())))
            if item is None:
                continue
            if item.kind == STOP:
                raise Stopping()
            if item.kind == CALL:
                fn, fut = item.payload
                if fut.set_running_or_notify_cancel():
                    try:
                        fut.set_result(fn(sess))
                    except Stopping:
                        raise
                    except BaseException as exc:
                        fut.set_exception(exc)
                        if isinstance(exc, (ModemTimeout, ModemGone)):
                            raise
            # POKE: loop round and ask for a job

    def _handle_urcs(self, sess: ATSession) -> None:
        while sess.urcs:
            urc = sess.urcs.popleft()
            if urc.name in ("+CMTI", "+CDSI"):
                notice = parse_notice(urc.args)
                if notice is not None:
                    self._pending_reads.append((notice.memory, notice.index))
                else:
                    self.log.warning("unparsable %s: %r; sweeping", urc.name, urc.line)
                    self._sweep(sess)
            elif urc.name in ("+CMT", "+CDS") and urc.pdu:
                # Routed straight to us, not stored: nothing to delete, but it must still
                # be persisted before anything else happens.
                self._deliver(urc.pdu, index=None)
            elif urc.name in ("+CREG", "+CGREG", "+CEREG", "+C5GREG"):
                reg = parse_registration(urc.line, solicited=False)
                if reg is not None:
                    self._regs[reg.command] = reg
                    self._registration()
                else:
                    self.log.warning("unparsable %s: %r", urc.name, urc.line)
            elif urc.name in _FULL_URCS and "FULL" in urc.line.upper():
                self._sweep(sess)
            else:
                self.log.debug("URC %s", urc.line)

    def _do_reads(self, sess: ATSession, limit: int = READS_PER_TURN) -> None:
        """Read the announced messages: several in the receive storage with one AT+CMGL
        (what is on the SIM, a few dozen at most), otherwise up to ``limit`` with AT+CMGR;
        the loop then lets a reply go out, so a flood of inbound SMS does not hold every
        answer back until it has passed."""
        t = self.settings.command_timeout_s
        if self._pending_reads:
            sess.take_arrived()       # notices that came in the same breath join the burst
            self._handle_urcs(sess)
        listed = {index for index, _ in self._listed}
        # A listed message is still on the SIM, so its index cannot have been reused.
        self._pending_reads = [r for r in self._pending_reads
                               if not (r[0] == self._mem1 and r[1] in listed)]
        burst = [r for r in self._pending_reads if r[0] == self._mem1]
        if len(burst) > 1 and not self._listed:
            # A burst (or the parts of one long SMS): one AT+CMGL lists them all, instead of
            # an AT+CMGR round trip each; each is still stored before it is deleted.
            self._pending_reads = [r for r in self._pending_reads if r[0] != self._mem1]
            self._sweep(sess, limit=limit)
            return
        while self._listed and limit > 0:
            limit -= 1
            index, pdu_hex = self._listed.pop(0)
            self._deliver(pdu_hex, index=index)
        while self._pending_reads and limit > 0:
            limit -= 1
            mem, index = self._pending_reads.pop(0)
            try:
                if mem != self._mem1:
                    sess.run(f'AT+CPMS="{mem}"', t)  # B6: read and delete where it is stored
                    self._mem1 = mem
                lines = sess.run(f"AT+CMGR={index}", t)
            except ModemCommandError as exc:
                # +CMS ERROR 321 (invalid index): already read and deleted by a sweep. Any
                # other failure leaves the message on the SIM for the next sweep.
                self.log.debug("CMGR %s,%d: %s", mem, index, exc)
                lines = ()
            message = parse_cmgr(lines)
            if lines and message is None:
                # Someone else's answer (a late one, after a timeout): out of step with the
                # modem. Never delete on it; resync and let the sweep read the message.
                raise ModemTimeout(f"AT+CMGR={index} got an answer that is not +CMGR: "
                                   f"{lines[0]!r}; resynchronising")
            if message is not None and message.pdu is not None and message.received:
                self._deliver(message.pdu, index=index)
            if self._mem1 != self._storage:
                home = self._storage
                sess.run(f'AT+CPMS="{home}"', t)
                self._mem1 = home

    def _check_storage(self, sess: ATSession, *, anything: bool) -> None:
        """The cheap check: ``AT+CPMS?`` (TS 27.005 §3.2.2) gives the used count of the
        receive storage in one short answer. Read it all with ``AT+CMGL`` only when the
        count says so: above what the last read left (a message no ``+CMTI`` announced),
        or, when ``anything``, any message at all (what a failed commit left there)."""
        used = self._storage_used(sess)
        if used is None:  # no usable AT+CPMS? answer: fall back to reading
            if anything:
                self._sweep(sess, limit=READS_PER_TURN)
            return
        baseline = self._sim_baseline if self._sim_baseline is not None else 0
        if used > (0 if anything else baseline):
            if not anything:
                self.log.info("%d message(s) on the SIM that no +CMTI announced; reading",
                              used - baseline)
            self._sweep(sess, limit=READS_PER_TURN)
        elif used < baseline:
            self._sim_baseline = used

    def _storage_used(self, sess: ATSession) -> int | None:
        try:
            lines = sess.run("AT+CPMS?", self.settings.command_timeout_s)
        except ModemCommandError:
            return None
        use = parse_storage_use(lines)
        if not use:
            return None
        used, total = use[0].used, use[0].total   # <mem1>: where messages are read
        if (used, total) != (self._status.sim_used, self._status.sim_total):
            self._set(sim_used=used, sim_total=total)
        return used

    def _sweep(self, sess: ATSession, limit: int | None = None) -> None:
        """Read every stored message (``AT+CMGL=4``: all, PDU mode), persist, then delete
        each by index. Never ``AT+CMGD=1,4``: it would also delete what arrived after the
        list was taken and before it was stored. With ``limit``, only that many are stored
        now and the rest wait in ``_listed`` (still on the SIM) for the next turns."""
        t = self.settings.command_timeout_s
        lines = sess.run("AT+CMGL=4", max(t, 30.0))
        entries: list[tuple[int, str]] = []
        leftovers: list[int] = []
        for listed in parse_cmgl(lines):
            assert listed.index is not None   # +CMGL always names the slot
            # TS 27.005 §3.1 <stat>: 0/1 received (unread/read); 2/3 are stored outgoing
            # messages, not ours to answer or delete.
            if listed.received:
                if listed.pdu is not None:
                    entries.append((listed.index, listed.pdu))
            elif self._send_mode == "stored":
                # Our own leftovers (a CMSS that timed out, a write whose +CMGW: index was
                # lost in a crash): resolved at start-up already, so never sent from here.
                leftovers.append(listed.index)
        now = entries if limit is None else entries[:limit]
        # A fresh list replaces the old one: an index listed before may since have been
        # deleted and reused by a new message, which only this list shows as it is.
        self._listed = entries[len(now):]
        for index, pdu_hex in now:
            self._deliver(pdu_hex, index=index)
        for index in leftovers:
            sess.run(f"AT+CMGD={index}", t)
        if entries:
            self.log.info("sweep: %d stored message(s) listed", len(entries))
        # What stays (messages that could not be stored) is the new baseline of the check.
        used = self._storage_used(sess)
        self._sim_baseline = None if used is None else max(0, used - len(self._listed))

    def _deliver(self, pdu_hex: str, *, index: int | None) -> None:
        """Decode, hand to a port (which persists), then delete from the SIM."""
        try:
            decoded: pdumod.Deliver | pdumod.StatusReport | PduError = pdumod.decode(pdu_hex)
        except PduError as exc:
            decoded = exc
        try:
            if isinstance(decoded, pdumod.StatusReport):
                self._outbox.on_status_report(self.name, decoded)
            else:
                self._inbox.on_inbound(self.name, pdu_hex, decoded)
                with self._lock:
                    self._status.received += 1
        except Exception:
            if index is not None:
                # Not persisted: leave it on the SIM. The next sweep offers it again.
                self.log.exception("could not store a message from SIM index %s; kept on "
                                   "the SIM", index)
            elif pdu_hex not in self._held:
                # Routed straight to us (+CMT/+CDS): no SIM copy to fall back on. Held by
                # this owner and offered again every HELD_RETRY_S until it is stored.
                self._held.append(pdu_hex)
                self.log.exception("could not store a message delivered directly (+CMT); "
                                   "held in memory and retried")
                self._set(held=len(self._held))
            return
        if index is None and pdu_hex in self._held:
            self._held.remove(pdu_hex)
            self.log.info("a message held in memory is stored now")
            self._set(held=len(self._held))
        if index is not None and self._session is not None:
            self._session.run(f"AT+CMGD={index}", self.settings.command_timeout_s)

    def _registration(self) -> None:
        """Ready or "no network" from every domain's last report (atregistration.sms_service:
        SMS-capable +CREG states incl. SMS only and CSFB not preferred; LTE/NR where the
        radio is there; a packet domain alone never takes a modem away)."""
        service = sms_service(self._regs)
        registered = service.able
        state = ModemState.READY if registered else ModemState.NO_NETWORK
        if state != self._status.state or registered != self._status.registered \
                or service.reason != self._status.network:
            if service.reason != self._status.network:
                self.log.info("network: %s", service.reason)
            self._set(registered=registered, state=state, network=service.reason)

    def _health(self, sess: ATSession) -> None:
        t = self.settings.command_timeout_s
        reading = read_network(lambda command: sess.run(command, t), self._reg_commands)
        self._regs.update(reading.registrations)
        self._set(rssi=reading.signal.rssi if reading.signal is not None else None,
                  operator=reading.operator.name if reading.operator is not None
                  else self._status.operator)
        try:
            sim = parse_sim_state(sess.run("AT+CPIN?", t))
        except ModemCommandError as exc:  # +CME ERROR: 10 = SIM not inserted (§9.2.1)
            sim = f"unreadable ({exc})"
        if sim and sim != "READY":
            # A SIM pulled or locked at run time: out of rotation, and say why (rather
            # than "no network"). The next health check re-admits it once the SIM is back.
            self._set(state=ModemState.FAILED, registered=False,
                      last_error=f"modem {self.name}: SIM state {sim}; check the SIM",
                      last_error_at=time.time())
            return
        if not self._regs:
            self._regs["+CREG"] = Registration("+CREG", 4)  # nothing answered: unknown
        self._registration()
        st = self._status
        if st.sim_used and st.sim_total and st.sim_used >= st.sim_total:
            sess.memory_full = True  # a full SIM refuses new SMS: drain it now

    def _check_balance(self, sess: ATSession) -> None:
        """Ask the operator for the prepaid balance by USSD (``AT+CUSD=1,"<code>",15``);
        the answer arrives later as a +CUSD URC."""
        s = self.settings
        try:
            answer = self._ussd(sess, s.balance_ussd)
        except ModemCommandError as exc:
            self._error(f"modem {self.name}: balance request {s.balance_ussd} refused: {exc}")
            return
        if answer is None:
            self._error(f"modem {self.name}: no answer to balance request {s.balance_ussd}")
            self._inbox.on_balance(self.name, None, "")
            return
        self._balance_answer(answer)

    def _balance_answer(self, answer: UssdAnswer) -> float | None:
        from .ussd import balance_from

        pattern = self.settings.balance_pattern
        amount = balance_from(answer.text, pattern) if pattern else None
        self._set(balance=amount, balance_text=answer.text, balance_at=time.time())
        self._inbox.on_balance(self.name, amount, answer.text)
        return amount

    def _ussd(self, sess: ATSession, code: str) -> UssdAnswer | None:
        """One USSD request and its ``+CUSD`` answer (None: no answer in time). A session
        the network leaves open ("further action required", TS 27.007 §7.15 <m>=1) is
        closed with ``AT+CUSD=2``, or the next request would land in the operator's menu."""
        from .ussd import parse_cusd

        t = self.settings.command_timeout_s
        # Huawei sticks take the code as packed GSM-7 in hex (families.py: ussd_packed).
        packed = ussd_string(code, packed=bool(self._family and self._family.ussd_packed))
        sess.run(f'AT+CUSD=1,"{packed}",15', t)
        urc = sess.wait_urc("+CUSD", timeout=max(20.0, t))
        answer = parse_cusd(urc.line) if urc is not None else None
        if answer is not None and answer.status == 1:
            try:
                sess.run("AT+CUSD=2", t)
            except ModemCommandError:
                self.log.debug("AT+CUSD=2 refused")
        return answer

    def ussd(self, code: str, *, balance: bool = False) -> "Future[UssdAnswer | None]":
        """Send a USSD code from the owner thread, between two transactions (``nsor ussd``,
        ``nsor balance``). With ``balance``, the answer also becomes the modem's last
        balance, read with its ``balance_pattern``, as the periodic check does."""
        def run(sess: ATSession) -> UssdAnswer | None:
            answer = self._ussd(sess, code)
            if balance and answer is not None:
                self._balance_answer(answer)
            return answer
        return self.call(run)


def _ranges_text(ranges: CnmiRanges | None) -> str:
    """``(0,1,2),(0,1),…`` for the log, from parsed ranges (or "nothing")."""
    if ranges is None:
        return "nothing"
    return ",".join("(" + ",".join(map(str, sorted(r))) + ")"
                    for r in (ranges.mode, ranges.mt, ranges.bm, ranges.ds, ranges.bfr))
