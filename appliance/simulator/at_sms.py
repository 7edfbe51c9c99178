"""SMS commands of the simulated modem, PDU mode only (3GPP TS 27.005 §3).

Text mode (``AT+CMGF=1``) answers ``+CMS ERROR: 303``: the appliance never uses it, and a
client that silently falls back to it should be seen failing here rather than in the field.
Message storage is finite and indexed per profile (see :mod:`appliance.simulator.storage`).
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from appliance.errors import PduError
from appliance.simulator import pdu as sim_pdu
from appliance.simulator.at import AtReply, Command, CommandTable, ok
from appliance.simulator.storage import (
    REC_READ, REC_UNREAD, STO_SENT, STO_UNSENT, Memory, StoredMessage,
)

if TYPE_CHECKING:
    from appliance.simulator.modem import SimModem

log = logging.getLogger(__name__)

#: This module's commands (joined with the general ones in :mod:`appliance.simulator.commands`).
COMMANDS = CommandTable()

MAX_TPDU = 176  # TS 23.040: the longest SMS-SUBMIT is 164 octets; leave room for odd VP
# TS 27.005 §3.5.4 <delflag>: which <stat> values each flag deletes.
DELETE_FLAGS = {1: {REC_READ}, 2: {REC_READ, STO_SENT}, 3: {REC_READ, STO_SENT, STO_UNSENT},
                4: {REC_UNREAD, REC_READ, STO_SENT, STO_UNSENT}}


def _quoted_list(names: tuple[str, ...]) -> str:
    return "(" + ",".join(f'"{n}"' for n in names) + ")"


@COMMANDS.command("+CMGF")
def _cmgf(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CMGF: (0)")
    if c.op == "?":
        return ok(f"+CMGF: {m.state.cmgf}")
    (mode,) = c.ints()[:1] or [0]
    if mode != 0:
        return m.cms(303)
    return ok()


@COMMANDS.command("+CSMS")
def _csms(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CSMS: (0,1)")
    if c.op == "?":
        return ok("+CSMS: 0,1,1,1")
    return ok("+CSMS: 1,1,1")


@COMMANDS.command("+CPMS", needs_sim=True)
def _cpms(m: SimModem, c: Command) -> AtReply:
    names = m.profile.storages
    receive = m.profile.receive_storages or names
    if c.op == "=?":
        return ok("+CPMS: " + ",".join([_quoted_list(names)] * 2 + [_quoted_list(receive)]))
    if c.op == "?":
        parts = [f'"{n}",{m.memories[n].used},{m.memories[n].total}' for n in m.state.cpms]
        return ok("+CPMS: " + ",".join(parts))
    chosen = [p.upper() for p in c.params()]
    if not 1 <= len(chosen) <= 3 or any(n not in names for n in chosen) \
            or (len(chosen) == 3 and chosen[2] not in receive):
        return m.cms(302)
    m.state.cpms[:len(chosen)] = chosen
    mems = [m.memories[n] for n in m.state.cpms]
    return ok("+CPMS: " + ",".join(f"{mem.used},{mem.total}" for mem in mems))


@COMMANDS.command("+CNMI")
def _cnmi(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CNMI: " + m.profile.cnmi_ranges)
    if c.op == "?":
        return ok("+CNMI: " + ",".join(map(str, m.state.cnmi)))
    allowed = m.profile.cnmi_allowed()
    values = c.ints()
    if len(values) > 5:
        return m.cms(303)
    new = list(m.state.cnmi)
    for i, value in enumerate(values):
        if value is None:
            continue
        if value not in allowed[i]:
            return m.cms(303)
        new[i] = value
    m.state.cnmi = new
    m.cnmi_changed()
    return ok()


@COMMANDS.command("+CSCA", needs_sim=True)
def _csca(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok()
    if c.op == "?":
        toa = 145 if m.smsc.startswith("+") else 129
        return ok(f'+CSCA: "{m.smsc}",{toa}')
    params = c.params()
    if not params or not params[0].lstrip("+").isdigit():
        return m.cms(304)
    m.smsc = params[0]
    return ok()


def _setting(name: str, attr: str, choices: str, count: int = 1) -> None:
    """Register a setting command whose value is only stored and echoed back."""

    def answer(m: SimModem, c: Command) -> AtReply:
        if c.op == "=?":
            return ok(f"{name}: {choices}")
        current = getattr(m.state, attr)
        if c.op == "?":
            shown = ",".join(map(str, current)) if isinstance(current, list) else current
            return ok(f"{name}: {shown}")
        values = [v for v in c.ints() if v is not None]
        if not values or len(values) > count:
            return m.cms(303)
        setattr(m.state, attr, values if isinstance(current, list) else values[0])
        return ok()

    COMMANDS.command(name)(answer)


_setting("+CMMS", "cmms", "(0-2)")
_setting("+CSDH", "csdh", "(0,1)")
_setting("+CSMP", "csmp", "(0-255),(0-255),(0-255),(0-255)", count=4)


def _read_memory(m: SimModem) -> Memory:
    return m.memories[m.state.cpms[0]]


@COMMANDS.command("+CMGR", needs_sim=True)
def _cmgr(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok()
    (index,) = c.ints()[:1] or [None]
    mem = _read_memory(m)
    if index is None or not mem.in_range(index):
        return m.cms(321)
    message = mem.get(index)
    if message is None:
        return m.cms(321) if m.profile.cmgr_empty_is_error else ok()
    lines = [f"+CMGR: {message.stat},,{message.tpdu_length}", message.pdu]
    if message.stat == REC_UNREAD:
        message.stat = REC_READ  # TS 27.005 §3.4.3: reading changes "unread" to "read"
    return ok(*lines)


@COMMANDS.command("+CMGL", needs_sim=True)
def _cmgl(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CMGL: (0-4)")
    params = c.params()
    if params and not params[0].isdigit():
        return m.cms(302)  # "ALL" and friends are text-mode parameters
    stat = int(params[0]) if params else REC_UNREAD
    if stat not in (0, 1, 2, 3, 4):
        return m.cms(302)
    lines: list[str] = []
    for index, message in _read_memory(m).items():
        if stat == 4 or message.stat == stat:
            lines += [f"+CMGL: {index},{message.stat},,{message.tpdu_length}", message.pdu]
            if message.stat == REC_UNREAD:
                message.stat = REC_READ
    return ok(*lines)


@COMMANDS.command("+CMGD", needs_sim=True)
def _cmgd(m: SimModem, c: Command) -> AtReply:
    mem = _read_memory(m)
    if c.op == "=?":
        used = ",".join(str(i) for i, _ in mem.items())
        return ok(f"+CMGD: ({used}),(0-4)")
    values = c.ints()
    index = values[0] if values else None
    flag = values[1] if len(values) > 1 and values[1] is not None else 0
    if flag not in (0, 1, 2, 3, 4):
        return m.cms(302)
    if flag == 0:
        if index is None or not mem.in_range(index):
            return m.cms(321)
        mem.delete(index)
    else:
        for i, message in mem.items():
            if message.stat in DELETE_FLAGS[flag]:
                mem.delete(i)
    m.storage_freed()
    return ok()


@COMMANDS.command("+CMGS", needs_sim=True)
def _cmgs(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok()
    if c.op != "=":
        return AtReply(error="ERROR")
    (length,) = c.ints()[:1] or [None]
    if length is None or not 1 <= length <= MAX_TPDU:
        return m.cms(304)
    return AtReply(prompt=length, delay=m.scaled(m.faults.slow_prompt))


def _checked_submit(m: SimModem, pdu_hex: str, length: int,
                    command: str) -> sim_pdu.Submit | AtReply:
    """Decode an SMS-SUBMIT given after ``> ``; an AtReply (+CMS ERROR: 304) when it is bad."""
    try:
        submit = sim_pdu.decode_submit(pdu_hex)
    except PduError as exc:
        log.warning("modem %s: rejected SMS-SUBMIT %s: %s", m.name, pdu_hex, exc)
        m.rejected.append((pdu_hex, str(exc)))
        return m.cms(304)
    if submit.tpdu_length != length:
        reason = f"{command}={length} but the TPDU has {submit.tpdu_length} octets"
        log.warning("modem %s: rejected SMS-SUBMIT %s: %s", m.name, pdu_hex, reason)
        m.rejected.append((pdu_hex, reason))
        return m.cms(304)
    return submit


def submit_pdu(m: SimModem, pdu_hex: str, length: int) -> AtReply:
    """The PDU after ``> `` ended by Ctrl-Z (TS 27.005 §3.5.1): check, hand to the network."""
    submit = _checked_submit(m, pdu_hex, length, "AT+CMGS")
    if isinstance(submit, AtReply):
        return submit
    return _send(m, submit, pdu_hex, "+CMGS")


def write_pdu(m: SimModem, pdu_hex: str, length: int, stat: int) -> AtReply:
    """AT+CMGW (TS 27.005 §3.5.3): store an SMS-SUBMIT in <mem2>, answer +CMGW: <index>."""
    submit = _checked_submit(m, pdu_hex, length, "AT+CMGW")
    if isinstance(submit, AtReply):
        return submit
    mem = m.memories[m.state.cpms[1]]
    index = mem.put(StoredMessage(pdu_hex, length, stat=stat, kind="submit"))
    if index is None:
        return m.cms(322)  # memory full
    return ok(f"+CMGW: {index}")


@COMMANDS.command("+CMGW", needs_sim=True)
def _cmgw(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok()
    values = c.ints()
    length = values[0] if values else None
    stat = values[1] if len(values) > 1 and values[1] is not None else STO_UNSENT
    if length is None or not 1 <= length <= MAX_TPDU or stat not in (STO_UNSENT, STO_SENT):
        return m.cms(304)
    return AtReply(prompt=length, prompt_stat=stat, delay=m.scaled(m.faults.slow_prompt))


@COMMANDS.command("+CMSS", needs_sim=True)
def _cmss(m: SimModem, c: Command) -> AtReply:
    """Send a stored message (TS 27.005 §3.5.2) and mark it "stored sent", as modems do:
    after a crash, <stat> 3 tells the host that the message left."""
    if c.op == "=?":
        return ok()
    values = c.ints()
    index = values[0] if values else None
    mem = m.memories[m.state.cpms[1]]
    message = mem.get(index) if index is not None and mem.in_range(index) else None
    if message is None or message.kind != "submit":
        return m.cms(321)
    try:
        submit = sim_pdu.decode_submit(message.pdu)
    except PduError:
        return m.cms(304)
    reply = _send(m, submit, message.pdu, "+CMSS")
    if reply.before_write is not None:
        on_submit = reply.before_write

        def sent() -> None:
            on_submit()
            message.stat = STO_SENT
        reply.before_write = sent
    return reply


def _send(m: SimModem, submit: sim_pdu.Submit, pdu_hex: str, answer: str) -> AtReply:
    """Hand one SMS-SUBMIT to the network after the configured latency and faults."""
    if not m.registered():
        return m.cms(331)
    if submit.smsc is None and not m.smsc:
        return m.cms(330)
    faults = m.faults
    delay = m.scaled(faults.cmgs_latency + m.rng.uniform(0, faults.cmgs_jitter))
    m.submits_since_fault += 1
    if m.submits_since_fault in faults.fail_submits or (
            faults.cms_error_rate and m.rng.random() < faults.cms_error_rate):
        reply = m.cms(faults.cms_error_code)
        reply.delay = delay
        return reply
    mr = m.next_mr()
    return AtReply(lines=[f"{answer}: {mr}"], delay=delay,
                 before_write=lambda: m.network.on_submit(m, submit, pdu_hex, mr))
