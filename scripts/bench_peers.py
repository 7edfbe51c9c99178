"""The peers under benchmark: Debian's gammu-smsd and smstools3 on the same simulated modems.

Each runs as a technician would deploy it with a reply script (scripts/peer_reply.py), in
its own temporary directory (configuration, spools, logs), talking AT to the simulator's
ptys exactly as to a modem. The lookup itself runs in one long-lived ``peer_reply.py serve``
process, counted in the peer's CPU and memory (see peer_reply.py for why).

Polling settings are cut to the bone, each one below with its default and the reason;
``BENCH_PEER_SETTINGS=default`` runs the packaged defaults instead.
"""

from __future__ import annotations

import logging
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from bench_support import MAX_AGE_HOURS, SCRIPTS

log = logging.getLogger(__name__)

PEER_REPLY = SCRIPTS / "peer_reply.py"

# gammu-smsdrc(5), gammu 1.42. The main loop (smsd/core.c SMSD_MainLoop) reads the SIM,
# then sends at most ONE outbox message, then sleeps LoopSleep seconds.
GAMMU_TUNED: dict[str, str] = {
    "ReceiveFrequency": "0",   # default 15 s: how often the SIM is read while sending
    "CommTimeout": "0",        # default 30 s: rescan an empty outbox only after this
    "StatusFrequency": "0",    # default 60 s: battery/signal refresh; 0 = never
    "LoopSleep": "0",          # default 1 s: sleep per loop, so at most one reply a second;
                               # 0 = busy loop: fastest, 1.3 cores with 8 idle daemons
    "CheckSecurity": "0",      # default 1: AT+CPIN? before each receive; no PIN here
    "CheckBattery": "0",       # default 1: AT+CBC per status refresh
    "CheckSignal": "0",        # default 1: AT+CSQ per status refresh and per send
    "CheckNetwork": "0",       # default 1: AT+CREG? per status refresh
    "SendTimeout": "60",       # default 30 s: must exceed the simulated AT+CMGS latency
    "DeliveryReport": "no",    # default no (the appliance does ask for reports)
}
GAMMU_DEFAULT: dict[str, str] = {"SendTimeout": "60"}

# smsd.conf(5) as documented in smstools' configure.html, version 3.1.21. A modem process
# sends everything queued for it, reads the SIM, then sleeps delaytime when idle; the main
# process moves files from outgoing/ to checked/ every delaytime_mainprocess.
SMSTOOLS_TUNED_GLOBAL: dict[str, str] = {
    "delaytime": "0",                # default 10 s; 0 = poll continuously (measured: 14 %
                                     # of a core with 8 idle modems; 1 s was slower)
    "delaytime_mainprocess": "0",    # default = delaytime: spool scan of outgoing/
    "trust_outgoing": "yes",         # default no: files appear by rename (peer_reply does)
    "decode_unicode_text": "yes",    # needed to read Urdu (UCS-2) texts at all
    "incoming_utf8": "yes",          # incoming files in UTF-8 for the reply script
}
SMSTOOLS_TUNED_MODEM: dict[str, str] = {
    "incoming": "yes",
    "check_memory_method": "31",     # default 1 (CPMS, then CMGR per slot): one AT+CMGL,
                                     # PDUs taken from the list, each deleted after reading
    "check_network": "2",            # default 1: AT+CREG? only before sending
    "detect_unexpected_input": "no",  # default yes: listens 100 ms before EVERY command
    "detect_message_routing": "no",  # default yes: the same 100 ms listen
    "poll_faster": "50",             # default 5: an answer is polled every 100/N ms
}
SMSTOOLS_DEFAULT_GLOBAL: dict[str, str] = {"decode_unicode_text": "yes", "incoming_utf8": "yes"}
SMSTOOLS_DEFAULT_MODEM: dict[str, str] = {"incoming": "yes"}


def _tuned() -> bool:
    return os.environ.get("BENCH_PEER_SETTINGS", "tuned") != "default"


class LookupServer:
    """``peer_reply.py serve``: registry and templates kept open for the hooks."""

    def __init__(self, work: Path, registry: Path) -> None:
        self.socket = work / "lookup.sock"
        self.proc = subprocess.Popen(
            [sys.executable, str(PEER_REPLY), "serve", "--registry", str(registry),
             "--socket", str(self.socket), "--max-age-hours", str(MAX_AGE_HOURS)],
            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        if line.strip() != "ready":
            self.proc.kill()
            raise RuntimeError(f"lookup server did not start: {line}{self.proc.stderr.read()}"
                               if self.proc.stderr else line)

    def stop(self) -> None:
        _terminate([self.proc], 5, "lookup server")


def _terminate(procs: list[subprocess.Popen[Any]], timeout: float, name: str) -> list[str]:
    """SIGTERM all, wait up to ``timeout`` together, SIGKILL what is left (and say so)."""
    problems = []
    for p in procs:
        if p.poll() is None:
            p.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + timeout
    for p in procs:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            problems.append(f"{name} (pid {p.pid}) ignored SIGTERM for {timeout:.0f} s; "
                            "killed")
            p.kill()
            p.wait(timeout=5)
    return problems


def _hook(kind: str, server: LookupServer, *extra: str) -> str:
    # -S -E: no site-packages, no environment (the hook needs only os, sys and _socket);
    # imported rather than run as a script, so its bytecode comes from __pycache__ instead
    # of being compiled at every start (measured: 13 ms instead of 16 ms of CPU per hook).
    entry = (f"import sys; sys.path[0:0] = [{str(SCRIPTS)!r}]; import peer_reply; "
             "sys.exit(peer_reply.main())")
    return shlex.join([sys.executable, "-S", "-E", "-c", entry, kind, "--socket",
                       str(server.socket), *extra])


class GammuRunner:
    """One gammu-smsd per modem (files backend), as gammu's smsd-multi documentation says."""

    name = "gammu-smsd"

    def __init__(self, work: Path, registry: Path) -> None:
        self.work = work
        self.registry = registry
        self.procs: list[subprocess.Popen[bytes]] = []
        self.server: LookupServer | None = None
        self.problems: list[str] = []

    def start(self, sim: Any) -> None:
        self.work.mkdir(parents=True, exist_ok=True)
        self.server = LookupServer(self.work, self.registry)
        settings = GAMMU_TUNED if _tuned() else GAMMU_DEFAULT
        for m in sim.modems:
            d = self.work / m.name
            for sub in ("inbox", "outbox", "sent", "error"):
                (d / sub).mkdir(parents=True, exist_ok=True)
            rc = d / "smsdrc"
            lines = [
                "[gammu]", f"device = {m.port}", "connection = at", "",
                "[smsd]", "service = files", f"inboxpath = {d / 'inbox'}/",
                f"outboxpath = {d / 'outbox'}/", f"sentsmspath = {d / 'sent'}/",
                f"errorsmspath = {d / 'error'}/", f"logfile = {d / 'smsd.log'}",
                "debuglevel = 0", f"PhoneID = {m.name}",
                f"RunOnReceive = {_hook('gammu', self.server, '--smsdrc', str(rc))}",
                *(f"{k} = {v}" for k, v in settings.items())]
            rc.write_text("\n".join(lines) + "\n")
            self.procs.append(subprocess.Popen(["gammu-smsd", "-c", str(rc)],
                                               stdout=subprocess.DEVNULL,
                                               stderr=subprocess.DEVNULL))

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs] + ([self.server.proc.pid] if self.server else [])

    def alive(self) -> bool:
        return all(p.poll() is None for p in self.procs)

    def ready_at(self) -> float | None:
        return None

    def stop(self) -> None:
        self.problems += _terminate(self.procs, 20, "gammu-smsd")
        for p in self.procs:
            if p.returncode not in (0, -signal.SIGTERM):
                self.problems.append(f"gammu-smsd exited with {p.returncode}")
        if self.server is not None:
            self.server.stop()


class SmstoolsRunner:
    """One smsd with N devices; the eventhandler writes each reply into the outgoing spool,
    from where any free modem sends it (smstools has no "reply from the receiver")."""

    name = "smstools3"

    def __init__(self, work: Path, registry: Path) -> None:
        self.work = work
        self.registry = registry
        self.proc: subprocess.Popen[bytes] | None = None
        self.server: LookupServer | None = None
        self.problems: list[str] = []

    def start(self, sim: Any) -> None:
        spool = self.work / "spool"
        for sub in ("outgoing", "checked", "failed", "incoming", "sent"):
            (spool / sub).mkdir(parents=True, exist_ok=True)
        self.server = LookupServer(self.work, self.registry)
        # smsd runs the eventhandler as "<file> EVENT MESSAGEFILE [ID]" for every event, so
        # a shell wrapper adds the options and skips SENT/FAILED/REPORT without Python.
        handler = self.work / "eventhandler"
        handler.write_text('#!/bin/sh\n[ "$1" = RECEIVED ] || exit 0\nexec ' + _hook(
            "smstools", self.server, "--outgoing", str(spool / "outgoing")) + ' "$@"\n')
        handler.chmod(0o755)
        tuned = _tuned()
        glob = SMSTOOLS_TUNED_GLOBAL if tuned else SMSTOOLS_DEFAULT_GLOBAL
        modem = SMSTOOLS_TUNED_MODEM if tuned else SMSTOOLS_DEFAULT_MODEM
        lines = [f"devices = {','.join(m.name for m in sim.modems)}",
                 *(f"{sub} = {spool / sub}" for sub in
                   ("outgoing", "checked", "failed", "incoming", "sent")),
                 f"logfile = {self.work / 'smsd.log'}", "loglevel = 4",
                 f"eventhandler = {handler}",
                 *(f"{k} = {v}" for k, v in glob.items())]
        for m in sim.modems:
            lines += ["", f"[{m.name}]", f"device = {m.port}",
                      *(f"{k} = {v}" for k, v in modem.items())]
        conf = self.work / "smsd.conf"
        conf.write_text("\n".join(lines) + "\n")
        # -t: stay in the foreground (no daemon fork), so the pid is the main process.
        self.proc = subprocess.Popen(
            ["smsd", "-t", f"-c{conf}", f"-p{self.work / 'smsd.pid'}",
             f"-i{self.work / 'smsd.running'}"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def pids(self) -> list[int]:
        return ([self.proc.pid] if self.proc else []) + \
            ([self.server.proc.pid] if self.server else [])

    def alive(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def ready_at(self) -> float | None:
        return None

    def stop(self) -> None:
        if self.proc is not None:
            self.problems += _terminate([self.proc], 30, "smsd")
            if self.proc.returncode not in (0, -signal.SIGTERM):
                self.problems.append(f"smsd exited with {self.proc.returncode}")
        if self.server is not None:
            self.server.stop()
