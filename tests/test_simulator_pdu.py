"""The simulator's own SMS codec, checked against the specification and against two
decoders nobody here wrote (smspdudecoder, and gsmmodem.pdu used only as a reference)."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from gsmmodem.pdu import decodeSmsPdu, encodeSmsSubmitPdu
from hypothesis import given, settings
from hypothesis import strategies as st
from smspdudecoder.easy import read_incoming_sms, read_outgoing_sms

from appliance.errors import PduError
from appliance.simulator import gsm7
from appliance.simulator import pdu as sim_pdu

URDU = ("خبردار! احمد ولد محمود سزا یافتہ مجرم ہے۔ اسے بچوں اور خواتین کے قریب نہ آنے دیں۔ "
        "خبردار! اکرم ولد اسلم سزا یافتہ مجرم ہے۔")
WHEN = datetime(2025, 11, 22, 14, 30, 5, tzinfo=sim_pdu.PAKISTAN)
SMSC = "+923000000092"


def deliver(text: str, sender: str = "+923001234567", **kw: object) -> list[sim_pdu.EncodedPdu]:
    return sim_pdu.encode_deliver(sender, text, smsc=SMSC, timestamp=WHEN, **kw)


def test_gsm7_packing_matches_the_spec_example() -> None:
    # TS 23.038 §6.1.2.1.1 packing; vector shared with smspdudecoder's documentation.
    assert gsm7.pack_septets(gsm7.encode_septets("How are you?")).hex().upper() == \
        "C8F71D14969741F977FD07"
    assert gsm7.encode_septets("€[") == [0x1B, 0x65, 0x1B, 0x3C]
    assert gsm7.decode_septets([0x1B, 0x65, 0x1B, 0x41, 0x1B]) == "€A"  # unknown escape → base
    assert not gsm7.is_gsm7("سلام") and gsm7.is_gsm7("Ça coûte 5€? {ok}") is False
    assert gsm7.is_gsm7("Ça va? 5€ {ok}")


def test_concatenated_urdu_deliver_decoded_by_smspdudecoder() -> None:
    parts = deliver(URDU, reference=0x42)
    assert len(parts) == 2
    decoded = [read_incoming_sms(p.pdu) for p in parts]
    assert all(d["sender"] == "+923001234567" for d in decoded)
    assert [d["partial"]["part_number"] for d in decoded] == [1, 2]
    assert {d["partial"]["reference"] for d in decoded} == {"66-2"}
    assert "".join(d["content"] for d in decoded) == URDU
    assert decoded[0]["date"] == WHEN
    for part in parts:  # the length AT+CMGR reports excludes the SMSC octets
        assert part.tpdu_length == len(part.pdu) // 2 - 1 - int(part.pdu[:2], 16)


def test_sixteen_bit_references_and_gsm7_fill_bits() -> None:
    text = "Reply [CNIC] with € " * 12
    parts = deliver(text, reference=0x1234, ref16=True)
    decoded = [read_incoming_sms(p.pdu) for p in parts]
    assert "".join(d["content"] for d in decoded) == text
    assert all(p.concat and p.concat.ref16 and p.concat.reference == 0x1234 for p in parts)
    assert sim_pdu.decode_deliver(parts[0].pdu).user_data.udh[:2] == b"\x08\x04"


def test_split_never_breaks_escapes_or_surrogate_pairs() -> None:
    gsm = "a" * 152 + "€" + "b" * 10  # € would straddle septets 153/154
    assert [len(p) for p in sim_pdu.split_text(gsm, "gsm7")] == [152, 11]
    ucs = "ا" * 66 + "😀" + "ب" * 5  # 73 UTF-16 units: two parts; the pair would straddle 67
    assert sim_pdu.split_text(ucs, "ucs2") == ["ا" * 66, "😀" + "ب" * 5]
    parts = deliver(ucs)
    assert [sim_pdu.decode_deliver(p.pdu).user_data.text for p in parts] == \
        ["ا" * 66, "😀" + "ب" * 5]


def test_alphanumeric_sender_and_timestamps() -> None:
    (part,) = deliver("Balance low", sender="Jazz")
    assert read_incoming_sms(part.pdu)["sender"] == "Jazz"
    assert sim_pdu.decode_deliver(part.pdu).sender == "Jazz"
    west = datetime(2024, 2, 29, 23, 59, 59, tzinfo=timezone(-timedelta(hours=3, minutes=45)))
    assert sim_pdu.decode_timestamp(sim_pdu.encode_timestamp(west)) == west


def test_status_report_decoded_by_reference_decoder() -> None:
    report = sim_pdu.encode_status_report(smsc=SMSC, mr=77, recipient="+923001234567",
                                          submitted=WHEN, discharged=WHEN)
    decoded = decodeSmsPdu(report.pdu)
    assert decoded["type"] == "SMS-STATUS-REPORT"
    assert (decoded["reference"], decoded["number"], decoded["status"]) == \
        (77, "+923001234567", 0)
    assert report.tpdu_length == 1 + 1 + 8 + 7 + 7 + 1


def test_submit_decoder_keeps_surrogate_pairs() -> None:
    body = "ok 😀".encode("utf-16-be")  # gsmmodem.pdu cannot encode this (docs/field-notes.md B13)
    pdu = "0001000C9129031032547600" "08" + f"{len(body):02X}" + body.hex().upper()
    assert sim_pdu.decode_submit(pdu).text == "ok 😀"


@pytest.mark.parametrize("text", ["Beware! ABC s/o XYZ {x}", URDU])
def test_submit_decoder_agrees_with_independent_encoders(text: str) -> None:
    pdus = encodeSmsSubmitPdu("+923001234567", text, reference=9, requestStatusReport=True,
                              validity=timedelta(days=1))
    submits = [sim_pdu.decode_submit(str(p)) for p in pdus]
    assert sim_pdu.join_texts([s.text for s in submits]) == text
    assert all(s.recipient == "+923001234567" and s.status_report for s in submits)
    assert all(s.tpdu_length == p.tpduLength for s, p in zip(submits, pdus, strict=True))
    assert len(submits[0].validity) == 1  # relative TP-VP
    for pdu, submitted in zip(pdus, submits, strict=True):
        assert read_outgoing_sms(str(pdu))["recipient"] == submitted.recipient
    if len(submits) > 1:
        assert [s.concat.seq for s in submits if s.concat] == list(range(1, len(submits) + 1))


@pytest.mark.parametrize("pdu, why", [  # first octet 0x01/0x41: SMS-SUBMIT without TP-VP
    ("0001000C912903103254760000" "05" "C8F71D14", "needs 5 octets"),  # 5 septets, 4 octets
    ("0001000C91290310325476", "ends inside"),
    ("zz", "not hexadecimal"),
    ("0004000C912903103254760000", "not SMS-SUBMIT"),
    ("0041000C912903103254760008" "08" "0500034203000041", "part 0 of 3"),
    ("0001000C912903103254760020" "01" "41", "compressed"),
])
def test_submit_decoder_is_strict(pdu: str, why: str) -> None:
    with pytest.raises(PduError, match=why) as info:
        sim_pdu.decode_submit(pdu)
    assert info.value.pdu == pdu


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet=st.characters(blacklist_categories=("Cs",)), min_size=1,
               max_size=400))
def test_deliver_round_trip(text: str) -> None:
    parts = deliver(text, reference=5)
    assert sim_pdu.join_texts([sim_pdu.decode_deliver(p.pdu).user_data.text
                               for p in parts]) == text
    for part in parts:
        assert part.tpdu_length <= 1 + 12 + 1 + 1 + 7 + 1 + 140
