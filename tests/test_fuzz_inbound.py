"""The inbound path under fuzzing, and the Pakistani PDU corpus (issue 7, points 6 and 2).

Invariant of the inbound path (as the engine drives it: decode, then ``on_status_report``
for a status report or ``on_inbound`` with the Deliver or the PduError): nothing raises,
nothing is logged as an error, and every PDU leaves exactly one Inbound row whose status
is ``answered`` (with its Outbound reply), ``ignored`` or ``quarantined`` (with a reason),
or ``part`` (waiting for its siblings). Inputs: random bytes, mutated real PDUs (Gammu's
collection of real phones' ``AT+CMGR`` answers and our Pakistani corpus) and valid
SMS-DELIVER PDUs from the simulator's independent encoder with random senders and text.

The CNIC and responder fuzzing lives in tests/test_cnic.py and tests/test_responder.py.
"""

from __future__ import annotations

import itertools
import json
import logging
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.config import config_from_dict
from appliance.errors import PduError
from appliance.modem import pdu
from appliance.simulator import pdu as sim_pdu
from appliance.simulator.gsm7 import is_gsm7
from appliance.registry.importer import SAMPLE_REGISTRY, demo_cnics, import_file
from appliance.service.unit import Service
from appliance.state.store import Inbound, Outbound

DATA = Path(__file__).resolve().parent / "data"
FIRMWARE_CONFIG = Path(__file__).resolve().parent.parent / "firmware_config"
CORPUS: list[dict[str, Any]] = json.loads((DATA / "pdu_pk" / "corpus.json")
                                          .read_text(encoding="utf-8"))
SETTLED = {"answered", "ignored", "quarantined", "part"}
OWN_NUMBER = "+923009999999"


def dump_pdus(folder: Path) -> list[str]:
    """The PDU line of each Gammu ``.dump`` (the line after ``+CMGR: …``)."""
    out = []
    for path in sorted(folder.glob("*.dump")):
        lines = [ln.strip() for ln in path.read_text(encoding="latin-1").splitlines()]
        for i, line in enumerate(lines[:-1]):
            if line.startswith("+CMGR:"):
                out.append(lines[i + 1])
                break
    return out


def _is_hex(text: str) -> bool:
    try:
        bytes.fromhex(text)
    except ValueError:
        return False
    return True


# Gammu's "failing" answers include non-hex junk (quotes, "=", "p"): fed as they are, and
# only the hex ones are mutated octet by octet.
REAL_PDUS = (dump_pdus(DATA / "gammu-at-sms" / "ok") + dump_pdus(DATA / "gammu-at-sms" / "failing")
             + [c["pdu"] for c in CORPUS])
HEX_PDUS = [p for p in REAL_PDUS if _is_hex(p)]


class Harness:
    """A unit without modems: real state.db, real sample registry, real templates.

    It calls the Service's modem-handler callbacks exactly as ``engine._deliver`` does.
    """

    def __init__(self, tmp_path: Path, **limits: Any) -> None:
        data_dir = tmp_path / "data"
        import_file(SAMPLE_REGISTRY, data_dir / "registry.db", version=1, source="tests")
        self.config = config_from_dict({
            "unit": {"name": "fuzz", "data_dir": str(data_dir), "own_numbers": [OWN_NUMBER]},
            "replies": {"templates": str(FIRMWARE_CONFIG / "replies.toml"), "language": "en"},
            "status": {"http_bind": ""},
            "limits": limits,
        }, base_dir=tmp_path)
        self.service = Service(self.config)
        self.modems = (f"sim{i}" for i in itertools.count())

    def feed(self, pdu_hex: str, modem: str | None = None) -> tuple[str, Any]:
        """One PDU through the receive path; returns (modem, decoded or the PduError)."""
        modem = modem or next(self.modems)
        try:
            decoded: Any = pdu.decode(pdu_hex)
        except PduError as exc:
            decoded = exc
        if isinstance(decoded, pdu.StatusReport):
            self.service.outbox.on_status_report(modem, decoded)
        else:
            self.service.on_inbound(modem, pdu_hex, decoded)
        return modem, decoded

    def close(self) -> None:
        self.service.registry.close()
        self.service.store.close()


def check_settled(modem: str, pdu_hex: str, decoded: Any) -> None:
    if isinstance(decoded, pdu.StatusReport):
        assert not Inbound.select().where(Inbound.modem == modem).exists()
        return
    rows = list(Inbound.select().where((Inbound.modem == modem)
                                       & (Inbound.pdu_hash == pdu.pdu_hash(pdu_hex))))
    assert len(rows) == 1, f"{len(rows)} inbound rows for {pdu_hex!r}"
    row = rows[0]
    assert row.status in SETTLED, f"inbound left {row.status!r} for {pdu_hex!r}"
    if row.status in ("ignored", "quarantined"):
        assert row.reason, f"{row.status} without a reason for {pdu_hex!r}"
    if row.status == "quarantined":
        assert isinstance(decoded, PduError) and row.pdu == pdu_hex
    if row.status == "answered":
        assert row.reply is not None and Outbound.get_or_none(Outbound.id == row.reply), \
            f"answered without a reply row for {pdu_hex!r}"


# --- input strategies ----------------------------------------------------------------------

CNICS = demo_cnics()
KNOWN = CNICS.hits + CNICS.removed + CNICS.misses
T0 = datetime(2025, 3, 14, 9, 26, 53, tzinfo=timezone(timedelta(hours=5)))

senders = st.one_of(
    st.integers(3000000000, 3499999999).map(lambda n: f"+92{n}"),
    st.integers(3000000000, 3499999999).map(lambda n: f"0{n}"),
    st.sampled_from(["Jazz", "Zong", "Telenor", "Ufone", "JazzCash", "HBL", "8558", "3737",
                     OWN_NUMBER, "+971501234567"]),
    st.text("0123456789", min_size=1, max_size=15),
    st.text(st.characters(codec="ascii", categories=["Lu", "Ll", "Nd"]), min_size=1,
            max_size=11).filter(is_gsm7),
)
pieces = st.one_of(
    st.sampled_from(KNOWN),
    st.sampled_from(KNOWN).map(lambda c: f"{c[:5]}-{c[5:12]}-{c[12]}"),
    st.sampled_from(KNOWN).map(lambda c: c.translate({48 + i: 0x6F0 + i for i in range(10)})),
    st.sampled_from(["help", "مدد", "?", "CNIC", " ", "\n", "شناختی کارڈ", "\u200f", "-",
                     "0300-1234567", "🙏"]),
    st.text(max_size=30),
)
texts = st.lists(pieces, max_size=8).map("".join)


@st.composite
def valid_delivers(draw: st.DrawFn) -> str:
    text = draw(texts)
    ref16 = draw(st.booleans())
    parts = sim_pdu.encode_deliver(draw(senders), text, smsc="+923000000099",
                                   timestamp=T0 + timedelta(seconds=draw(st.integers(0, 10**6))),
                                   reference=draw(st.integers(0, 0xFFFF)), ref16=ref16)
    return draw(st.sampled_from(parts)).pdu


@st.composite
def mutated(draw: st.DrawFn) -> str:
    raw = bytearray.fromhex(draw(st.sampled_from(HEX_PDUS)))
    for _ in range(draw(st.integers(1, 4))):
        op = draw(st.sampled_from(["flip", "set", "cut", "insert", "delete", "append"]))
        at = draw(st.integers(0, max(len(raw) - 1, 0)))
        if op == "flip" and raw:
            raw[at] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and raw:  # length and type octets are where decoders go wrong
            raw[at] = draw(st.sampled_from([0x00, 0x01, 0x7F, 0x80, 0xA0, 0xD0, 0xFF]))
        elif op == "cut":
            del raw[at:]
        elif op == "insert":
            raw[at:at] = draw(st.binary(min_size=1, max_size=4))
        elif op == "delete" and raw:
            del raw[at]
        else:
            raw += draw(st.binary(min_size=1, max_size=8))
    return raw.hex().upper()


pdus = st.one_of(
    st.binary(max_size=180).map(lambda b: b.hex().upper()),
    st.text(max_size=40),                                 # not hex at all: garbled CMGR lines
    mutated(),
    valid_delivers(),
    st.sampled_from(REAL_PDUS),
)


def run_fuzz(tmp_path: Path, caplog: pytest.LogCaptureFixture, examples: int) -> None:
    caplog.set_level(logging.WARNING)
    # Small quotas so the loop guard, duplicates and limit replies are all reached.
    h = Harness(tmp_path, per_sender_hourly=2, per_sender_daily=3, loop_guard_count=6)

    @settings(max_examples=examples, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    @given(pdus)
    def one(pdu_hex: str) -> None:
        modem, decoded = h.feed(pdu_hex)
        check_settled(modem, pdu_hex, decoded)

    try:
        one()
    finally:
        h.close()
    errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert not errors, f"the inbound path logged errors: {[r.getMessage() for r in errors]}"


def test_inbound_path_fuzz(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    run_fuzz(tmp_path, caplog, examples=120)


@pytest.mark.fuzz_long
def test_inbound_path_fuzz_long(tmp_path: Path, caplog: pytest.LogCaptureFixture,
                                request: pytest.FixtureRequest) -> None:
    if "fuzz_long" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long fuzz run: select it with -m fuzz_long")
    run_fuzz(tmp_path, caplog, examples=100_000)


def test_service_works_without_modems(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        modem, decoded = h.feed(CORPUS[0]["pdu"])
        check_settled(modem, CORPUS[0]["pdu"], decoded)
        row = Inbound.get(Inbound.modem == modem)
        assert row.status == "answered"
        assert Outbound.get_by_id(row.reply).recipient == CORPUS[0]["sender"]
    finally:
        h.close()


def test_concatenated_parts_get_one_reply(tmp_path: Path) -> None:
    h = Harness(tmp_path)
    try:
        parts = [c for c in CORPUS if c["name"].startswith("concat16_ucs2")]
        h.feed(parts[1]["pdu"], modem="sim0")  # the second part first
        assert Inbound.get(Inbound.modem == "sim0").status == "part"
        h.feed(parts[0]["pdu"], modem="sim0")
        rows = list(Inbound.select().where(Inbound.modem == "sim0"))
        assert [r.status for r in rows] == ["answered", "answered"]
        assert len({r.reply for r in rows}) == 1
        assert Outbound.select().count() == 1
    finally:
        h.close()


# --- the Pakistani corpus ----------------------------------------------------------------

@pytest.mark.parametrize("case", CORPUS, ids=[c["name"] for c in CORPUS])
def test_pk_corpus_decodes(case: dict[str, Any]) -> None:
    d = pdu.decode(case["pdu"])
    assert isinstance(d, pdu.Deliver)
    assert (d.sender, d.sender_type) == (case["sender"], case["sender_type"])
    assert d.text == case["text"]
    assert (d.dcs, d.encoding) == (case["dcs"], case["encoding"])
    assert d.smsc == case["smsc"]
    assert d.timestamp is not None and d.timestamp.isoformat() == case["timestamp"]
    got = [d.concat.reference, d.concat.total, d.concat.seq, d.concat.bits] if d.concat else None
    assert got == case["concat"]


def test_pk_corpus_parts_join() -> None:
    messages: dict[str, list[dict[str, Any]]] = {}
    for case in CORPUS:
        if case["message"] is not None:
            messages.setdefault(case["name"].rsplit("_part", 1)[0], []).append(case)
    assert len(messages) == 3  # 8-bit UCS-2, 16-bit UCS-2, 8-bit GSM-7
    for cases in messages.values():
        parts = [pdu.decode(c["pdu"]) for c in reversed(cases)]  # out of order on purpose
        assert pdu.join_parts(parts).text == cases[0]["message"]


def test_pk_corpus_covers_the_issue() -> None:
    kinds = {(c["sender_type"], c["encoding"]) for c in CORPUS}
    assert ("alphanumeric", "gsm7") in kinds and ("national", "ucs2") in kinds
    assert {c["concat"][3] for c in CORPUS if c["concat"]} == {8, 16}
    assert {0x08, 0x18, 0xF1, 0x48, 0xF5} <= {c["dcs"] for c in CORPUS}
    assert {"hand", "sim", "sim+dcs"} == {c["how"] for c in CORPUS}
