"""Real phones' AT+CMGR answers (tests/data/gammu-at-sms, from Gammu's test suite).

ok/: every PDU decodes, with the sender/recipient and text checked below (read by hand
and, for plain DCS-00 messages, confirmed with smspdudecoder). failing/: every PDU is a
PduError that keeps the raw PDU — none of them decodes under sane rules, the reason for
each is recorded in FAILING.

Two facts the corpus taught:

* Ten "ok" dumps are SMS-SUBMITs, a phone's stored outgoing messages. ``decode()``
  refuses them on purpose (PduError: an outgoing copy is not a question to answer, the
  engine quarantines it) and ``decode_submit()`` reads them.
* Numbers written nationally by a foreign phone (ok/19 "066460353302", Austrian) come out
  as Pakistani (+92…): the unit reads a national number as its own country's, which is
  what TON "national" means for a Pakistani SIM.
"""

from __future__ import annotations

from datetime import datetime
from io import StringIO
from pathlib import Path

import pytest
from smspdudecoder.fields import SMSDeliver

from appliance.errors import PduError
from appliance.modem.pdu import Concat, Deliver, StatusReport, decode, decode_submit

DATA = Path(__file__).parent / "data" / "gammu-at-sms"


def pdu_of(dump: Path) -> str:
    """The PDU line: the one after the ``+CMGR:`` header."""
    lines = [line.strip() for line in dump.read_text("latin-1").splitlines() if line.strip()]
    header = next(i for i, line in enumerate(lines) if line.startswith("+CMGR:"))
    return lines[header + 1]


class Starts(str):
    """Expected text that is only the beginning of the message."""


# name: (kind, party, text, encoding); kind D deliver, S submit, R status report
OK: dict[str, tuple[str, str, str | None, str | None]] = {
    "02": ("S", "+639193770523", "May salary na ba?", "gsm7"),
    "03": ("D", "+919884280026", "Ok sir", "gsm7"),
    "04": ("D", "O2_", Starts("O2: You now have your Text Anytime 300 UK texts"), "gsm7"),
    "05": ("S", "3200", "Pontos", "gsm7"),
    "06": ("D", "5036710", Starts("For your ease to browse content"), "gsm7"),
    "07": ("D", "+358456709855", "Test", "gsm7"),
    "08": ("D", "+32478746863", "TEST -@@-", "gsm7"),
    "09": ("D", "27838890001", "hellohello", "gsm7"),
    "10": ("D", "+32478746863", "Tèätrc @ £.", "gsm7"),
    "11": ("D", "+32478746863", "T:Philipa@joshua.heron.net s:test mail.#Just hoping...",
           "gsm7"),
    "12": ("D", "+622291320408", "aa cakep deh", "gsm7"),
    # DCS 0xF9 is GSM-7 class 1 by TS 23.038 (bit 3 reserved); this phone stored UCS-2
    # text under it. We follow the spec (ok/42, a real DELIVER, proves 0xFB = GSM-7).
    "14": ("S", "+79168024812", None, "gsm7"),
    "15": ("S", "+79168024812", "Test", "gsm7"),
    "16": ("S", "1234", "123456", "ucs2"),
    "19": ("S", "+9266460353302", "Sample Gammu message", "gsm7"),
    "20": ("S", "366460353302", "", "gsm7"),
    "21": ("D", "+380972566788", "3", "gsm7"),
    "22": ("D", "+420724797276", Starts("Ahoj pavle, tak me vcera nikdo neokradl"), "gsm7"),
    "23": ("D", "+447970011182", "", "gsm7"),
    "24": ("S", "3381449402", "inserisci qui il messaggio....", "gsm7"),
    "26": ("D", "+351916165705", "", "8bit"),
    "27": ("D", "+351965853713", Starts("Espero que tenhas tido um Natal em grande"), "gsm7"),
    "28": ("S", "+14168777438", "nu-i nimic. Numai incerc sa vad de primesc errori.",
           "gsm7"),
    "29": ("S", "+92630561651", "mon texte d'essai", "gsm7"),
    "30": ("R", "+666666666666", None, None),
    "31": ("S", "", "15:41 22/08/08       szczesliwy. ", "gsm7"),
    "32": ("R", "604865888", None, None),
    "33": ("D", "+9233707520030", None, "8bit"),
    "34": ("R", "+61439012244", None, None),
    "36": ("R", "+6285717373455", None, None),
    "37": ("D", "+447732482432", Starts("Helen's parents are down tomorrow."), "gsm7"),
    "38": ("R", "602396602", None, None),
    "39": ("D", "9494", "llamada perdida de: +34617653167 on 07/08  at  11:19.", "gsm7"),
    "40": ("D", "+11476124010", None, "8bit"),
    # Cut short by the phone (TP-UDL 93 septets, 79 octets present): read, marked '…'.
    "41": ("S", "77777777777", "MBOXUPDATE?m=15;server=natashenka.party;port=993;"
           "pw=liUfOyVO;name=n@natashenka.par\u2026", "gsm7"),
    "42": ("D", "+94774705017", "1917812300     22:30   RATTHI", "gsm7"),
}

FAILING = {
    "01": "SMS-SUBMIT",            # and as a submit its TP-DA claims 129 digits
    "13": "hex",                   # '=' and 'p' inside the hex
    "17": "hex",
    "18": "SMSC address length",   # 12 octets: longer than any address
    "25": "reserved TP-MTI",       # first octet 0xFF after an 11-octet SMSC
    "33": "reserved TP-MTI",       # an erased SIM record: all 0xFF
    "35": "compressed",            # DCS 0x39 (TS 23.042 compression)
    "38": "SMSC address length",   # no SMSC prefix at all
    "39": "SMSC address length",
    "40": "TP-OA length",          # a WAP push body without its header
}


def test_corpus_is_complete() -> None:
    assert sorted(p.stem for p in (DATA / "ok").glob("*.dump")) == sorted(OK)
    assert sorted(p.stem for p in (DATA / "failing").glob("*.dump")) == sorted(FAILING)
    assert (DATA / "README.md").is_file()


def check_text(actual: str, expected: str | None) -> None:
    if isinstance(expected, Starts):
        assert actual.startswith(expected)
    elif expected is not None:
        assert actual == expected


@pytest.mark.parametrize("name", sorted(OK))
def test_ok_dump_decodes(name: str) -> None:
    kind, party, text, encoding = OK[name]
    pdu = pdu_of(DATA / "ok" / f"{name}.dump")
    if kind == "S":
        with pytest.raises(PduError, match="SMS-SUBMIT") as caught:
            decode(pdu)
        assert caught.value.pdu == pdu
        submit = decode_submit(pdu)
        assert (submit.recipient, submit.encoding) == (party, encoding)
        check_text(submit.text, text)
        return
    msg = decode(pdu)
    if kind == "R":
        assert isinstance(msg, StatusReport)
        assert msg.recipient == party and msg.status == 0 and msg.delivered and msg.final
        assert isinstance(msg.timestamp, datetime) and isinstance(msg.discharge, datetime)
        return
    assert isinstance(msg, Deliver)
    assert (msg.sender, msg.encoding) == (party, encoding)
    check_text(msg.text, text)
    msg.text.encode("utf-8")
    assert msg.timestamp is not None and msg.timestamp.tzinfo is not None
    if msg.dcs == 0 and msg.udh is None:
        theirs = SMSDeliver.decode(StringIO(pdu.strip('"')))
        assert theirs["user_data"]["data"] == msg.text


def test_ok_dump_details() -> None:
    def deliver(name: str) -> Deliver:
        msg = decode(pdu_of(DATA / "ok" / f"{name}.dump"))
        assert isinstance(msg, Deliver)
        return msg
    assert deliver("04").sender_type == "alphanumeric"
    stamp = deliver("09").timestamp
    assert stamp is not None and stamp.year == 1999
    assert deliver("22").concat == Concat(reference=1, total=2, seq=1, bits=8)
    picture = deliver("26").udh
    assert picture is not None and picture[0] == 0x12  # EMS variable picture IE
    assert deliver("33").udh == bytes.fromhex("05040B8423F0")  # WAP push, port 2948
    assert deliver("33").sender_type == "national"
    assert deliver("39").sender_type == "short"
    assert deliver("42").dcs == 0xFB
    report = decode(pdu_of(DATA / "ok" / "30.dump"))
    assert isinstance(report, StatusReport) and report.reference == 0xE8


@pytest.mark.parametrize("name", sorted(FAILING))
def test_failing_dump_is_a_pdu_error(name: str) -> None:
    pdu = pdu_of(DATA / "failing" / f"{name}.dump")
    with pytest.raises(PduError, match=FAILING[name]) as caught:
        decode(pdu)
    assert caught.value.pdu == pdu
    with pytest.raises(PduError):
        decode_submit(pdu)
