"""Inbound PDUs: DCS groups, status reports, senders, surrogates, and one error type."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from gsmmodem.pdu import decodeSmsPdu

from appliance.errors import PduError
from appliance.modem.pdu import (
    Concat, Deliver, StatusReport, decode, decode_submit,
    join_parts, normalise_dcs, pdu_hash,
)
from appliance.modem.pdu_submit import encode_user_data
from tests.pdu_support import deliver_pdus, status_report_pdu

PKT = timezone(timedelta(hours=5))
STAMP = datetime(2024, 5, 1, 10, 0, 0, tzinfo=PKT)
SENDER = "0C91290310325476"  # +923001234567, TOA international
SCTS = "42501001000002"      # 2024-05-01 10:00:00 +05:00


def deliver_pdu(dcs: int, ud: str, udl: int, *, first: int = 0x04, sender: str = SENDER,
                scts: str = SCTS) -> str:
    """SMSC 00 + SMS-DELIVER header + the given TP-UDL and TP-UD (hex)."""
    return f"00{first:02X}{sender}00{dcs:02X}{scts}{udl:02X}{ud}"


def as_deliver(pdu: str) -> Deliver:
    msg = decode(pdu)
    assert isinstance(msg, Deliver)
    return msg


@pytest.mark.parametrize("dcs, encoding", [
    (0x00, "gsm7"), (0x04, "8bit"), (0x08, "ucs2"), (0x0C, "gsm7"), (0x10, "gsm7"),
    (0x11, "gsm7"), (0x16, "8bit"), (0x18, "ucs2"), (0x40, "gsm7"), (0x44, "8bit"),
    (0x48, "ucs2"), (0x80, "gsm7"), (0xB8, "gsm7"), (0xC0, "gsm7"), (0xC8, "gsm7"),
    (0xD0, "gsm7"), (0xE0, "ucs2"), (0xE8, "ucs2"), (0xF0, "gsm7"), (0xF1, "gsm7"),
    (0xF4, "8bit"), (0xF5, "8bit"), (0xF6, "8bit"), (0xF9, "gsm7"), (0xFB, "gsm7"),
])
def test_dcs_groups(dcs: int, encoding: str) -> None:
    assert normalise_dcs(dcs) == encoding


@pytest.mark.parametrize("dcs", [0x20, 0x24, 0x28, 0x39, 0x60, 0x6C, 0x7F])
def test_compressed_text_is_a_pdu_error(dcs: int) -> None:
    with pytest.raises(PduError, match="compressed"):
        normalise_dcs(dcs)
    pdu = deliver_pdu(dcs, "D4F29C0E", 4)
    with pytest.raises(PduError) as caught:
        decode(pdu)
    assert caught.value.pdu == pdu


@pytest.mark.parametrize("dcs, ud, udl, text, encoding", [
    (0x48, "0633064406270645", 8, "سلام", "ucs2"),            # auto-delete group, UCS-2
    (0xE8, "0633064406270645", 8, "سلام", "ucs2"),            # message waiting, UCS-2
    (0xF5, "0102414243", 5, "\x01\x02ABC", "8bit"),            # class 1 binary
    (0xF4, "FF00", 2, "\xff\x00", "8bit"),
    (0xF1, "D4F29C0E", 4, "Test", "gsm7"),
    (0xC0, "D4F29C0E", 4, "Test", "gsm7"),
    (0x90, "D4F29C0E", 4, "Test", "gsm7"),                     # reserved group
    (0x08, "D83DDE000020006F006B", 10, "\U0001F600 ok", "ucs2"),
])
def test_decode_dcs_variants(dcs: int, ud: str, udl: int, text: str, encoding: str) -> None:
    msg = as_deliver(deliver_pdu(dcs, ud, udl))
    assert (msg.text, msg.encoding, msg.dcs) == (text, encoding, dcs)
    assert msg.sender == "+923001234567" and msg.sender_type == "international"
    assert msg.timestamp == STAMP
    if encoding == "8bit":
        assert msg.text.encode("latin-1") == bytes.fromhex(ud)


def test_gsmmodem_decoder_garbles_what_we_read() -> None:
    """Why decode() does not call decodeSmsPdu (docs/field-notes.md B12, B13)."""
    assert decodeSmsPdu(deliver_pdu(0x48, "0633064406270645", 8))["text"] != "سلام"
    assert decodeSmsPdu(deliver_pdu(0xF5, "0102414243", 5))["text"] != "\x01\x02ABC"
    assert decodeSmsPdu(deliver_pdu(0x08, "D83DDE00", 4))["text"] == "\ud83d\ude00"
    with pytest.raises(ValueError):
        decodeSmsPdu(deliver_pdu(0x00, "D4F29C0E", 4, scts="42AB1001000002"))
    (at_end,) = deliver_pdus("+923001234567", "1234567@", timestamp=STAMP)
    assert decodeSmsPdu(at_end)["text"] == "1234567"  # the final '@' is lost
    assert as_deliver(at_end).text == "1234567@"


def test_malformed_time_stamp_still_gives_the_message() -> None:
    msg = as_deliver(deliver_pdu(0x00, "D4F29C0E", 4, scts="42AB1001000002"))
    assert msg.text == "Test" and msg.timestamp is None


def test_negative_time_zone() -> None:
    msg = as_deliver(deliver_pdu(0x00, "D4F29C0E", 4, scts="3130523210658A"))
    assert msg.timestamp == datetime(2013, 3, 25, 23, 1, 56,
                                     tzinfo=timezone(timedelta(hours=-7)))


@pytest.mark.parametrize("sender, normal, kind", [
    ("JAZZ", "JAZZ", "alphanumeric"),
    ("Telenor-PK", "Telenor-PK", "alphanumeric"),
    ("+923001234567", "+923001234567", "international"),
    ("8008", "8008", "short"),
])
def test_senders(sender: str, normal: str, kind: str) -> None:
    (pdu,) = deliver_pdus(sender, "hi", timestamp=STAMP)
    msg = as_deliver(pdu)
    assert (msg.sender, msg.sender_type) == (normal, kind)


@pytest.mark.parametrize("address, normal, kind", [
    ("0AA1" + "0310325476", "+923001234567", "national"),   # national, no trunk 0
    ("0BA1" + "3000214365F7", "+923001234567", "national"),  # national with trunk 0
    ("0B81" + "3000214365F7", "+923001234567", "unknown"),
    ("04A1" + "4949", "9494", "short"),
    ("04B1" + "4949", "9494", "short"),                      # network specific
])
def test_numeric_senders_are_normalised(address: str, normal: str, kind: str) -> None:
    msg = as_deliver(deliver_pdu(0x00, "D4F29C0E", 4, sender=address))
    assert (msg.sender, msg.sender_type) == (normal, kind)


@pytest.mark.parametrize("status, delivered, final", [
    (0x00, True, True), (0x01, True, True), (0x02, True, True), (0x20, False, False),
    (0x30, False, False), (0x3F, False, False), (0x40, False, True), (0x45, False, True),
    (0x60, False, True), (0x65, False, True), (0x80, False, True),
])
def test_status_reports(status: int, delivered: bool, final: bool) -> None:
    later = STAMP + timedelta(seconds=42)
    pdu = status_report_pdu(0x2A, "+923001234567", status, timestamp=STAMP,
                               discharge=later, smsc="+923000000001")
    report = decode(pdu)
    assert isinstance(report, StatusReport)
    assert (report.reference, report.recipient, report.status) == (0x2A, "+923001234567",
                                                                   status)
    assert (report.delivered, report.final) == (delivered, final)
    assert (report.timestamp, report.discharge, report.pdu) == (STAMP, later, pdu)


def test_status_report_padding_is_ignored() -> None:
    pdu = status_report_pdu(7, "+923001234567", 0, timestamp=STAMP, discharge=STAMP)
    report = decode(pdu + "FF" * 20)
    assert isinstance(report, StatusReport) and report.reference == 7


def test_without_smsc_prefix() -> None:
    (pdu,) = deliver_pdus("+923001234567", "Test", timestamp=STAMP, smsc="+923000000001")
    with_prefix = as_deliver(pdu)
    bare = decode(pdu[16:], smsc_included=False)
    assert isinstance(bare, Deliver)
    assert with_prefix.smsc == "+923000000001" and bare.smsc is None
    assert bare.text == with_prefix.text == "Test"


def test_trailing_padding_is_not_text() -> None:
    (pdu,) = deliver_pdus("+923001234567", "1234567@", timestamp=STAMP)
    assert as_deliver(pdu).text == "1234567@"
    assert as_deliver(pdu + "FFFFFFFF").text == "1234567@"


def test_truncated_user_data_is_marked_not_dropped() -> None:
    (pdu,) = deliver_pdus("+923001234567", "35202-1234567-1 please", timestamp=STAMP)
    msg = as_deliver(pdu[:-6])
    assert msg.text.endswith("\u2026") and msg.text.startswith("35202-1234567")
    assert len(msg.text) < len("35202-1234567-1 please") + 1


def test_header_cut_short_is_an_error() -> None:
    pdu = deliver_pdu(0x08, "0500030102", 20, first=0x44)
    with pytest.raises(PduError) as caught:
        decode(pdu)
    assert caught.value.pdu == pdu


def test_concat_ie_rules() -> None:
    """TS 23.040 §9.2.3.24.1: total 0, seq 0 or seq > total → ignore the IE."""
    def concat_of(udh: str) -> Concat | None:
        body = udh + "0041"
        return as_deliver(deliver_pdu(0x08, body, len(body) // 2, first=0x44)).concat
    assert concat_of("050003070302") is not None
    assert concat_of("050003070002") is None
    assert concat_of("050003070300") is None
    assert concat_of("050003070204") is None
    wide = concat_of("06080412340201")
    assert wide is not None and (wide.reference, wide.bits) == (0x1234, 16)


def test_emoji_split_by_the_senders_phone_is_rejoined() -> None:
    part1 = "050003090201" + "0628" * 66 + "D83D"
    part2 = "050003090202" + "DE00" + "006F006B"
    first = as_deliver(deliver_pdu(0x08, part1, len(part1) // 2, first=0x44))
    second = as_deliver(deliver_pdu(0x08, part2, len(part2) // 2, first=0x44))
    assert first.text.endswith("\ufffd") and second.text.startswith("\ufffd")
    first.text.encode("utf-8")
    assert join_parts([second, first]).text == "ب" * 66 + "\U0001F600ok"


def test_escape_split_by_the_senders_phone_is_rejoined() -> None:
    udh1 = bytes.fromhex("050003080201")
    udh2 = bytes.fromhex("050003080202")
    ud1 = encode_user_data("gsm7", b"\x41" * 152 + b"\x1b", udh1)
    ud2 = encode_user_data("gsm7", b"\x65\x42", udh2)
    first = as_deliver(deliver_pdu(0x00, ud1[1:].hex(), ud1[0], first=0x44))
    second = as_deliver(deliver_pdu(0x00, ud2[1:].hex(), ud2[0], first=0x44))
    assert first.text == "A" * 152 + " "
    assert join_parts([first, second]).text == "A" * 152 + "€B"


@pytest.mark.parametrize("bad, why", [
    ("", "empty"),
    ("0", "hex"),
    ("ZZ", "hex"),
    ("00", "first octet"),
    ("0004", "TP-OA length"),
    ("0003", "reserved TP-MTI"),
    ("0001000C9129031032547600000548", "SMS-SUBMIT"),
    ("0CD0ABD9CC86CBC16034180C1616", "SMSC address length"),
    ("0004FF91", "TP-OA length 255"),
    (deliver_pdu(0x00, "", 0)[:-4], "TP-SCTS"),
])
def test_every_failure_is_a_pdu_error_keeping_the_pdu(bad: str, why: str) -> None:
    with pytest.raises(PduError, match=why) as caught:
        decode(bad)
    assert caught.value.pdu == bad


def test_non_string_input_is_a_pdu_error() -> None:
    with pytest.raises(PduError):
        decode(b"0004")  # type: ignore[arg-type]


def test_decode_accepts_lower_case_spaces_and_quotes() -> None:
    (pdu,) = deliver_pdus("+923001234567", "Test", timestamp=STAMP)
    for variant in (pdu.lower(), f' {pdu[:10]} {pdu[10:]}\r\n', f'"{pdu}"'):
        msg = as_deliver(variant)
        assert msg.text == "Test" and msg.pdu == pdu
        assert pdu_hash(variant) == pdu_hash(pdu)


def test_pdu_hash() -> None:
    (a,) = deliver_pdus("+923001234567", "Test", timestamp=STAMP)
    (b,) = deliver_pdus("+923001234567", "Tesu", timestamp=STAMP)
    assert pdu_hash(a) != pdu_hash(b)
    assert len(pdu_hash(a)) == 32 and int(pdu_hash(a), 16) >= 0
    assert pdu_hash(a) == pdu_hash(a)
    assert pdu_hash("not hex at all \udcff") != pdu_hash("")


def test_decode_refuses_submit_but_decode_submit_reads_it() -> None:
    pdu = "0001000C912903103254760000" + "04D4F29C0E"
    with pytest.raises(PduError, match="SMS-SUBMIT") as caught:
        decode(pdu)
    assert caught.value.pdu == pdu
    assert decode_submit(pdu).text == "Test"
    with pytest.raises(PduError, match="not an SMS-SUBMIT"):
        decode_submit(deliver_pdu(0x00, "D4F29C0E", 4))
