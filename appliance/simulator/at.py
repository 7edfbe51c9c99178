"""The simulated modem's AT command interpreter: command-line syntax and dispatch.

A command line (ITU-T V.250 §5.2) is ``AT`` followed by basic commands (``E0``, ``&F``,
``S0=1``) and extended commands (``+CMGF=0``) separated by ``;``. Every command gets an
answer: an unknown or malformed one ends the line with ERROR (V.250 §5.2.1), never
silence. General commands live in :mod:`appliance.simulator.at_general`, SMS commands
(TS 27.005) in :mod:`appliance.simulator.at_sms`, each in its own :class:`CommandTable`;
:mod:`appliance.simulator.commands` joins the two into the table a modem answers from.

Handlers run in the modem's thread with the network lock held and return an :class:`AtReply`;
the modem frames it (V.250 §5.7.1) and writes it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from appliance.simulator.modem import SimModem

# TS 27.007 §9.2.1 / TS 27.005 §3.2.5 texts, for AT+CMEE=2.
CME_TEXT = {3: "operation not allowed", 4: "operation not supported", 10: "SIM not inserted",
            11: "SIM PIN required", 16: "incorrect password", 21: "invalid index",
            30: "no network service", 50: "incorrect parameters", 100: "unknown"}
CMS_TEXT = {38: "network out of order", 302: "operation not allowed",
            303: "operation not supported", 304: "invalid PDU mode parameter",
            311: "SIM PIN required", 321: "invalid memory index", 322: "memory full",
            331: "no network service", 500: "unknown error"}


class CommandSyntaxError(ValueError):
    """A command line that V.250 cannot split into commands."""


@dataclass(frozen=True)
class Command:
    """One command of a line: ``name`` upper-cased, ``op`` one of "", "=", "?", "=?"."""

    name: str
    op: str
    args: str

    def params(self) -> list[str]:
        """Comma-separated parameters, quotes removed, commas inside quotes kept."""
        out: list[str] = []
        current: list[str] = []
        quoted = False
        for ch in self.args:
            if ch == '"':
                quoted = not quoted
            elif ch == "," and not quoted:
                out.append("".join(current).strip())
                current = []
            else:
                current.append(ch)
        out.append("".join(current).strip())
        return out if self.args.strip() else []

    def ints(self) -> list[int | None]:
        """Numeric parameters; an omitted one is None. Raises ValueError on non-numbers."""
        return [int(p) if p != "" else None for p in self.params()]


@dataclass
class AtReply:
    """What one command (or line) answers. ``error`` replaces the final OK.

    (Named apart from :class:`appliance.rules.responder.Reply`, the text of an SMS reply.)"""

    lines: list[str] = field(default_factory=list)
    error: str | None = None
    prompt: int | None = None          # AT+CMGS/CMGW length: answer "> " and collect a PDU
    prompt_stat: int | None = None     # AT+CMGW: store the PDU with this <stat>, not send
    delay: float = 0.0                 # seconds to wait before writing (already scaled)
    before_write: Callable[[], None] | None = None  # runs after the delay, under the lock


@dataclass
class ATState:
    """Settings that a power cycle or ATZ resets (V.250 §6.1.1, TS 27.007/27.005)."""

    echo: bool = True
    verbose: bool = True       # V1: text result codes
    quiet: bool = False        # Q1: no result codes
    cmee: int = 0
    cmgf: int = 0
    cscs: str = "IRA"
    cnmi: list[int] = field(default_factory=lambda: [2, 1, 0, 0, 0])
    cpms: list[str] = field(default_factory=lambda: ["SM", "SM", "SM"])
    creg: int = 0
    cgreg: int = 0
    cereg: int = 0
    cops_format: int = 0
    csmp: list[int] = field(default_factory=lambda: [17, 167, 0, 0])
    cmms: int = 0
    csdh: int = 0
    cusd: int = 0
    curc: int = 1              # Huawei ^CURC: periodic noise on or off
    sregs: dict[int, int] = field(default_factory=lambda: {0: 0, 3: 13, 4: 10, 5: 8})


Handler = Callable[["SimModem", Command], AtReply]


@dataclass
class CommandTable:
    """Commands by name, and which of them need an unlocked SIM. A module fills its own
    with :meth:`command`; :mod:`appliance.simulator.commands` joins them."""

    handlers: dict[str, Handler] = field(default_factory=dict)
    needs_sim: set[str] = field(default_factory=set)

    def command(self, *names: str, needs_sim: bool = False) -> Callable[[Handler], Handler]:
        def add(fn: Handler) -> Handler:
            for name in names:
                self.handlers[name] = fn
                if needs_sim:
                    self.needs_sim.add(name)
            return fn
        return add

    def __or__(self, other: CommandTable) -> CommandTable:
        clash = self.handlers.keys() & other.handlers.keys()
        if clash:
            raise ValueError(f"commands defined twice: {sorted(clash)}")
        return CommandTable({**self.handlers, **other.handlers}, self.needs_sim | other.needs_sim)

# Vendor commands exist only on their family; elsewhere they are unknown (ERROR).
VENDOR_ONLY: dict[str, str] = {"^CURC": "huawei", "^PORTSEL": "huawei"}


#: Registration reports a family may lack (a 2G module has no +CEREG): the profile says.
REGISTRATION_REPORTS = frozenset({"+CEREG"})


def supported(modem: SimModem, name: str) -> bool:
    if name in REGISTRATION_REPORTS and name not in modem.profile.registration:
        return False
    return (name in modem.command_table.handlers
            and VENDOR_ONLY.get(name, modem.profile.name) == modem.profile.name)


def parse_line(body: str) -> list[Command]:
    """Split what follows ``AT`` into commands (V.250 §5.2.1, §5.3, §5.4)."""
    commands: list[Command] = []
    i, n = 0, len(body)
    while i < n:
        ch = body[i]
        if ch in " ;":
            i += 1
        elif ch in "+^$%*#!":
            j = i + 1
            while j < n and (body[j].isalnum() or body[j] == "_"):
                j += 1
            if j == i + 1:
                raise CommandSyntaxError(f"empty extended command name at {body[i:]!r}")
            name = body[i:j].upper()
            op = "=?" if body.startswith("=?", j) else body[j] if j < n and body[j] in "=?" else ""
            j += len(op)
            k, quoted = j, False
            while k < n and (quoted or body[k] != ";"):
                quoted ^= body[k] == '"'
                k += 1
            commands.append(Command(name, op, body[j:k]))
            i = k
        elif ch == "&" and i + 1 < n and body[i + 1].isalpha():
            j = i + 2
            while j < n and body[j].isdigit():
                j += 1
            commands.append(Command("&" + body[i + 1].upper(), "", body[i + 2:j]))
            i = j
        elif ch.upper() == "S" and i + 1 < n and body[i + 1].isdigit():
            j = i + 1
            while j < n and body[j].isdigit():
                j += 1
            reg = body[i + 1:j]
            if body.startswith("?", j):
                commands.append(Command("S", "?", reg))
                i = j + 1
            elif body.startswith("=", j):
                k = j + 1
                while k < n and body[k].isdigit():
                    k += 1
                commands.append(Command("S", "=", f"{reg},{body[j + 1:k]}"))
                i = k
            else:
                raise CommandSyntaxError(f"S{reg} needs = or ?")
        elif ch.upper() == "D":
            commands.append(Command("D", "", body[i + 1:]))  # dial takes the rest of the line
            i = n
        elif ch.isalpha():
            j = i + 1
            while j < n and body[j].isdigit():
                j += 1
            commands.append(Command(ch.upper(), "", body[i + 1:j]))
            i = j
        else:
            raise CommandSyntaxError(f"unexpected {ch!r} in command line")
    return commands


def execute_line(modem: SimModem, body: str) -> AtReply:
    """Run every command of one line; stop at the first error or at a ``> `` prompt."""
    modem.command_log.append((time.time(), body))
    try:
        commands = parse_line(body)
    except CommandSyntaxError:
        return AtReply(error="ERROR")
    total = AtReply()
    for command in commands:
        fn = modem.command_table.handlers.get(command.name)
        if fn is None or not supported(modem, command.name):
            return AtReply(lines=total.lines, error="ERROR")
        if command.name in modem.command_table.needs_sim and modem.pin_required():
            sms = command.name.startswith("+CM") or command.name in ("+CPMS", "+CSCA", "+CNMI")
            err = modem.cms(311) if sms else modem.cme(11)
            return AtReply(lines=total.lines, error=err.error)
        try:
            reply = fn(modem, command)
        except (ValueError, IndexError):
            reply = AtReply(error="ERROR")
        total.lines.extend(reply.lines)
        if reply.error or reply.prompt is not None:
            reply.lines = total.lines
            return reply
        total.delay += reply.delay
        if reply.before_write is not None:  # AT+CMSS hands a message to the network
            total.before_write = reply.before_write
    return total


def ok(*lines: str) -> AtReply:
    return AtReply(lines=list(lines))
