"""General commands of the simulated modem: V.250 basics and TS 27.007 identification,
network, SIM and USSD.

Answers follow the vendors' manuals for each profile (identification strings live in
:mod:`appliance.simulator.profiles`); anything a profile lacks is ERROR, as on the device.
"""

from __future__ import annotations

from datetime import datetime
from typing import TYPE_CHECKING

from appliance.simulator.at import AtReply, Command, CommandTable, Handler, ok, supported
from appliance.simulator.pdu import PAKISTAN

if TYPE_CHECKING:
    from appliance.simulator.modem import SimModem

#: This module's commands (joined with the SMS ones in :mod:`appliance.simulator.commands`).
COMMANDS = CommandTable()


# --- V.250 basic commands ------------------------------------------------------------------


def _flag(command: Command) -> int:
    value = int(command.args or "0")
    if value not in (0, 1):
        raise ValueError(value)
    return value


@COMMANDS.command("E")
def _echo(m: SimModem, c: Command) -> AtReply:
    m.state.echo = bool(_flag(c))
    return ok()


@COMMANDS.command("V")
def _verbose(m: SimModem, c: Command) -> AtReply:
    m.state.verbose = bool(_flag(c))
    return ok()


@COMMANDS.command("Q")
def _quiet(m: SimModem, c: Command) -> AtReply:
    m.state.quiet = bool(_flag(c))
    return ok()


@COMMANDS.command("Z", "&F")
def _reset(m: SimModem, c: Command) -> AtReply:
    m.reset_settings()
    return ok()


@COMMANDS.command("&C", "&D", "&W", "X", "H", "L", "M", "+IPR", "+IFC", "+ICF", "+CSCB", "+CNMA",
         "+CLIP", "+CRC", "+CVHU")
def _accepted(m: SimModem, c: Command) -> AtReply:
    """Settings that change nothing on a pty but must be accepted as a modem would."""
    if c.op == "?":
        return ok(f"{c.name}: 0") if c.name.startswith("+") else ok()
    return ok()


@COMMANDS.command("S")
def _sreg(m: SimModem, c: Command) -> AtReply:
    reg, _, value = c.args.partition(",")
    if c.op == "?":
        return ok(f"{m.state.sregs.get(int(reg), 0):03d}")
    m.state.sregs[int(reg)] = int(value or "0")
    return ok()


@COMMANDS.command("I")
def _info(m: SimModem, c: Command) -> AtReply:
    lines = list(m.profile.ati)
    if m.faults.non_utf8:
        lines[0] += "\xff"
    return ok(*lines)


@COMMANDS.command("D")
def _dial(m: SimModem, c: Command) -> AtReply:
    return AtReply(error="NO CARRIER")


# --- TS 27.007 identification and network ----------------------------------------------------


def _fixed(*lines: str) -> Handler:
    def answer(m: SimModem, c: Command) -> AtReply:
        return ok() if c.op == "=?" else ok(*lines)
    return answer


@COMMANDS.command("+CGMI", "+GMI")
def _manufacturer(m: SimModem, c: Command) -> AtReply:
    return _fixed(m.profile.manufacturer)(m, c)


@COMMANDS.command("+CGMM", "+GMM")
def _model(m: SimModem, c: Command) -> AtReply:
    return _fixed(m.profile.model)(m, c)


@COMMANDS.command("+CGMR", "+GMR")
def _revision(m: SimModem, c: Command) -> AtReply:
    return _fixed(m.profile.revision)(m, c)


@COMMANDS.command("+CGSN", "+GSN")
def _imei(m: SimModem, c: Command) -> AtReply:
    return _fixed(m.imei)(m, c)


@COMMANDS.command("+GCAP")
def _gcap(m: SimModem, c: Command) -> AtReply:
    return ok("+GCAP: +CGSM")


@COMMANDS.command("+CIMI", needs_sim=True)
def _imsi(m: SimModem, c: Command) -> AtReply:
    return _fixed(m.imsi)(m, c)


@COMMANDS.command("+CNUM", needs_sim=True)
def _cnum(m: SimModem, c: Command) -> AtReply:
    return ok(f'+CNUM: "","{m.number}",145') if c.op == "" else ok()


@COMMANDS.command("+CPAS")
def _cpas(m: SimModem, c: Command) -> AtReply:
    return ok("+CPAS: (0-5)") if c.op == "=?" else ok("+CPAS: 0")


@COMMANDS.command("+CBC")
def _cbc(m: SimModem, c: Command) -> AtReply:
    return ok("+CBC: 0,100,4200") if c.op != "=?" else ok()


@COMMANDS.command("+CSQ")
def _csq(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CSQ: (0-31,99),(0-7,99)")
    return ok(f"+CSQ: {m.faults.rssi if m.radio_on() else 99},0")


def _registration(name: str, attr: str) -> Handler:
    def answer(m: SimModem, c: Command) -> AtReply:
        if c.op == "=?":
            return ok(f"{name}: (0-2)")
        if c.op == "=":
            (n,) = c.ints()[:1] or [0]
            if n not in (0, 1, 2):
                return m.cme(50)
            setattr(m.state, attr, n)
            return ok()
        return ok(m.registration_line(name, getattr(m.state, attr), urc=False))
    return answer


COMMANDS.handlers["+CREG"] = _registration("+CREG", "creg")
COMMANDS.handlers["+CGREG"] = _registration("+CGREG", "cgreg")
COMMANDS.handlers["+CEREG"] = _registration("+CEREG", "cereg")


@COMMANDS.command("+COPS")
def _cops(m: SimModem, c: Command) -> AtReply:
    op = m.operator
    if c.op == "=?":
        return ok(f'+COPS: (2,"{op.long_name}","{op.short_name}","{op.mcc_mnc}"),,(0-4),(0-2)')
    if c.op == "=":
        params = c.ints()
        mode = params[0] if params else 0
        if mode == 3 and len(params) > 1 and params[1] in (0, 1, 2):
            m.state.cops_format = params[1]
        elif mode not in (0, 1, 2, 4):
            return m.cme(50)
        return ok()
    if not m.registered():
        return ok("+COPS: 0")
    fmt = m.state.cops_format
    name = (op.long_name, op.short_name, op.mcc_mnc)[fmt]
    return ok(f'+COPS: 0,{fmt},"{name}"')


@COMMANDS.command("+CPIN")
def _cpin(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok()
    if c.op == "=":
        params = c.params()
        if not m.pin_required():
            return m.cme(3)
        if not params or params[0] != m.pin:
            return m.cme(16)
        m.unlock_sim()
        return ok()
    return ok("+CPIN: SIM PIN" if m.pin_required() else "+CPIN: READY")


@COMMANDS.command("+CMEE")
def _cmee(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CMEE: (0-2)")
    if c.op == "?":
        return ok(f"+CMEE: {m.state.cmee}")
    (value,) = c.ints()[:1] or [0]
    if value not in (0, 1, 2):
        return m.cme(50)
    m.state.cmee = value
    return ok()


@COMMANDS.command("+CSCS")
def _cscs(m: SimModem, c: Command) -> AtReply:
    charsets = ("IRA", "GSM", "UCS2")
    if c.op == "=?":
        return ok('+CSCS: ("IRA","GSM","UCS2")')
    if c.op == "?":
        return ok(f'+CSCS: "{m.state.cscs}"')
    params = c.params()
    if not params or params[0].upper() not in charsets:
        return m.cme(4)
    m.state.cscs = params[0].upper()
    return ok()


@COMMANDS.command("+CFUN")
def _cfun(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CFUN: (0,1,4),(0,1)")
    if c.op == "?":
        return ok(f"+CFUN: {m.cfun}")
    params = c.ints()
    fun = params[0] if params else 1
    if fun not in (0, 1, 4):
        return m.cme(50)
    m.cfun = fun
    if len(params) > 1 and params[1] == 1:
        m.reboot_after_reply()
    return ok()


@COMMANDS.command("+CCLK")
def _cclk(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok()
    if c.op == "=":
        params = c.params()
        stamp = datetime.strptime(params[0][:17], "%y/%m/%d,%H:%M:%S").replace(tzinfo=PAKISTAN)
        m.clock_offset = stamp - datetime.now(PAKISTAN)
        return ok()
    now = datetime.now(PAKISTAN) + m.clock_offset
    return ok(now.strftime('+CCLK: "%y/%m/%d,%H:%M:%S+20"'))


@COMMANDS.command("+CLAC")
def _clac(m: SimModem, c: Command) -> AtReply:
    if c.op:
        return ok()
    names = sorted(n for n in m.command_table.handlers if n.startswith(("+", "^")) and supported(m, n))
    return ok(*(f"AT{n}" for n in names))


@COMMANDS.command("+CUSD")
def _cusd(m: SimModem, c: Command) -> AtReply:
    if c.op == "=?":
        return ok("+CUSD: (0-2)")
    if c.op == "?":
        return ok(f"+CUSD: {m.state.cusd}")
    params = c.params()
    n = int(params[0]) if params and params[0] else 0
    if n not in (0, 1, 2):
        return m.cme(50)
    m.state.cusd = n if n != 2 else m.state.cusd
    if len(params) < 2 or n == 2:
        return ok()
    if not m.registered():
        return m.cme(30)
    code = params[1]
    if m.profile.ussd_packed:
        # Huawei sticks read <str> as packed GSM-7 septets in hex; anything else is not a
        # code they can dial: "+CUSD: 4", operation not supported (TS 27.007 §7.15).
        unpacked = _unpack_ussd(code)
        if unpacked is None:
            m.queue_urc("+CUSD: 4", delay=m.scaled(0.2))
            return ok()
        code = unpacked
    text = m.operator.balance_message(m.balance) if code in ("*123#", "*111#", "*222#") \
        else "Invalid request. Please dial *123# for balance."
    if m.faults.non_utf8:
        text = text.replace(" ", " \xff", 1)
    m.queue_urc(f'+CUSD: 0,"{text}",15', delay=m.scaled(1.0))
    return ok()


def _unpack_ussd(hexcode: str) -> str | None:
    from appliance.simulator.gsm7 import decode_septets, unpack_septets

    try:
        data = bytes.fromhex(hexcode)
    except ValueError:
        return None
    if not data:
        return None
    septets = unpack_septets(data, len(data) * 8 // 7)
    if septets and septets[-1] in (0x00, 0x0D):
        septets = septets[:-1]  # the spare bits (or the CR padding of TS 23.038 §6.1.2.3.1)
    return decode_septets(septets)


@COMMANDS.command("^PORTSEL")
def _portsel(m: SimModem, c: Command) -> AtReply:
    """Huawei: which of its ttys carries URCs; one pty here, so any choice is this one."""
    return ok("^PORTSEL: 0") if c.op == "?" else ok()


@COMMANDS.command("^CURC")
def _curc(m: SimModem, c: Command) -> AtReply:
    if c.op == "?":
        return ok(f"^CURC: {m.state.curc}")
    if c.op == "=":
        m.state.curc = _flag(Command("^CURC", "", c.args))
    return ok()

