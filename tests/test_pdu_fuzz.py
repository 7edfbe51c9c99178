"""Property tests: the decoder's one invariant, and encode/decode agreement on any text.

Invariant (as h11's fuzzing states it): decode() returns a Deliver or a StatusReport, or
raises PduError carrying the input; nothing else, whatever the bytes. A Deliver's text is
always storable as UTF-8. The long run is ``-m fuzz_long`` (100,000 examples).
"""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from appliance.errors import PduError
from appliance.modem.pdu import (
    Deliver, StatusReport, count_parts, decode, decode_submit, encode_submit,
    join_parts,
)
from tests.pdu_support import deliver_pdus, status_report_pdu

DATA = Path(__file__).parent / "data" / "gammu-at-sms"
STAMP = datetime(2024, 5, 1, 10, 0, 0, tzinfo=timezone(timedelta(hours=5)))
FAST = settings(max_examples=300, deadline=None,
                suppress_health_check=[HealthCheck.too_slow])
LONG = settings(max_examples=100_000, deadline=None)


def corpus() -> list[str]:
    """Real PDUs to mutate: the gammu dumps plus our own encodings."""
    found = []
    for dump in sorted(DATA.glob("*/*.dump")):
        lines = [line.strip() for line in dump.read_text("latin-1").splitlines()]
        header = next(i for i, line in enumerate(lines) if line.startswith("+CMGR:"))
        found.append(lines[header + 1].strip('"'))
    found += deliver_pdus("JAZZ", "x" * 200, timestamp=STAMP, reference=3)
    found += deliver_pdus("+923001234567", "سلام \U0001F600" * 20, timestamp=STAMP,
                          reference=700, ref16=True)
    found.append(status_report_pdu(9, "+923001234567", 0x41, timestamp=STAMP,
                                   discharge=STAMP))
    return [p for p in found if len(p) % 2 == 0 and all(c in "0123456789abcdefABCDEF"
                                                         for c in p)]


CORPUS = corpus()


def check_invariant(pdu: str) -> None:
    for smsc in (True, False):
        try:
            msg = decode(pdu, smsc_included=smsc)
        except PduError as exc:
            assert exc.pdu == pdu
            continue
        assert isinstance(msg, (Deliver, StatusReport))
        if isinstance(msg, Deliver):
            msg.text.encode("utf-8")
            msg.sender.encode("utf-8")
            assert msg.encoding in ("gsm7", "ucs2", "8bit")
            assert msg.sender_type in ("international", "national", "alphanumeric",
                                       "unknown", "short")
    try:
        decode_submit(pdu)
    except PduError as exc:
        assert exc.pdu == pdu


@FAST
@given(st.binary(max_size=200))
@example(b"")
@example(bytes.fromhex("0004"))
@example(bytes.fromhex("00440C91290310325476000842501001000002" + "FF05"))
def test_random_bytes_decode_or_pdu_error(data: bytes) -> None:
    check_invariant(data.hex().upper())


@FAST
@given(st.text(max_size=60))
def test_random_text_decode_or_pdu_error(text: str) -> None:
    check_invariant(text)


@st.composite
def mutated(draw: st.DrawFn) -> str:
    raw = bytearray(bytes.fromhex(draw(st.sampled_from(CORPUS))))
    for _ in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "cut", "insert", "drop"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if kind == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set" and raw:
            raw[at] = draw(st.sampled_from([0x00, 0x7F, 0x80, 0xFF, draw(st.integers(0, 255))]))
        elif kind == "cut":
            del raw[at:]
        elif kind == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif kind == "drop" and raw:
            del raw[at]
    return bytes(raw).hex().upper()


@FAST
@given(mutated())
def test_mutated_real_pdus_decode_or_pdu_error(pdu: str) -> None:
    check_invariant(pdu)


@pytest.mark.fuzz_long
@pytest.mark.slow
def test_long_fuzz(pytestconfig: pytest.Config) -> None:
    if "fuzz_long" not in (pytestconfig.getoption("markexpr") or ""):
        pytest.skip("100,000 examples: run by hand with -m fuzz_long")

    @LONG
    @given(st.one_of(mutated(), st.binary(max_size=200).map(lambda b: b.hex())))
    def run(pdu: str) -> None:
        check_invariant(pdu)

    run()


TEXTS = st.text(st.characters(codec="utf-8"), max_size=400)  # any text but lone surrogates


@FAST
@given(TEXTS, st.booleans())
def test_any_text_survives_submit_round_trip(text: str, ref16: bool) -> None:
    parts = encode_submit("03001234567", text, reference=0x1FF if ref16 else 0x1F,
                          ref16=ref16)
    assert count_parts(text, ref16=ref16) == (len(parts), parts[0].encoding)
    decoded = [decode_submit(p.pdu) for p in parts]
    assert "".join(d.text for d in decoded) == text
    assert all(p.tpdu_length <= 176 - 1 for p in parts)  # 140 octets UD + header


@FAST
@given(TEXTS, st.permutations(range(8)), st.booleans())
def test_any_text_survives_deliver_reassembly(text: str, order: list[int],
                                              ref16: bool) -> None:
    pdus = deliver_pdus("JAZZ", text, timestamp=STAMP, reference=77, ref16=ref16)
    arrived = []
    for i in [i for i in order if i < len(pdus)] + list(range(8, len(pdus))):
        msg = decode(pdus[i])
        assert isinstance(msg, Deliver)
        arrived.append(msg)
    assert join_parts(arrived).text == text
