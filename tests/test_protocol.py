"""Tests for appliance.modem.protocol: transcripts replayed in every chunking, the
classification rules one by one, and the fuzz invariant (any bytes: no exception, only
declared events)."""

from __future__ import annotations

import codecs
import random
from collections.abc import Callable, Iterable
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ProtocolError
from appliance.modem.protocol import (ATProtocol, Event, Final, Garbage, Prompt, Response,
                                      Stray, Urc)

DATA = Path(__file__).parent / "data" / "at"
TRANSCRIPTS = sorted(DATA.glob("*.at"))
KINDS = {"OK", "ERROR", "CME", "CMS", "NO CARRIER", "BUSY", "NO ANSWER", "NO DIALTONE",
         "CONNECT"}
SUBMIT = "0021000C9129031032547600000AD4F29C0E9297E1EC3C"
DELIVER = ("07912943000000F0040C9129320021436500004210705100100012436772089AD56430594C36A3D56"
           "CB718")
Step = tuple[str, "str | bytes"]
Chunker = Callable[[bytes], Iterable[bytes]]


def load(path: Path) -> tuple[list[Step], list[str]]:
    """Parse a transcript (format in tests/data/at/README.md)."""
    steps: list[Step] = []
    expected: list[str] = []
    for raw in path.read_text(encoding="utf-8").splitlines():
        for prefix in (">> ", ">pdu ", ">esc", ">abort", "> ", "< ", "= "):
            if raw.startswith(prefix):
                arg = raw[len(prefix):]
                if prefix == "< ":
                    steps.append(("<", codecs.escape_decode(arg.encode())[0]))
                elif prefix == "= ":
                    expected.append(arg)
                else:
                    steps.append((prefix.strip(), arg))
                break
        else:
            # "@" lines are typed checks of the answers (tests/test_modem_families.py).
            assert not raw.strip() or raw.startswith(("#", "@ ")), \
                f"{path.name}: bad line {raw!r}"
    return steps, expected


def render(ev: Event) -> str:
    if isinstance(ev, Response):
        return f"response {ev.command} {ev.final.text}" + "".join(f" | {x}" for x in ev.lines)
    if isinstance(ev, Urc):
        return f"urc {ev.line}" + (f" || {ev.pdu}" if ev.pdu is not None else "")
    if isinstance(ev, Stray):
        return f"stray {ev.final.text}"
    if isinstance(ev, Garbage):
        return f"garbage {ev.line}"
    return "prompt"


def check(ev: object) -> None:
    """The declared event types, with fields of the declared types."""
    assert type(ev) in (Response, Prompt, Urc, Stray, Garbage), ev
    strings: list[object] = []
    if isinstance(ev, (Response, Stray)):
        final = ev.final
        assert isinstance(final, Final) and isinstance(final.ok, bool) and final.kind in KINDS
        assert final.code is None or isinstance(final.code, int)
        strings += [final.text]
    if isinstance(ev, Response):
        assert isinstance(ev.lines, tuple)
        strings += [ev.command, *ev.lines]
    if isinstance(ev, Urc):
        assert ev.pdu is None or isinstance(ev.pdu, str)
        strings += [ev.name, ev.line, ev.args + "x", ev.pdu or "x"]
    if isinstance(ev, Garbage):
        strings += [ev.line]
    for s in strings:
        assert isinstance(s, str) and s and "\r" not in s and "\n" not in s, ev


def play(steps: list[Step], chunker: Chunker, *, tolerant: bool = False,
         proto: ATProtocol | None = None) -> list[Event]:
    """Replay a transcript; ``tolerant`` skips sends the (corrupted) stream did not allow."""
    proto = proto or ATProtocol()
    seen: list[Event] = []
    sent_at = 0  # len(seen) when the last command was written
    for kind, arg in steps:
        if kind == "<":
            assert isinstance(arg, bytes)
            for chunk in chunker(arg):
                proto.receive_data(chunk)
            seen += proto.events()
            continue
        assert isinstance(arg, str)
        if kind in (">", ">>"):
            if tolerant and proto.pending:
                proto.abort()
            assert proto.command(arg, prompt=kind == ">>") == arg.encode() + b"\r"
            sent_at = len(seen)
        elif kind == ">pdu":
            # Tolerant: only after a prompt for *this* command (a corrupted stream can lose
            # it, leaving an earlier command's Prompt as the last event seen).
            if not tolerant or (len(seen) > sent_at and isinstance(seen[-1], Prompt)):
                assert proto.pdu(arg) == arg.encode() + b"\x1a"
        elif kind == ">esc":
            pending = proto.pending
            assert proto.escape() == b"\x1b" and proto.pending == pending
        else:
            proto.abort()
    return seen


def whole(data: bytes) -> Iterable[bytes]:
    return [data]


def bytewise(data: bytes) -> Iterable[bytes]:
    return [data[i:i + 1] for i in range(len(data))]


def random_chunks(seed: int) -> Chunker:
    rng = random.Random(seed)

    def chunker(data: bytes) -> Iterable[bytes]:
        cuts = sorted(rng.sample(range(len(data) + 1), min(len(data) + 1, 6)))
        return [data[a:b] for a, b in zip([0, *cuts], [*cuts, len(data)])]
    return chunker


CHUNKERS = {"whole": whole, "bytewise": bytewise, **{f"random{n}": random_chunks(n)
                                                     for n in range(3)}}


@pytest.mark.parametrize("chunking", CHUNKERS)
@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript(path: Path, chunking: str) -> None:
    steps, expected = load(path)
    events = play(steps, CHUNKERS[chunking])
    for ev in events:
        check(ev)
    assert [render(e) for e in events] == expected


@pytest.mark.parametrize("path", TRANSCRIPTS, ids=lambda p: p.stem)
def test_transcript_with_trailing_junk(path: Path) -> None:
    steps, expected = load(path)
    proto = ATProtocol()
    events = play(steps, whole, proto=proto)
    proto.receive_data(b"\x00\xffjunk\r\n+CMGS: 1\r\nOK\r\nhalf a line")
    assert [render(e) for e in events + list(proto.events())] == expected + [
        "garbage \ufffdjunk", "urc +CMGS: 1", "stray OK"]


def test_transcripts_exist() -> None:
    assert len(TRANSCRIPTS) >= 8


def feed(proto: ATProtocol, *chunks: bytes) -> list[Event]:
    for chunk in chunks:
        proto.receive_data(chunk)
    return list(proto.events())


def answer(command: str, *chunks: bytes, prompt: bool = False) -> list[Event]:
    proto = ATProtocol()
    proto.command(command, prompt=prompt)
    return feed(proto, *chunks)


@pytest.mark.parametrize(("line", "final"), [
    ("OK", Final(True, "OK", None, "OK")),
    ("ERROR", Final(False, "ERROR", None, "ERROR")),
    ("+CME ERROR: 10", Final(False, "CME", 10, "+CME ERROR: 10")),
    ("+CME ERROR:3", Final(False, "CME", 3, "+CME ERROR:3")),
    ("+CMS ERROR: 500", Final(False, "CMS", 500, "+CMS ERROR: 500")),
    ("+CME ERROR: SIM not inserted", Final(False, "CME", None, "+CME ERROR: SIM not inserted")),
    ("+CME ERROR: 99999999999", Final(False, "CME", None, "+CME ERROR: 99999999999")),
    ("NO CARRIER", Final(False, "NO CARRIER", None, "NO CARRIER")),
    ("BUSY", Final(False, "BUSY", None, "BUSY")),
    ("NO ANSWER", Final(False, "NO ANSWER", None, "NO ANSWER")),
    ("NO DIALTONE", Final(False, "NO DIALTONE", None, "NO DIALTONE")),
    ("CONNECT 9600", Final(True, "CONNECT", None, "CONNECT 9600")),
    ("COMMAND NOT SUPPORT", Final(False, "ERROR", None, "COMMAND NOT SUPPORT")),
])
def test_final_result_codes(line: str, final: Final) -> None:
    assert answer("AT+CSQ", line.encode() + b"\r\n") == [Response("AT+CSQ", (), final)]


@pytest.mark.parametrize(("digit", "kind"), [("0", "OK"), ("3", "NO CARRIER"), ("4", "ERROR"),
                                             ("7", "BUSY")])
def test_numeric_results_only_after_atv0(digit: str, kind: str) -> None:
    proto = ATProtocol()
    proto.command("ATS0?")
    assert feed(proto, digit.encode() + b"\r\nOK\r\n")[0].lines == (digit,)  # type: ignore
    proto.command("ATE0V0")
    assert feed(proto, b"0\r") == [Response("ATE0V0", (), Final(True, "OK", None, "0"))]
    proto.command("AT+CSQ")
    [ev] = feed(proto, b"+CSQ: 20,0\r\n" + digit.encode() + b"\r")
    assert isinstance(ev, Response) and ev.final.kind == kind and ev.lines == ("+CSQ: 20,0",)


def test_line_endings_vary() -> None:
    assert answer("AT+CGMI", b"\nSIMCOM_Ltd\n\nOK\n") == answer("AT+CGMI", b"\rSIMCOM_Ltd\rOK\r")


@pytest.mark.parametrize("chunks", [[b"> "], [b"\r\n> "], [b">"], [b"\r\n", b">", b" "],
                                    [b" > \r\n"]])
def test_prompt_shapes(chunks: list[bytes]) -> None:
    assert answer("AT+CMGS=22", *chunks, prompt=True) == [Prompt()]


def test_prompt_only_when_a_prompt_command_waits() -> None:
    assert answer("AT+CSQ", b"> \r\nOK\r\n")[0].lines == (">",)  # type: ignore[union-attr]
    assert feed(ATProtocol(), b"> x\r\n") == [Garbage("> x")]
    proto = ATProtocol()
    proto.command("AT+CMGS=22", prompt=True)
    assert feed(proto, b"> ", b"> ") == [Prompt()]  # the second ">" starts a line of data


def test_pdu_echo_glued_to_the_final_response() -> None:
    proto = ATProtocol()
    proto.command("AT+CMGS=22", prompt=True)
    assert feed(proto, b"\r\n> ") == [Prompt()]
    proto.pdu(SUBMIT.lower())
    events = feed(proto, b"> " + SUBMIT.encode() + b"\x1a+CMGS: 19\r\n\r\nOK\r\n")
    assert events == [Response("AT+CMGS=22", ("+CMGS: 19",), Final(True, "OK", None, "OK"))]


def test_pdu_echo_without_ctrl_z() -> None:
    proto = ATProtocol()
    proto.command("AT+CMGS=22", prompt=True)
    feed(proto, b"> ")
    proto.pdu(SUBMIT)
    [ev] = feed(proto, SUBMIT.encode() + b"\r\n\r\n+CMGS: 20\r\n\r\nOK\r\n")
    assert isinstance(ev, Response) and ev.lines == ("+CMGS: 20",)


def test_misuse_raises_protocol_error() -> None:
    proto = ATProtocol()
    with pytest.raises(ProtocolError):
        proto.pdu(SUBMIT)  # nothing pending
    proto.command("AT+CMGS=22", prompt=True)
    with pytest.raises(ProtocolError, match="still pending"):
        proto.command("AT+CSQ")
    with pytest.raises(ProtocolError):
        proto.pdu(SUBMIT)  # before the prompt
    feed(proto, b"> ")
    with pytest.raises(ProtocolError, match="hexadecimal"):
        proto.pdu("00ZZ")
    proto.pdu(SUBMIT)
    with pytest.raises(ProtocolError):
        proto.pdu(SUBMIT)  # twice
    proto.abort()
    for bad in ("AT+CSQ\r", "AT+CMGS=1\x1a", "", "AT+CSCS=\"اردو\""):
        with pytest.raises(ProtocolError):
            proto.command(bad)
    with pytest.raises(ProtocolError):
        ATProtocol(max_line=4)


@pytest.mark.parametrize(("command", "line", "is_response"), [
    ("AT+CREG?", "+CREG: 0,1", True),
    ("AT+CREG=2", "+CREG: 1,\"2B5C\",\"1A2F\"", False),
    ("AT+CREG=?", "+CREG: (0-2)", True),
    ("AT+CUSD=1,\"*123#\",15", "+CUSD: 0,\"Balance 10\",15", False),
    ("AT+CUSD?", "+CUSD: 1", True),
    ("AT+CPIN=\"1234\"", "+CPIN: READY", False),
    ("AT+CSQ", "+CPIN: NOT READY", False),
    ("AT+CMEE=1;+CREG?", "+CREG: 0,5", True),
    ("ATE0+CGREG?", "+CGREG: 0,1", True),
    ("AT+CICCID", "+ICCID: 8992030000012345678", True),
    ("AT&V", "+CSCS: \"GSM\"", True),
    ("AT&V", "+CMTI: \"SM\",1", False),
    ("AT+CMGS=22", "+CMTI: \"SM\",1", False),
    ("AT+CMGR=1", "+QIND: \"csq\",20,99", False),
    ("AT+CGSN", "RING", False),
    ("AT+CGSN", "861234567890123", True),
    ("AT+CMGL=4", "+CMGL: 1,1,,25", True),
])
def test_ownership_of_lines(command: str, line: str, is_response: bool) -> None:
    events = answer(command, line.encode() + b"\r\nOK\r\n")
    final = Final(True, "OK", None, "OK")
    if is_response:
        assert events == [Response(command, (line,), final)]
    else:
        assert events[1:] == [Response(command, (), final)]
        assert isinstance(events[0], Urc) and events[0].line == line


def test_two_cmti_in_one_chunk_and_bare_urcs() -> None:
    events = feed(ATProtocol(), b"\r\n+CMTI: \"SM\",1\r\n\r\n+CMTI: \"SM\",2\r\nRING\r\n2\r\n")
    assert [(e.name, e.args) for e in events if isinstance(e, Urc)] == [
        ("+CMTI", '"SM",1'), ("+CMTI", '"SM",2'), ("RING", "")]
    assert events[-1] == Garbage("2")  # numeric RING only in ATV0


def test_cmt_pdu_split_across_chunks() -> None:
    proto = ATProtocol()
    assert feed(proto, b"\r\n+CMT: ,35\r\n", DELIVER[:20].encode()) == []
    assert feed(proto, DELIVER[20:].encode()) == []
    assert feed(proto, b"\r\n") == [Urc("+CMT", ",35", "+CMT: ,35", DELIVER)]


def test_cds_split_mid_header_b14() -> None:
    sr = "07912943000000F0062A0C91293200214365421070510010004210705100200000"
    data = b"\r\n+CDS: 25\r\n" + sr.encode() + b"\r\n"
    for cut in range(len(data) + 1):
        assert feed(ATProtocol(), data[:cut], data[cut:]) == [
            Urc("+CDS", "25", "+CDS: 25", sr)]


def test_cds_text_mode_is_one_line() -> None:
    line = '+CDS: 6,42,"+922300123456",145,"24/01/07,15:00:01+20","24/01/07,15:00:02+20",0'
    assert feed(ATProtocol(), line.encode() + b"\r\n") == [Urc("+CDS", line[6:], line)]


def test_cmt_whose_body_never_came() -> None:
    events = answer("AT+CSQ", b"\r\n+CMT: ,35\r\nOK\r\n")
    assert events == [Urc("+CMT", ",35", "+CMT: ,35", None),
                      Response("AT+CSQ", (), Final(True, "OK", None, "OK"))]


def test_non_utf8_in_cusd_never_raises() -> None:
    [urc] = feed(ATProtocol(), b'\r\n+CUSD: 0,"Rs\xff\xfe 10",15\r\n')
    assert isinstance(urc, Urc) and urc.name == "+CUSD" and "\ufffd" in urc.args


def test_abort_then_late_ok_is_stray() -> None:
    proto = ATProtocol()
    proto.command("AT+CMGS=22", prompt=True)
    proto.abort()
    assert proto.pending is None
    assert feed(proto, b"\r\n+CMGS: 5\r\n\r\nOK\r\n") == [
        Urc("+CMGS", "5", "+CMGS: 5"), Stray(Final(True, "OK", None, "OK"))]
    proto.command("AT+CSQ")
    assert feed(proto, b"\r\n+CSQ: 9,0\r\n\r\nERROR\r\n") == [
        Response("AT+CSQ", ("+CSQ: 9,0",), Final(False, "ERROR", None, "ERROR"))]


def test_abort_with_echo_on_waits_for_the_next_echo() -> None:
    proto = ATProtocol()
    proto.command("AT+CSQ")
    feed(proto, b"AT+CSQ\r\r\n+CSQ: 9,0\r\n\r\nOK\r\n")
    proto.command("AT+CSQ")
    assert feed(proto, b"AT+CSQ\r\r\n") == []
    proto.abort()
    proto.command("AT+CSQ")  # the late answer arrives after the next command was written
    assert feed(proto, b"\r\n+CSQ: 9,0\r\n\r\nOK\r\n") == [
        Garbage("+CSQ: 9,0"), Stray(Final(True, "OK", None, "OK"))]
    assert proto.pending == "AT+CSQ"
    [ev] = feed(proto, b"AT+CSQ\r\r\n+CSQ: 12,0\r\n\r\nOK\r\n")
    assert isinstance(ev, Response) and ev.lines == ("+CSQ: 12,0",)


def test_abort_when_echo_went_off_recovers() -> None:
    proto = ATProtocol()
    proto.command("AT")
    feed(proto, b"AT\r\r\nOK\r\n")
    proto.abort()
    proto.command("AT+CGMI")  # the modem rebooted with echo off: this answer is lost
    assert feed(proto, b"\r\nSIMCOM_Ltd\r\n\r\nOK\r\n")[-1] == Stray(
        Final(True, "OK", None, "OK"))
    proto.abort()
    proto.command("AT+CGMI")
    [ev] = feed(proto, b"\r\nSIMCOM_Ltd\r\n\r\nOK\r\n")
    assert isinstance(ev, Response) and ev.lines == ("SIMCOM_Ltd",)


def test_bytes_before_a_command_are_not_its_answer() -> None:
    proto = ATProtocol()
    proto.receive_data(b"\r\nOK\r\n")
    proto.command("AT+CSQ")
    assert list(proto.events()) == [Stray(Final(True, "OK", None, "OK"))]
    assert proto.pending == "AT+CSQ" and proto.next_event() is None


def test_overlong_lines_are_cut_the_same_way_in_any_chunking() -> None:
    data = b"\r\n" + b"7" * 150 + b"\r\nOK\r\n"
    results = []
    for chunks in ([data], [data[i:i + 1] for i in range(len(data))]):
        proto = ATProtocol(max_line=64)
        proto.command("AT+CGSN")
        results.append(feed(proto, *chunks))
    assert results[0] == results[1] == [Garbage("7" * 64), Garbage("7" * 64), Garbage("7" * 22),
                                        Response("AT+CGSN", (), Final(True, "OK", None, "OK"))]


def test_endless_line_stays_bounded() -> None:
    proto = ATProtocol(max_line=1024)
    for _ in range(256):
        proto.receive_data(b"\xff" * 4096)
    events = list(proto.events())  # the last max_line bytes may still end in a terminator
    assert len(events) == 1023 and all(isinstance(e, Garbage) for e in events)


TOKENS = [b"\r", b"\n", b"\r\n", b"> ", b">", b"OK", b"ERROR", b"0", b"2", b"4", b"\x1a",
          b"\x1b", b"\xff", b"+CMT: ,35", b"+CDS: 25", b"+CDS: ", b"+CMTI: \"SM\",3", b"RING",
          b"+CME ERROR: ", b"+CMS ERROR: 500", b"AT+CSQ", b"AT+CMGS=22", b"+CSQ: 1,2", b"^RSSI:",
          SUBMIT.encode(), b" ", b"9" * 40]
streams = st.lists(st.one_of(st.binary(max_size=12), st.sampled_from(TOKENS)),
                   max_size=40).map(b"".join)
ops = st.lists(st.one_of(
    streams.map(lambda b: ("data", b)),
    st.sampled_from([("cmd", "AT+CSQ"), ("cmd", "ATE1V0"), ("cmd", "ATV1"), ("abort", ""),
                     ("prompt", "AT+CMGS=22"), ("pdu", SUBMIT), ("esc", "")])), max_size=30)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ops, st.integers(16, 200))
def test_fuzz_any_bytes_any_calls(operations: list[tuple[str, object]], max_line: int) -> None:
    proto = ATProtocol(max_line=max_line)
    prompted = False
    for op, arg in operations:
        if op == "data":
            assert isinstance(arg, bytes)
            proto.receive_data(arg)
        elif op in ("cmd", "prompt") and proto.pending is None:
            proto.command(str(arg), prompt=op == "prompt")
            prompted = False
        elif op == "pdu" and prompted and proto.pending is not None:
            # As the session does: "> " followed by the final result in one read ends the
            # command, and no PDU may follow (see test_session.py).
            proto.pdu(str(arg))
            prompted = False
        elif op == "abort":
            proto.abort()
        for ev in proto.events():
            check(ev)
            prompted |= isinstance(ev, Prompt)


@settings(max_examples=60, deadline=None)
@given(st.sampled_from(TRANSCRIPTS), st.data())
def test_random_chunking_matches_whole(path: Path, data: st.DataObject) -> None:
    steps, expected = load(path)

    def chunker(raw: bytes) -> Iterable[bytes]:
        cuts = sorted(data.draw(st.lists(st.integers(0, len(raw)), max_size=6)))
        return [raw[a:b] for a, b in zip([0, *cuts], [*cuts, len(raw)])]
    assert [render(e) for e in play(steps, chunker)] == expected


@settings(max_examples=150, deadline=None)
@given(st.sampled_from(TRANSCRIPTS), st.data())
def test_transcripts_with_inserted_bytes(path: Path, data: st.DataObject) -> None:
    steps, _ = load(path)

    def chunker(raw: bytes) -> Iterable[bytes]:
        at = data.draw(st.integers(0, len(raw)))
        junk = data.draw(st.one_of(st.binary(max_size=8), st.sampled_from(TOKENS)))
        mixed = raw[:at] + junk + raw[at:]
        cut = data.draw(st.integers(0, len(mixed)))
        return [mixed[:cut], mixed[cut:]]
    for ev in play(steps, chunker, tolerant=True):
        check(ev)


def test_simcom_star_urc_inside_cmgr_is_a_urc_not_a_response_line() -> None:
    """SIM800 sends *PSUTTZ (network time) at any moment; found by the simulator's
    urc_in_response fault: taken as a response line it stood between +CMGR: and the PDU."""
    proto = ATProtocol()
    proto.command("AT+CMGR=1")
    events = feed(proto, b"\r\n+CMGR: 0,,22\r\n*PSUTTZ: 25/11/22,9,30,0,\"+20\",0\xff\r\n",
                  DELIVER.encode() + b"\r\n\r\nOK\r\n")
    urcs = [e for e in events if isinstance(e, Urc)]
    responses = [e for e in events if isinstance(e, Response)]
    assert [u.name for u in urcs] == ["*PSUTTZ"]
    assert responses[0].lines == ("+CMGR: 0,,22", DELIVER)
