"""The unit: store, registry, responder and modem bank wired together, with a lifecycle.

``Service`` is the :class:`~appliance.modem.ports.InboxPort` of every modem; the
:class:`~appliance.outbox.Outbox` is their other port. Both run in the modem owner threads,
so the per-SMS path has no thread hop:

    on_inbound:  record the PDU (committed) → reassemble → guard → respond → queue the
                 reply (committed) → wake the modem     … then the engine deletes it
    on_status:   alarms for a modem down, the SIM's first start (its older messages)
    on_balance:  the low-credit alarm; a recharged modem back into rotation

Everything after "queued" (which modem, pacing, retries, crash recovery) is the outbox's.

A failure after the inbound row is committed never blocks the SIM delete: the row stays
``new`` (or ``part``) and the periodic jobs answer it later; ``start()`` answers any such row
left by a crash before it opens a modem.
"""

from __future__ import annotations

import logging
import shutil
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import TYPE_CHECKING, Any

from apscheduler.schedulers.background import BackgroundScheduler

from .. import __version__, journal
from ..config import Config
from ..config.credentials import redact_tree
from ..errors import ApplianceError, ConfigError, PduError
from ..modem import pdu as pdumod
from ..modem.engine import Modem, ModemSettings, ModemState, ModemStatus
from ..outbox import Outbox
from ..outbox.bank import SlotSettings
from ..registry.lookup import Registry, RegistryInfo, is_stale
from ..registry.names import longest_names
from ..registry.status import sync_status
from ..rules import reply_budget
from ..rules.cnic import parse_message
from ..rules.inbound_age import AgeRules, judge_age
from ..rules.responder import Policy, RegistryState, Templates, limit_reply, load_templates, respond
from ..rules.wording import plural
from ..state import retention
from ..state.history import History, counts_since, sample
from ..state.store import Store, db, write_txn
from . import systemd
from .alarms import Alarms, disk_alarm
from .control import ControlServer, socket_path as control_socket_path
from .guard import VERDICT_KINDS, Guard, GuardVerdict
from .requests import ServiceRequests

if TYPE_CHECKING:  # the fleet link loads paho, so only when it is enabled
    from ..fleet.link import FleetLink
    from ..registry.schedule import RegistryScheduler

log = logging.getLogger(__name__)

Listener = Callable[[str, dict[str, Any]], None]

#: A modem must stay down this long before it is an alarm (and maybe an SMS).
MODEM_DOWN_ALARM_AFTER_S = 60.0

#: An owner thread is stuck when its heartbeat is older than its longest wait (send timeout
#: plus command timeout) and this much more; the watchdog pings then stop.
WATCHDOG_GRACE_S = 30.0


@dataclass(frozen=True)
class RegistryView:
    info: RegistryInfo
    state: RegistryState
    checked: float


class Service:
    """Everything between the modems and the registry. ``start()``, then ``stop()``."""

    def __init__(self, config: Config, *, templates: Templates | None = None,
                 listener: Listener | None = None,
                 modem_down_alarm_after_s: float = MODEM_DOWN_ALARM_AFTER_S,
                 health_check_s: float = 15.0,
                 watchdog_grace_s: float = WATCHDOG_GRACE_S) -> None:
        self.config = config
        self.templates = templates or load_templates(config.replies.templates)
        self.policy = Policy(language=config.replies.language,
                             disclosure=config.replies.disclosure,
                             max_cnics=config.replies.max_cnics,
                             max_parts=config.replies.max_parts,
                             ref16=any(m.concat_ref16 for m in config.enabled_modems))
        # Every reply the templates can make must fit max_parts, with names as long as the
        # registry's longest but no longer than the bound (or the bound, without one). A
        # registry name beyond the bound is the alarm of _check_reply_names, not a refusal:
        # a registry is data the technician cannot fix.
        lengths = reply_budget.lengths_of(longest_names(config.registry_path))
        problems = reply_budget.check(
            self.templates, self.policy,
            reply_budget.BOUND if lengths is None else lengths.at_most(reply_budget.BOUND))
        if problems:
            raise ConfigError(problems)
        self._names_checked: int | None = None  # the registry version checked last
        self.listener = listener
        self.store = Store(config.state_path)
        self.registry = Registry(config.registry_path)
        self.alarms = Alarms(sms_numbers=config.alarms.sms_numbers,
                             min_interval_s=config.alarms.min_interval_minutes * 60,
                             send_sms=self._queue_alarm_sms,
                             header=f"NSOR {config.unit.name} {__version__}")
        self.guard = Guard(config)
        self.history = History()
        # Replies made since start, by verdict (Reply.kind): /metrics' counter and, as
        # per-minute differences, the status page's chart.
        self.replies_total: dict[str, int] = {}
        self._replies_lock = threading.Lock()
        self._replies_sampled: dict[str, int] = {}
        enabled = [m for m in config.modems if m.enabled]
        self.outbox = Outbox([(m.name, SlotSettings(m.min_interval_s, m.hourly_cap, m.daily_cap))
                              for m in enabled], config.reliability,
                             country_code=config.unit.country_code, alarms=self.alarms,
                             emit=self._emit, ref16=self.policy.ref16)
        self.modems: dict[str, Modem] = {}
        for m in enabled:
            modem = Modem(ModemSettings.from_config(m, config.unit.country_code),
                          self, self.outbox,
                          concat_ref_start=self.outbox.concat_ref_start(m.name))
            self.modems[m.name] = modem
            self.outbox.attach(m.name, modem.poke)
        self.scheduler = BackgroundScheduler(timezone=config.registry.timezone)
        self._registry_view: RegistryView | None = None
        self._registry_lock = threading.Lock()
        self._stop = threading.Event()
        self.started_at = time.time()
        self._down_since: dict[str, float] = {}
        self.modem_down_alarm_after_s = modem_down_alarm_after_s
        self.health_check_s = health_check_s
        self.watchdog_grace_s = watchdog_grace_s
        lim = config.limits
        self.age_rules = AgeRules(history_margin_s=lim.history_margin_minutes * 60,
                                  late_after_s=lim.late_after_minutes * 60)
        self._first_start: dict[str, float] = {}   # modem -> first start on its SIM
        self._first_sim: dict[str, str] = {}       # modem -> the SIM (IMSI) that date is of
        self.registry_scheduler: RegistryScheduler | None = None
        # The fleet link (docs/fleet.md), off by default; paho is not even imported then.
        self.fleet: FleetLink | None = None
        if config.fleet.enabled:
            from ..fleet.link import FleetLink

            self.fleet = FleetLink(config.fleet, config.unit.name, alarms=self.alarms,
                                   hash_number=self.guard.audit.sender_hash,
                                   version=__version__)

    # -- lifecycle -------------------------------------------------------------------------

    def start(self) -> None:
        self.outbox.recover()
        if self.config.registry_path.exists():
            # Verified before the first answer (2.4 s at 1M records on the dev box): a row
            # lost while the unit was off must not answer "no record" (registry/integrity.py
            # alarms and repairs a failure once the scheduler runs).
            self.registry.verify()
        self._answer_leftovers()
        for modem in self.modems.values():
            modem.start()
        self.scheduler.add_job(self._expire_parts, "interval", seconds=10, id="reassembly",
                               max_instances=1, coalesce=True)
        self.scheduler.add_job(self._check_health, "interval", seconds=self.health_check_s,
                               id="health",
                               max_instances=1, coalesce=True, next_run_time=datetime.now())
        self.scheduler.add_job(self._answer_leftovers, "interval", seconds=60, id="leftovers",
                               max_instances=1, coalesce=True)
        # At the start of each minute, so that every minute gets exactly one sample (an
        # interval job drifts, and would now and then leave a minute empty: a gap).
        self.scheduler.add_job(self.sample_history, "cron", second=0, id="history",
                               max_instances=1, coalesce=True, misfire_grace_time=30)
        self.scheduler.add_job(self.guard.purge, "cron", hour=3, minute=30, jitter=600,
                               id="purge", max_instances=1, coalesce=True)
        # Hourly, so a number or text is kept at most the window plus an hour.
        self.scheduler.add_job(self.redact_expired, "interval", hours=1, id="retention",
                               max_instances=1, coalesce=True,
                               next_run_time=datetime.now() + timedelta(minutes=1))
        self.scheduler.start()
        self.status_server = None
        if self.config.status.http_bind:
            from ..status.server import StatusServer

            try:
                self.status_server = StatusServer(self.snapshot, self.config.status.http_bind,
                                                  history=self.history.window)
                self.status_server.start()
            except ApplianceError as exc:
                # The page is for technicians; citizens' answers must not depend on it.
                self.status_server = None
                self.alarms.raise_("status_page", str(exc))
        self.control_server = None
        try:
            self.control_server = ControlServer(control_socket_path(self.config.unit.data_dir),
                                                ServiceRequests(self).handlers())
            self.control_server.start()
        except ApplianceError as exc:
            # `nsor balance` and `nsor ussd` are for technicians; citizens come first.
            self.control_server = None
            log.warning("%s; nsor balance and nsor ussd will not work", exc)
        from ..registry.integrity import DEFAULT_VERIFY_MINUTES, IntegrityWatch
        repair = None
        if self.config.registry.repository_url:
            from ..registry.schedule import RegistryScheduler
            from ..registry.sync import RegistrySync

            # The sync vouches for the installed version only if its content verifies; a
            # verification of the same file within the interval is reused (no extra scan).
            sync = RegistrySync.from_config(
                self.config.registry, path=self.config.registry_path,
                on_alarm=self.alarms.raise_, on_clear=self.alarms.clear,
                verifier=lambda expected: self.registry.verify_recent(
                    expected, DEFAULT_VERIFY_MINUTES * 60))
            # The service raises the stale-registry alarm itself (_check_health).
            registry_jobs = self.registry_scheduler = RegistryScheduler.from_config(
                self.config.registry, sync, scheduler=self.scheduler, stale_check_minutes=0)
            registry_jobs.start()
            repair = lambda: registry_jobs.run("repair")  # noqa: E731
        if self.fleet is not None:
            self.fleet.start(self.snapshot, installed_version=lambda: self.registry_view(
                max_age_s=0).info.version, sync_now=(self.registry_scheduler.run
                                                     if self.registry_scheduler else None))
        self.integrity = IntegrityWatch(self.registry, self.scheduler,
                                        on_alarm=self.alarms.raise_,
                                        on_clear=self.alarms.clear, repair=repair)
        self.integrity.start()
        self._check_reply_names()
        log.info("service started: %s, registry %s",
                 plural(len(self.modems), "modem", "modems"), self.registry_view().state.name)

    def stop(self) -> None:
        self._stop.set()
        self.outbox.close()
        if self.fleet is not None:
            self.fleet.stop()
        server = getattr(self, "status_server", None)
        if server is not None:
            server.stop()
        control = getattr(self, "control_server", None)
        if control is not None:
            control.stop()
        try:
            self.scheduler.shutdown(wait=False)
        except Exception:  # not started
            pass
        for modem in self.modems.values():   # all at once: shutdown waits for the slowest
            modem.request_stop()
        for modem in self.modems.values():
            modem.stop(timeout=modem.settings.send_timeout_s + 5)
        self.registry.close()
        self.store.close()
        log.info("service stopped")

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """The main loop: systemd readiness, watchdog pings, status line."""
        stop = stop or self._stop
        systemd.notify("READY=1")
        interval = min(systemd.watchdog_interval() or 5.0, 5.0)
        while not stop.wait(interval):
            healthy, summary = self.watchdog_check()
            if healthy:
                systemd.notify("WATCHDOG=1")
            systemd.notify(f"STATUS={summary}")

    def watchdog_check(self) -> tuple[bool, str]:
        """True while every modem owner is alive and not stuck (a stuck owner stops the
        pings, so systemd restarts the whole unit)."""
        now = time.monotonic()
        ok = True
        for name, modem in self.modems.items():
            limit = (modem.settings.send_timeout_s + modem.settings.command_timeout_s
                     + self.watchdog_grace_s)
            if not modem.alive:
                log.error("modem %s owner thread died; restarting it", name)
                modem.start()
            elif now - modem.heartbeat > limit:
                log.error("modem %s owner stuck for %.0f s", name, now - modem.heartbeat)
                ok = False
        ready = sum(m.status().state == ModemState.READY for m in self.modems.values())
        summary = (f"{ready}/{len(self.modems)} modems ready, {self.outbox.pending_count()} "
                   f"queued, registry {self.registry_view().state.name.lower()}")
        return ok, summary

    # -- registry --------------------------------------------------------------------------

    def registry_view(self, max_age_s: float = 5.0) -> RegistryView:
        """Registry state, re-read at most every few seconds (cheap on the per-SMS path)."""
        with self._registry_lock:
            view = self._registry_view
            if view is None or time.monotonic() - view.checked > max_age_s:
                info = self.registry.info()
                now = datetime.now(timezone.utc)
                if not info.exists:
                    state = RegistryState.MISSING
                elif not info.usable or self.registry.corrupt is not None:
                    state = RegistryState.CORRUPT
                elif is_stale(info, timedelta(hours=self.config.registry.max_age_hours), now):
                    state = RegistryState.STALE
                else:
                    state = RegistryState.OK
                view = self._registry_view = RegistryView(info, state, time.monotonic())
            return view

    # -- the InboxPort (modem owner threads) -----------------------------------------------

    def on_inbound(self, modem: str, pdu_hex: str, decoded: pdumod.Deliver | PduError) -> None:
        key = pdumod.pdu_hash(pdu_hex)
        if isinstance(decoded, PduError):
            qid, created = self.store.record_inbound(modem=modem, pdu_hash=key, pdu=pdu_hex,
                                                   status="quarantined", reason=str(decoded))
            if created:
                journal.sms_in(modem=modem, sender=None, cnic_hmacs=(), verdict="quarantined",
                               parts=1, inbound_ids=[qid], reason=str(decoded)).log()
            return
        d = decoded
        concat = d.concat if d.concat is not None and d.concat.total > 1 else None
        sent_at = d.timestamp.timestamp() if d.timestamp else None
        fields = dict(
            modem=modem, pdu_hash=key, pdu=pdu_hex, sender=d.sender, sender_type=d.sender_type,
            text=d.text, sent_at=sent_at,
            concat_ref=concat.reference if concat else None,
            concat_total=concat.total if concat else None,
            concat_seq=concat.seq if concat else None,
            status="part" if concat else "new")
        if concat is not None:
            iid, created = self.store.record_inbound(**fields)
            if created:
                self._emit("inbound", modem=modem, sender=d.sender, text=d.text, id=iid)
                try:
                    self._try_reassemble(modem, d.sender, concat.reference, concat.total)
                except Exception:
                    log.exception("modem %s: answering inbound %d failed; will retry", modem,
                                  iid)
            return
        # A whole SMS is stored, checked, answered and audited in one transaction: one
        # fsync, not four, and never a reply queued for a row that is not committed.
        after: Callable[[], None] | None = None
        with write_txn():
            iid, created = self.store.record_inbound(**fields)
            if not created:
                return
            try:
                with db.atomic():  # a savepoint: if answering fails, the row still commits
                    after = self._answer(modem, [iid], d.sender, d.sender_type, d.text,
                                         sent_at=sent_at)
            except Exception:
                # The row is committed; the leftovers job answers it. The SIM delete goes on.
                log.exception("modem %s: answering inbound %d failed; will retry", modem, iid)
        self._emit("inbound", modem=modem, sender=d.sender, text=d.text, id=iid)
        if after is not None:
            try:
                after()
            except Exception:  # committed and answered: only an alarm or a wake-up failed
                log.exception("modem %s: inbound %d answered, but its follow-up failed",
                              modem, iid)

    def _try_reassemble(self, modem: str, sender: str, ref: int, total: int,
                        force: bool = False) -> None:
        rows = self.store.parts_of(modem, sender, ref, total)
        if not rows or (not force and len({r.concat_seq for r in rows}) < total):
            return
        ids = [r.id for r in rows]
        # Claimed and answered in one transaction: if answering fails, the parts go back to
        # "part" with the rollback and the expiry job tries them again.
        with write_txn():
            if not self.store.claim_parts(ids):
                return  # another thread merged them
            # Re-decode the stored PDUs and join them with the codec, which mends a character
            # the sender's phone split across two parts and marks a missing part with "…".
            parts = [d for d in (pdumod.decode(r.pdu) for r in rows)
                     if isinstance(d, pdumod.Deliver)]
            merged = pdumod.join_parts(parts)
            after = self._answer(modem, ids, sender, rows[0].sender_type, merged.text,
                                 sent_at=min((r.sent_at for r in rows if r.sent_at),
                                             default=None),
                                 received_at=min(r.received_at for r in rows))
        after()

    def _answer(self, modem: str, ids: list[int], sender: str, sender_type: str | None,
                text: str, *, sent_at: float | None = None,
                received_at: float | None = None) -> Callable[[], None]:
        """Decide and queue the answer to inbound rows ``ids``, inside the caller's write
        transaction. Returns what to do once it has committed (events, waking a modem: a
        modem woken earlier would not see the reply yet)."""
        # The text's CNICs, parsed once for the age rule, the guard, the responder and the
        # journal (rules/cnic.py).
        parsed = parse_message(text or "", max_cnics=self.config.replies.max_cnics)
        age = judge_age(sent_at=sent_at, received_at=received_at or time.time(),
                        first_start=self._first_start.get(modem),
                        has_cnic=lambda: bool(parsed.cnics), rules=self.age_rules)
        verdict = (GuardVerdict(False, age.reason, code=age.code) if age is not None
                   else self.guard.check(sender, sender_type, parsed))
        if not verdict.answer:
            self.store.set_inbound_status(ids, "ignored", reason=verdict.reason)
            self.guard.record_ignored(sender, verdict, ids, modem, parsed)
            line = journal.sms_in(modem=modem, sender=sender,
                                  cnic_hmacs=self._hmacs(parsed.cnics),
                                  verdict="ignored", parts=len(ids), inbound_ids=ids,
                                  reason=verdict.reason)

            def ignored() -> None:
                line.log()
                self._emit("ignored", modem=modem, sender=sender, reason=verdict.reason)
            return ignored
        view = self.registry_view()
        if verdict.limit_reply:
            reply = limit_reply(self.templates, self.policy)
        else:
            reply = respond(parsed, self.registry.lookup, self.templates, self.policy,
                            view.state)
        oid, recipient = self.outbox.queue(to=sender, text=reply.text, kind=reply.kind,
                                           preferred_modem=modem, inbound_ids=ids)
        self.guard.record(sender, reply, ids, oid, modem)
        if self.fleet is not None and reply.kind in VERDICT_KINDS:
            self.fleet.record_hits(reply.verdicts, recipient, modem)  # rows, in this txn
        line = journal.sms_in(modem=modem, sender=sender,
                              cnic_hmacs=self._hmacs(reply.cnics or parsed.cnics),
                              verdict=reply.kind, parts=len(ids), inbound_ids=ids, reply_id=oid)

        def after() -> None:
            line.log()
            with self._replies_lock:  # counted once committed: a rolled-back reply never left
                self.replies_total[reply.kind] = self.replies_total.get(reply.kind, 0) + 1
            if self.fleet is not None:
                self.fleet.wake()
            if reply.kind == "unavailable" and view.state is not RegistryState.OK:
                self.alarms.raise_("registry_" + view.state.name.lower(),
                                   "registry is " + view.state.name.lower()
                                   + "; every query is answered 'service unavailable'")
            self._emit("queued", modem=modem, recipient=recipient, text=reply.text,
                       kind=reply.kind, id=oid)
            self.outbox.wake(modem)
        return after

    def _hmacs(self, cnics: tuple[str, ...]) -> list[str]:
        """The audit log's keyed hash of each CNIC asked (never the CNIC) for the journal."""
        return [self.guard.audit.cnic_hash(c) for c in cnics]

    def _answer_now(self, modem: str, ids: list[int], sender: str, sender_type: str | None,
                    text: str, *, sent_at: float | None = None,
                    received_at: float | None = None) -> None:
        with write_txn():
            after = self._answer(modem, ids, sender, sender_type, text, sent_at=sent_at,
                                 received_at=received_at)
        after()

    def _answer_leftovers(self) -> None:
        """Answer rows a crash or an error left ``new`` (their SIM copy is already gone),
        and requeue replies whose modem never came back to say whether they left."""
        self.outbox.requeue_stuck()
        for row in self.store.inbound_with_status("new", older_than=time.time() - 1):
            try:
                self._answer_now(row.modem, [row.id], row.sender or "", row.sender_type,
                                 row.text or "", sent_at=row.sent_at,
                                 received_at=row.received_at)
            except Exception:
                log.exception("answering leftover inbound %d failed", row.id)

    def _expire_parts(self) -> None:
        """Parts whose siblings never came: answer what there is (TS 23.040 gives no
        guarantee that every part of a concatenated SMS arrives)."""
        limit = time.time() - self.config.limits.reassembly_timeout_s
        seen = set()
        for row in self.store.inbound_with_status("part", older_than=limit):
            key = (row.modem, row.sender, row.concat_ref, row.concat_total)
            if key in seen:
                continue
            seen.add(key)
            log.info("modem %s: answering an incomplete long SMS (%s parts expected)",
                     row.modem, row.concat_total)
            try:
                self._try_reassemble(row.modem, row.sender or "", row.concat_ref or 0,
                                     row.concat_total or 0, force=True)
            except Exception:  # one bad group must not keep the others waiting
                log.exception("modem %s: answering inbound %d failed; will retry", row.modem,
                              row.id)

    def redact_expired(self, now: float | None = None) -> dict[str, int]:
        """The retention job: redact messages past ``privacy.message_retention_days``
        (``now``: the clock to judge by, the real one when None). Rows changed per table."""
        audit = self.guard.audit
        hashers = retention.Hashers(
            number=lambda n: audit.sender_hash(
                pdumod.normalise_number(n, self.config.unit.country_code)),
            digest=audit.digest_hash)
        return retention.redact(now=time.time() if now is None else now,
                                retention_days=self.config.privacy.message_retention_days,
                                hashers=hashers)

    def on_status(self, status: ModemStatus) -> None:
        # First: it is about messages that exist nowhere but in the owner thread's memory,
        # and the database failing them may fail the SIM dating below too.
        if status.held:
            self.alarms.raise_(f"inbound_held:{status.name}",
                               f"modem {status.name} holds {status.held} SMS delivered "
                               "straight to the unit (+CMT) that could not be stored; they "
                               "are lost if the service stops: check the disk and state.db")
        else:
            self.alarms.clear(f"inbound_held:{status.name}")
        sim = (status.identity.get("imsi") or status.name) if status.identity else None
        if sim is not None and self._first_sim.get(status.name) != sim:
            # A new modem, or a SIM swapped in while the unit ran (its IMSI changed).
            self._first_start[status.name] = self._sim_first_start(status)
            self._first_sim[status.name] = sim
        if status.state == ModemState.READY:
            self._down_since.pop(status.name, None)
            self.alarms.clear(f"modem_down:{status.name}")
        elif status.state in (ModemState.GONE, ModemState.FAILED, ModemState.NO_NETWORK):
            # Debounced in _check_health: a modem that blinks while it reopens, or a USB
            # modem replugged by a technician, is not worth an SMS at 2 a.m.
            self._down_since.setdefault(status.name, time.monotonic())
        self._emit("modem", name=status.name, state=status.state)

    def _sim_first_start(self, status: ModemStatus) -> float:
        """When the unit first started on this SIM (by IMSI): what is older on it is the
        SIM's history. A state.db from before this rule existed (no SIM dated yet) already
        answered from this modem: its first message dates the start, not this upgrade."""
        prefix = "sim_first_start:"
        key = f"{prefix}{status.identity.get('imsi') or status.name}"
        with write_txn():
            known = self.store.kv_get(key)
            if known is not None:
                return float(known)
            upgrade = not self.store.kv_keys(prefix)
            first = (self.store.first_received(status.name) if upgrade else None) or time.time()
            self.store.kv_set(key, repr(first))
        log.info("modem %s: first start on this SIM; older messages on it are not answered",
                 status.name)
        return first

    def on_balance(self, modem: str, amount: float | None, text: str) -> None:
        cfg = next((m for m in self.config.modems if m.name == modem), None)
        threshold = cfg.balance_threshold if cfg is not None else 0.0
        kind = f"credit_low:{modem}"
        if amount is None:
            log.warning("modem %s: balance answer not understood; check balance_pattern",
                        modem)
        elif threshold and amount < threshold:
            self.alarms.raise_(kind, f"modem {modem}: SIM balance {amount:.2f} is below "
                               f"{threshold:.2f}; recharge the SIM")
        else:
            self.alarms.clear(kind)
            self.outbox.balance_ok(modem)  # recharged: back into rotation
        self._emit("balance", modem=modem, amount=amount)

    # -- periodic --------------------------------------------------------------------------

    def _check_health(self) -> None:
        for name, since in list(self._down_since.items()):
            if time.monotonic() - since >= self.modem_down_alarm_after_s:
                st = self.modems[name].status()
                self.alarms.raise_(f"modem_down:{name}", f"modem {name} is {st.state} since "
                                   f"{time.monotonic() - since:.0f} s: {st.last_error}")
        data_dir = self.config.unit.data_dir
        msg = disk_alarm(shutil.disk_usage(data_dir), self.config.alarms.disk_warn_percent,
                         str(data_dir))
        if msg:
            self.alarms.raise_("disk_full", msg)
        else:
            self.alarms.clear("disk_full")
        view = self.registry_view(max_age_s=0)
        if view.state is RegistryState.OK:
            self.alarms.clear("registry_stale")
            self.alarms.clear("registry_missing")
            self.alarms.clear("registry_corrupt")
        else:
            integrity = getattr(self, "integrity", None)
            if (not view.info.usable and self.registry.corrupt is None
                    and integrity is not None and self.config.registry_path.exists()):
                integrity.verify()  # a damaged file or metadata: mark corrupt and repair
            self.alarms.raise_("registry_" + view.state.name.lower(),
                               f"registry at {view.info.path} is {view.state.name.lower()}")
        self._check_reply_names()
        pending = self.outbox.pending_count()
        if pending >= self.config.alarms.queue_warn:
            self.alarms.raise_("queue_growing", f"{pending} replies waiting")
        else:
            self.alarms.clear("queue_growing")

    def sample_history(self) -> None:
        """One minute of the status page's charts (appliance.state.history)."""
        snap = self.snapshot()
        now = snap["replies_total"]
        # Filed under the minute that just ended, whose replies these are.
        self.history.record(sample(snap, counts_since(now, self._replies_sampled)),
                            now=snap["time"] - 30)
        self._replies_sampled = now

    def _check_reply_names(self) -> None:
        """Once per installed registry version: does a one-CNIC hit keep its names with the
        registry's longest? If not, those replies go out without names (the responder keeps
        every reply within max_parts), and a technician is told."""
        version = self.registry_view(max_age_s=0).info.version
        if version is None or version == self._names_checked:
            return
        self._names_checked = version
        lengths = reply_budget.lengths_of(longest_names(self.config.registry_path))
        if lengths is None:
            return
        problems = reply_budget.check_names(self.templates, self.policy, lengths)
        if problems:
            self.alarms.raise_("reply_names", problems[0] + "; until then such replies are "
                               "sent without names")
        else:
            self.alarms.clear("reply_names")

    def _queue_alarm_sms(self, number: str, text: str) -> None:
        oid, _ = self.outbox.queue(to=number, text=text, kind="alarm", preferred_modem=None)
        self.outbox.wake(None)
        log.info("alarm SMS %d queued", oid)

    def snapshot(self) -> dict[str, Any]:
        """Everything ``status``, the status page and ``/metrics`` show, as plain data
        (credentials in URLs redacted)."""
        return redact_tree(self._snapshot())  # type: ignore[no-any-return]

    def _snapshot(self) -> dict[str, Any]:
        now = time.time()
        out = self.outbox.snapshot()
        depth, bank = out["depth"], out["bank"]
        modems = []
        for name, modem in self.modems.items():
            st = modem.status()
            b = bank.get(name, {})
            modems.append({
                "name": name, "port": st.port, "state": st.state, "rssi": st.rssi,
                "bars": st.bars, "operator": st.operator, "registered": st.registered,
                "queue": depth.get(name, 0), "sent_hour": b.get("sent_hour", 0),
                "sent_day": b.get("sent_day", 0), "hourly_cap": b.get("hourly_cap"),
                "daily_cap": b.get("daily_cap"), "unavailable": b.get("unavailable", ""),
                "last_error": st.last_error, "last_error_at": st.last_error_at,
                "received": st.received, "sent_parts": st.sent_parts,
                "send_failures": st.send_failures, "reopens": st.reopens,
                "sim_used": st.sim_used, "sim_total": st.sim_total,
                "identity": st.identity, "since": st.since,
                "balance": st.balance, "balance_at": st.balance_at,
                "network": st.network})
        view = self.registry_view()
        info = view.info
        age = info.age(datetime.now(timezone.utc))
        disk = shutil.disk_usage(self.config.unit.data_dir)
        with self._replies_lock:
            replies = dict(self.replies_total)
        return {
            "unit": self.config.unit.name, "version": __version__, "time": now,
            "uptime_s": now - self.started_at,
            "modems": modems,
            "queue": {"pending": out["pending"],
                      "unassigned": depth.get(None, 0)},
            "counts": self.store.counts(),
            "registry": {"state": view.state.name.lower(), "version": info.version,
                         "records": info.record_count, "source": info.source,
                         "signed_at": info.signed_at.isoformat() if info.signed_at else None,
                         "expires_at": info.expires_at.isoformat() if info.expires_at else None,
                         "age_s": age.total_seconds() if age is not None else None,
                         "max_age_s": self.config.registry.max_age_hours * 3600,
                         "verified_at": (info.verified_at.isoformat()
                                         if info.verified_at else None),
                         "error": info.error, "sync": sync_status(self.config.registry_path)},
            "disk": {"path": str(self.config.unit.data_dir), "total": disk.total,
                     "used": disk.used, "free": disk.free},
            "alarms": [{"kind": a.kind, "message": a.message, "since": a.since,
                        "count": a.count} for a in self.alarms.active()],
            "alarms_total": dict(self.alarms.raised_total),
            "replies_total": replies,
            "crash_resent": out["crash_resent"],
            "fleet": self.fleet.status() if self.fleet is not None else None,
            "split_replies": out["splits"],
        }

    def _emit(self, event: str, **data: Any) -> None:
        if self.listener is not None:
            try:
                self.listener(event, data)
            except Exception:
                log.exception("listener failed on %s", event)
