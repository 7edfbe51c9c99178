"""Sans-I/O AT command core: bytes from a modem in, events out.

Why: python-gsmmodem-new appends every line to a pending command's response (URCs lost,
docs/field-notes.md B1), dies on one non-UTF-8 byte (B3), takes a late answer for the next
command's (B4) and loses a ``+CDS`` split across reads (B14). Framing is the hard part, so
it lives here without serial, threads, clocks or logging and is tested byte by byte, as h11
does for HTTP: ``command()``/``pdu()`` return bytes to write, ``receive_data()`` takes bytes
in any chunking, ``next_event()``/``events()`` hand out the events below.

Framing
  * Every CR and every LF ends a line; blank lines are skipped. V.250 §5.7 frames
    responses with S3 S4 (CR LF), but ATV0 result codes end in a bare CR, echo is ``cmd CR``
    and some firmware sends LF alone; a one-byte terminator is also chunking-proof. Lines
    are decoded as UTF-8 with ``errors="replace"`` and stripped.
  * Parsing happens inside ``receive_data``, not lazily: bytes that arrived before
    ``command()`` was called can never be taken for its answer.
  * A line longer than ``max_line`` bytes is cut into Garbage events at the same bytes in
    any chunking (memory stays bounded); its tail is Garbage too, never a response line.
  * The SMS prompt ``"> "`` (TS 27.005 §3.5.1) has no line ending; a ``>`` at the start of a
    line is the prompt only while a ``prompt=True`` command waits for it.

Classifying one line (first rule that applies)
  1. The line after a ``+CMT:``/``+CBM:`` header, or after a ``+CDS: <length>`` header
     (PDU mode, TS 27.005 §3.4.1), is that URC's body: the Urc is emitted with ``pdu`` set
     once the body has arrived. If that line is a final result code or a ``+X:``/``^X:``
     line instead, the body was lost: the Urc comes out with ``pdu=None`` and the line is
     classified normally.
  2. After the prompt, the echo of our PDU entry (text up to the last Ctrl-Z/ESC, or a line
     equal to the PDU hex) is dropped; what follows it on the line is classified.
  3. A line equal to the pending command (case and spaces ignored) is its echo: dropped.
  4. Final result codes (V.250 §5.7, TS 27.007 §9.2, TS 27.005 §3.2.5): OK, CONNECT [rate],
     ERROR, NO CARRIER, BUSY, NO ANSWER, NO DIALTONE, ``+CME ERROR: n|text``,
     ``+CMS ERROR: n|text``, Huawei's COMMAND NOT SUPPORT / TOO MANY PARAMETERS (kind
     ERROR); numeric forms (0,1,3,4,6,7,8) only in ATV0 mode (below). With a command
     pending they end it (one Response); otherwise they are Stray.
  5. URCs: bare RING, RDY, Call Ready, SMS Ready, PB DONE and the SIM800 power warnings
     (and ``2`` in ATV0 mode, as RING); ``+NAME:``/``^NAME:`` lines named in
     ``ALWAYS_URC`` whatever is pending; any other ``+NAME:``/``^NAME:`` line unless the
     pending command owns that name. A command owns the names of its extended commands
     (``AT+CMEE=1;+CREG?`` owns +CMEE and +CREG), except that the set form of a command
     that is also a URC (``URC_CAPABLE``: ``AT+CREG=2``, ``AT+CUSD=1,"*123#",15``,
     ``AT+CPIN="1234"``) owns nothing: its news arrives later as a URC (TS 27.007 §7.2,
     §7.15). ``AT&V`` owns every name, as it dumps other commands' settings.
  6. Anything else (bare IMEI digits, "SIMCOM_Ltd", PDU hex after ``+CMGR:``/``+CMGL:``,
     colon-less ``+CMGS`` from AT+CLAC) is a response line while a command is pending,
     else Garbage.

Numeric mode: a digit is a result code only from a command that set ATV0 until a verbose
result code is seen (ATV1, ATZ), since in ATV1 a bare ``0`` is data (Quectel ``ATS0?``). In
ATV0 a one-digit information line looks like a result code; the appliance runs ATV1.

Resynchronisation: after ``abort()`` the aborted command may still answer. If echo was on
(the last command was echoed), the next command's final results count only after its echo;
before that they are Stray and its information lines Garbage. With echo off this cannot be
told from bytes: the engine should drain before the next command, and after aborting a
prompt command send ``escape()`` first so the modem leaves PDU entry.

Limitation: text-mode (AT+CMGF=1) bodies that look like result codes end a response; the
appliance uses PDU mode, where bodies are hex.
"""

from __future__ import annotations

import re
from collections import deque
from collections.abc import Iterator
from dataclasses import dataclass, field

from appliance.errors import ProtocolError

__all__ = ["ALWAYS_URC", "URC_CAPABLE", "ATProtocol", "Event", "Final", "Garbage", "Prompt",
           "Response", "Stray", "Urc"]


@dataclass(frozen=True, slots=True)
class Final:
    """A final result code. ``code`` is the +CME/+CMS number (None for V.250 codes and for
    verbose errors such as ``+CME ERROR: SIM not inserted``); ``text`` is the line as sent."""

    ok: bool
    kind: str
    code: int | None
    text: str


@dataclass(frozen=True, slots=True)
class Response:
    """The pending command finished: its information lines in order, echo removed."""

    command: str
    lines: tuple[str, ...]
    final: Final


@dataclass(frozen=True, slots=True)
class Prompt:
    """The modem printed ``"> "`` and waits for the PDU (TS 27.005 §3.5.1)."""


@dataclass(frozen=True, slots=True)
class Urc:
    """An unsolicited result code; ``pdu`` is the body line of +CMT/+CBM/+CDS (PDU mode)."""

    name: str
    args: str
    line: str
    pdu: str | None = None


@dataclass(frozen=True, slots=True)
class Stray:
    """A final result code that no pending command was waiting for (late, after abort)."""

    final: Final


@dataclass(frozen=True, slots=True)
class Garbage:
    """A line that is neither a response line nor a URC: logged by the engine, skipped."""

    line: str


Event = Response | Prompt | Urc | Stray | Garbage

ALWAYS_URC = frozenset({
    "+CMTI", "+CMT", "+CDS", "+CDSI", "+CBM", "+CBMI", "+CRING", "+CIEV", "+PACSP", "+QIND",
    "^RSSI", "^BOOT", "^MODE", "^SRVST", "^SIMST",
})
URC_CAPABLE = frozenset({
    "+CREG", "+CGREG", "+CEREG", "+C5GREG", "+CUSD", "+CPIN", "+CFUN", "+CLIP", "+COLP",
    "+CCWA",
})
_BARE_URC = {name.upper(): name for name in (
    "RING", "RDY", "Call Ready", "SMS Ready", "PB DONE", "POWERED DOWN", "NORMAL POWER DOWN",
    "UNDER-VOLTAGE POWER DOWN", "UNDER-VOLTAGE WARNNING", "OVER-VOLTAGE POWER DOWN",
    "OVER-VOLTAGE WARNNING",  # sic: SIM800 Series AT Command Manual spelling
)}
# Information-response prefixes that differ from the command's name (SIMCom AT+CICCID).
_ALIASES = {"+CICCID": frozenset({"+ICCID"}), "+CCID": frozenset({"+ICCID"})}
_TWO_LINE = frozenset({"+CMT", "+CBM", "+CDS"})
_VERBOSE = {kind: (kind, kind == "OK") for kind in (
    "OK", "ERROR", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE")} | {
    "COMMAND NOT SUPPORT": ("ERROR", False), "TOO MANY PARAMETERS": ("ERROR", False)}  # Huawei
_NUMERIC = {"0": ("OK", True), "1": ("CONNECT", True), "3": ("NO CARRIER", False),
            "4": ("ERROR", False), "6": ("NO DIALTONE", False), "7": ("BUSY", False),
            "8": ("NO ANSWER", False)}  # V.250 Table 1; "2" is RING, a URC
_CONNECT = re.compile(r"CONNECT(?:\s+\d.*)?", re.ASCII | re.IGNORECASE)
# {1,9}: int() of thousands of digits raises ValueError (sys.int_max_str_digits).
_EXT_ERROR = re.compile(r"\+(CME|CMS) ERROR\s*:?\s*(?:(\d{1,9})|.*)", re.ASCII | re.IGNORECASE)
# "+" is standard (TS 27.007 §4.1); "^" is Huawei's; "*" is SIMCom's (*PSUTTZ, *PSNWID
# network-time URCs that a SIM800 sends at any moment, even inside a +CMGR response).
_PREFIXED = re.compile(r"([+^*][A-Za-z][A-Za-z0-9_\-]*)\s*:", re.ASCII)
_HEX = re.compile(r"[0-9A-Fa-f]*", re.ASCII)
_DIGITS = re.compile(r"\d+", re.ASCII)
_BASIC = re.compile(r"(&?[A-Z])(\d*)", re.ASCII)
_EXTENDED = re.compile(r".[A-Z0-9_\-]*", re.ASCII)
_S_PARAM = re.compile(r"=\d*|\?|", re.ASCII)
_PROMPT = re.compile(rb" *>")
_EOL = re.compile(rb"[\r\n]")
_STRIP = " \t\x00\x0b\x0c"
_ENTRY_END = ("\x1a", "\x1b")  # Ctrl-Z sends the PDU, ESC cancels it (TS 27.005 §3.5.1)


def _squash(text: str) -> str:
    return "".join(text.split()).upper()


@dataclass(frozen=True, slots=True)
class _Command:
    """What the protocol needs to know about one command line it sent."""

    text: str
    echo: str
    prompt: bool
    owned: frozenset[str]
    owns_all: bool = False
    verbose: bool | None = None  # ATV0 / ATV1 in this line
    echo_mode: bool | None = None  # ATE0 / ATE1 in this line
    resets: bool = False  # ATZ / AT&F: settings unknown afterwards


def _parse_command(text: str, prompt: bool) -> _Command:
    """Walk a V.250 command line (§5.2-5.4) for what changes framing or ownership."""
    body = text.strip().upper()
    body = body[2:] if body.startswith("AT") else body
    owned: set[str] = set()
    flags: dict[str, bool | None] = {"V": None, "E": None}
    owns_all = resets = False
    i = 0
    while i < len(body):
        char = body[i]
        if char in "+^$%#*":
            name = _EXTENDED.match(body, i).group()  # type: ignore[union-attr]
            end, quoted = i + len(name), False
            while end < len(body) and (quoted or body[end] != ";"):
                quoted ^= body[end] == '"'
                end += 1
            form = body[i + len(name):end].strip()
            if not (name in URC_CAPABLE and form.startswith("=") and not form.startswith("=?")):
                owned |= {name} | _ALIASES.get(name, frozenset())
            i = end + 1
        elif char == "D":  # the rest of the line is the dial string (V.250 §6.3.1)
            break
        elif (m := _BASIC.match(body, i)) is not None:
            letter, digits = m.groups()
            if letter in flags:  # an omitted value means 0 (V.250 §5.3.1)
                flags[letter] = digits not in ("", "0")
            resets |= letter in ("Z", "&F")
            owns_all |= letter == "&V"
            i = m.end()
            if letter == "S":  # S-parameter: Sn=value or Sn? (V.250 §5.3.2)
                i = _S_PARAM.match(body, i).end()  # type: ignore[union-attr]
        else:
            i += 1
    return _Command(text=text, echo=_squash(text), prompt=prompt, owned=frozenset(owned),
                    owns_all=owns_all, verbose=flags["V"], echo_mode=flags["E"],
                    resets=resets)


@dataclass(slots=True)
class _Exchange:
    """Mutable state of the pending command."""

    command: _Command
    lines: list[str] = field(default_factory=list)
    echoed: bool = False
    await_echo: bool = False
    prompted: bool = False
    pdu: str | None = None


class ATProtocol:
    """One modem's AT conversation, as a state machine over bytes (see module docstring).

    One owner (the engine thread) drives it: ``command()`` → write the bytes →
    ``receive_data()`` → ``events()`` until a Response; ``abort()`` on a timeout.
    """

    def __init__(self, *, max_line: int = 4096) -> None:
        if max_line < 16:
            raise ProtocolError(f"max_line={max_line} is too small for AT lines; use >= 16")
        self._max_line = max_line
        self._buf = bytearray()
        self._scanned = 0  # bytes of _buf known to hold no terminator
        self._events: deque[Event] = deque()
        self._exchange: _Exchange | None = None
        self._overlong = False
        self._urc_head: Urc | None = None
        self._numeric = False
        self._echo_on = False
        self._resync = False

    # -- sending ---------------------------------------------------------------------------
    @property
    def pending(self) -> str | None:
        return self._exchange.command.text if self._exchange else None

    def command(self, text: str, *, prompt: bool = False) -> bytes:
        """Bytes to write for ``text``; ``prompt=True`` expects ``"> "`` before the result."""
        if self._exchange is not None:
            raise ProtocolError(f"cannot send {text!r}: {self._exchange.command.text!r} is "
                                "still pending; wait for its Response or call abort()")
        if any(c in text for c in "\r\n\x1a\x1b") or not text.isascii() or not text.strip():
            raise ProtocolError(f"bad AT command {text!r}: it must be non-empty ASCII (V.250 "
                                "§5.1) with no CR, LF, Ctrl-Z or ESC; encode text with AT+CSCS")
        cmd = _parse_command(text, prompt)
        if cmd.verbose is False:
            self._numeric = True  # ATV0 answers in the new format already (V.250 §6.2.6)
        self._exchange = _Exchange(cmd, await_echo=self._resync and self._echo_on)
        self._resync = False
        return text.encode("ascii") + b"\r"

    def pdu(self, hex_pdu: str) -> bytes:
        """Bytes to write after the Prompt: the hex PDU and Ctrl-Z (TS 27.005 §3.5.1)."""
        ex = self._exchange
        if ex is None or not ex.command.prompt or not ex.prompted or ex.pdu is not None:
            raise ProtocolError("pdu() is legal once, after a Prompt event for a prompt=True "
                                f"command (pending: {self.pending!r})")
        if not hex_pdu or _HEX.fullmatch(hex_pdu) is None:
            raise ProtocolError(f"PDU {hex_pdu[:40]!r} is not hexadecimal (TS 27.005 §3.5.1)")
        ex.pdu = hex_pdu.upper()
        return hex_pdu.encode("ascii") + b"\x1a"

    def escape(self) -> bytes:
        """ESC cancels PDU entry; the pending command then ends with its final result."""
        return b"\x1b"

    def abort(self) -> None:
        """Forget the pending command (it timed out); its late answer will come out Stray."""
        ex = self._exchange
        if ex is not None and ex.await_echo and not ex.echoed:
            self._echo_on = False  # the echo we waited for never came: echo is off now
        self._exchange = None
        self._resync = True

    # -- receiving -------------------------------------------------------------------------
    def receive_data(self, data: bytes) -> None:
        """Parse ``data`` (any chunk of the stream) into events; never raises."""
        buf = self._buf
        buf += data
        while True:
            ex = self._exchange
            if ex is not None and ex.command.prompt and not ex.prompted and not self._overlong:
                if (p := _PROMPT.match(buf)) is not None:
                    del buf[:p.end() + (buf[p.end():p.end() + 1] == b" ")]
                    ex.prompted = True
                    self._scanned = 0
                    self._events.append(Prompt())
                    continue
            m = _EOL.search(buf, self._scanned)
            length = len(buf) if m is None else m.start()
            if length > self._max_line:
                # Cut at the same byte whatever the chunking, so results do not depend on it.
                raw, end, self._overlong = bytes(buf[:self._max_line]), self._max_line, True
                self._events.append(Garbage(raw.decode("utf-8", "replace")))
            elif m is None:
                self._scanned = len(buf)
                return
            else:
                raw, end = bytes(buf[:m.start()]), m.end()
                self._line(raw.decode("utf-8", "replace").strip(_STRIP))
            del buf[:end]
            self._scanned = 0

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def events(self) -> Iterator[Event]:
        while self._events:
            yield self._events.popleft()

    # -- classification --------------------------------------------------------------------
    def _line(self, text: str) -> None:
        if self._overlong:
            self._overlong = False
            if text:
                self._events.append(Garbage(text))
            return
        if not text:
            return
        if self._urc_head is not None:
            head, self._urc_head = self._urc_head, None
            if self._final(text) is None and _PREFIXED.match(text) is None:
                self._events.append(Urc(head.name, head.args, head.line, text))
                return
            self._events.append(head)
        ex = self._exchange
        if ex is not None and ex.prompted:
            cut = max(text.rfind(c) for c in _ENTRY_END)
            if cut >= 0:
                text = text[cut + 1:].strip(_STRIP)
                if not text:
                    return
            elif ex.pdu is not None and text.upper() == ex.pdu:
                return
        if ex is not None and _squash(text) == ex.command.echo:
            ex.echoed, ex.await_echo = True, False
            return
        final = self._final(text)
        if final is not None:
            self._finish(final)
            return
        if self._urc(text):
            return
        if ex is not None and not ex.await_echo:
            ex.lines.append(text)
        else:
            self._events.append(Garbage(text))

    def _final(self, text: str) -> Final | None:
        upper = text.upper()
        if upper in _VERBOSE:
            kind, ok = _VERBOSE[upper]
            return Final(ok, kind, None, text)
        if _CONNECT.fullmatch(text):
            return Final(True, "CONNECT", None, text)
        if (m := _EXT_ERROR.fullmatch(text)) is not None:
            code = int(m.group(2)) if m.group(2) else None
            return Final(False, m.group(1).upper(), code, text)
        if self._numeric and text in _NUMERIC:
            kind, ok = _NUMERIC[text]
            return Final(ok, kind, None, text)
        return None

    def _finish(self, final: Final) -> None:
        if final.kind not in ("CME", "CMS") and not final.text.isdigit():
            self._numeric = False  # a verbose V.250 result code: the modem is in ATV1
        ex = self._exchange
        if ex is None or ex.await_echo:
            self._events.append(Stray(final))
            return
        cmd = ex.command
        self._echo_on = ex.echoed if cmd.echo_mode is None else cmd.echo_mode
        if cmd.resets and cmd.echo_mode is None:
            self._echo_on = False  # the stored profile decides; do not guess
        self._exchange = None
        self._events.append(Response(cmd.text, tuple(ex.lines), final))

    def _urc(self, text: str) -> bool:
        """Emit ``text`` as a URC if it is one (rule 5); a two-line one waits for its body."""
        upper = text.upper()
        if upper in _BARE_URC or (self._numeric and text == "2"):
            name = "RING" if text == "2" else _BARE_URC[upper]
            self._events.append(Urc(name, "", text))
            return True
        m = _PREFIXED.match(text)
        if m is None:
            return False
        name = m.group(1).upper()
        ex = self._exchange
        if name not in ALWAYS_URC and ex is not None and (
                ex.command.owns_all or name in ex.command.owned):
            return False
        urc = Urc(name, text[m.end():].strip(_STRIP), text)
        if name in _TWO_LINE and (name != "+CDS" or _DIGITS.fullmatch(urc.args)):
            self._urc_head = urc
        else:
            self._events.append(urc)
        return True
