"""Build tests/data/pdu_pk/corpus.json and README.md: Pakistani SMS-DELIVER PDUs.

The expected values are written here from the specification, and the PDUs are produced
WITHOUT the appliance's own codec (``appliance/modem/pdu*.py``) or ``gsmmodem.pdu``:

* ``sim``: ``appliance/simulator/pdu.py``, the simulator's encoder, written separately
  from TS 23.040 so that it can judge our decoder instead of sharing its mistakes;
* ``sim+dcs``: the same, with the TP-DCS octet then changed by hand to an odd value whose
  alphabet is unchanged (class 0 "flash", class 1, the automatic-deletion group), so the
  user data stays valid while the DCS is one a real handset or SMSC sends;
* ``hand``: octets assembled field by field below, from TS 23.040 §9.2.2.1.

The corpus is fixed data: run this again only to add cases (``python
tests/data/pdu_pk/build_corpus.py``), and review the diff of corpus.json.
"""

from __future__ import annotations

import json
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parents[2]))

from appliance.simulator import pdu as sim_pdu  # noqa: E402  (after the path set-up)

SMSC = "+923000000099"
SMSC_HEX = "07" "91" "290300000099"          # TS 24.011 §8.2.5.1: length 7, international
TIMESTAMP = datetime(2025, 3, 14, 9, 26, 53, tzinfo=sim_pdu.PAKISTAN)
SCTS_HEX = "52304190623502"                  # §9.2.3.11: 25-03-14 09:26:53, +20 quarters
TIME_ISO = TIMESTAMP.isoformat()

URDU_QUESTION = "براہ کرم اس شناختی کارڈ کی تصدیق کریں ۳۵۲۰۲-۱۲۳۴۵۶۷-۱"
URDU_LONG = ("السلام علیکم، میں اپنے محلے میں ایک نئے کرایہ دار کے بارے میں جاننا چاہتی ہوں۔ "
             "اس کا شناختی کارڈ نمبر ۴۲۱۰۱-۷۶۵۴۳۲۱-۲ ہے۔ شکریہ")
ENGLISH_LONG = ("Assalam o Alaikum. Please check CNIC 61101-1234567-8 for me, he is our new "
                "driver and my children travel with him every day to school and back home. "
                "Is he safe? Jazakallah.")

cases: list[dict[str, Any]] = []


def add(name: str, how: str, pdu: str, sender: str, sender_type: str, text: str, dcs: int,
        encoding: str, note: str, concat: tuple[int, int, int, int] | None = None,
        message: str | None = None) -> None:
    cases.append({"name": name, "how": how, "pdu": pdu, "sender": sender,
                  "sender_type": sender_type, "text": text, "dcs": dcs, "encoding": encoding,
                  "timestamp": TIME_ISO, "smsc": SMSC,
                  "concat": list(concat) if concat else None, "message": message,
                  "note": note})


def sim(sender: str, text: str, **kw: Any) -> list[sim_pdu.EncodedPdu]:
    return sim_pdu.encode_deliver(sender, text, smsc=SMSC, timestamp=TIMESTAMP, **kw)


def with_dcs(pdu: str, dcs: int) -> str:
    """Replace TP-DCS: after the SMSC, the first octet, TP-OA (2 + ceil(digits/2)), TP-PID."""
    raw = bytearray.fromhex(pdu)
    at = 1 + raw[0] + 1
    at += 2 + (raw[at] + 1) // 2 + 1
    raw[at] = dcs
    return raw.hex().upper()


def ucs2(text: str) -> str:
    return text.encode("utf-16-be").hex().upper()


# --- numeric senders --------------------------------------------------------------------
p = sim("+923001234567", URDU_QUESTION)[0]
add("urdu_ucs2_international", "sim", p.pdu, "+923001234567", "international", URDU_QUESTION,
    0x08, "ucs2", "Urdu UCS-2 question with an Extended Arabic-Indic CNIC, +92 sender")

p = sim("03451234567", "35202-1234567-1")[0]
add("national_digits_unknown_ton", "sim", p.pdu, "+923451234567", "unknown", "35202-1234567-1",
    0x00, "gsm7", "03xx sender sent as TON unknown (0x81) with the trunk 0, GSM-7 CNIC")

text = "۶۱۱۰۱۱۲۳۴۵۶۷۸"
pdu = (SMSC_HEX + "04" + "0A" + "A1" + "0310325476" + "00" + "08" + SCTS_HEX
       + f"{2 * len(text):02X}" + ucs2(text))
add("national_ton_without_trunk", "hand", pdu, "+923001234567", "national", text, 0x08, "ucs2",
    "TON national (0xA1), 3001234567 without trunk prefix (E.164 national significant "
    "number); CNIC in Extended Arabic-Indic digits")

text = "hellohello"
pdu = (SMSC_HEX + "04" + "0B" + "A1" + "3000214365F7" + "00" + "00" + SCTS_HEX + "0A"
       + "E8329BFD4697D9EC37")
add("national_ton_with_trunk", "hand", pdu, "+923001234567", "national", text, 0x00, "gsm7",
    "TON national (0xA1) written with its trunk 0 (03001234567), as some SMSCs do; "
    "user data is the TS 23.038 packing example 'hellohello'")

text = "\u200f۳۵۲۰۲\u2010۱۲۳۴۵۶۷\u2010۱\u200f"
p = sim("+923331234567", text)[0]
add("urdu_digits_bidi_marks", "sim", p.pdu, "+923331234567", "international", text, 0x08,
    "ucs2", "CNIC typed on an Urdu keyboard: RLM marks and U+2010 hyphens around the digits")

p = sim("+971501234567", "CNIC 35202-1234567-1 please")[0]
add("overseas_international", "sim", p.pdu, "+971501234567", "international",
    "CNIC 35202-1234567-1 please", 0x00, "gsm7", "an overseas Pakistani in the UAE")

p = sim("8558", "Apka balance Rs. 12.50 hai. [Jazz] Offer: 50 SMS €1")[0]
add("short_code_sender", "sim", p.pdu, "8558", "short",
    "Apka balance Rs. 12.50 hai. [Jazz] Offer: 50 SMS €1", 0x00, "gsm7",
    "an operator short code; GSM-7 escapes for [ ] and €")

text = "شکریہ 🙏"
p = sim("+923211234567", text)[0]
add("emoji_surrogate_pair", "sim", p.pdu, "+923211234567", "international", text, 0x08, "ucs2",
    "UCS-2 with an emoji outside the BMP (a UTF-16 surrogate pair)")

# --- operator alphanumerics (TON 101, GSM 7-bit packed address, TS 23.040 §9.1.2.5) ------
for name, body in (("Jazz", "Jazz Super Card: 3000 MB aur 1000 minutes sirf Rs. 1000"),
                   ("Zong", "زونگ: آپ کا بیلنس ۵۰ روپے ہے"),
                   ("Telenor", "Telenor: Apki daily offer activate ho gayi hai"),
                   ("Ufone", "Ufone: Ap ka bundle khatam ho gaya"),
                   ("JazzCash", "Rs. 500 received. TID 0123456789012")):
    p = sim(name, body)[0]
    enc = "gsm7" if sim_pdu.gsm7.is_gsm7(body) else "ucs2"
    add(f"alphanumeric_{name.lower()}", "sim", p.pdu, name, "alphanumeric", body,
        0x00 if enc == "gsm7" else 0x08, enc, f"operator alphanumeric sender {name!r}")

# --- concatenated (TS 23.040 §9.2.3.24.1 8-bit and §9.2.3.24.8 16-bit references) ---------
for bits, ref, text, sender in ((8, 0xA7, URDU_LONG, "+923001234567"),
                                (16, 0x1F2E, URDU_LONG, "+923451234567"),
                                (8, 0x05, ENGLISH_LONG, "+923331234567")):
    parts = sim(sender, text, reference=ref, ref16=bits == 16)
    assert len(parts) >= 2, "the long texts must need two parts"
    enc = "ucs2" if text is URDU_LONG else "gsm7"
    group = f"concat{bits}_{enc}_{ref:x}"
    for part in parts:
        assert part.concat is not None
        add(f"{group}_part{part.concat.seq}", "sim", part.pdu, sender, "international",
            part.text, 0x08 if enc == "ucs2" else 0x00, enc,
            f"part {part.concat.seq}/{part.concat.total}, {bits}-bit reference {ref:#x}",
            concat=(ref, part.concat.total, part.concat.seq, bits), message=text)

# --- odd data coding schemes (TS 23.038 §4) ----------------------------------------------
p = sim("+923001234567", "۳۵۲۰۲۱۲۳۴۵۶۷۱")[0]
for dcs, why in ((0x18, "class 0 (flash) UCS-2: general group, class bits meaningful"),
                 (0x19, "class 1 UCS-2"),
                 (0x48, "automatic-deletion group 01xx, UCS-2")):
    add(f"dcs_{dcs:02x}_ucs2", "sim+dcs", with_dcs(p.pdu, dcs), "+923001234567", "international",
        "۳۵۲۰۲۱۲۳۴۵۶۷۱", dcs, "ucs2", why)
p = sim("+923001234567", "3520212345671")[0]
for dcs, why in ((0xF1, "data coding/message class group 1111, GSM-7, class 1"),
                 (0x11, "general group, class 1, GSM-7"),
                 (0xF0, "data coding/message class group 1111, GSM-7, class 0 (flash)")):
    add(f"dcs_{dcs:02x}_gsm7", "sim+dcs", with_dcs(p.pdu, dcs), "+923001234567", "international",
        "3520212345671", dcs, "gsm7", why)

body = bytes([0x00, 0x01, 0x33, 0x35, 0xC8, 0xFF])
pdu = (SMSC_HEX + "04" + "0C" + "91" + "290310325476" + "00" + "F5" + SCTS_HEX
       + f"{len(body):02X}" + body.hex().upper())
add("dcs_f5_8bit", "hand", pdu, "+923001234567", "international", body.decode("latin-1"), 0xF5,
    "8bit", "8-bit data, class 1 (group 1111, bit 2 set): text is the octets as latin-1")


def readme() -> str:
    lines = [
        "# Pakistani SMS-DELIVER corpus",
        "",
        "Built by `build_corpus.py` with encoders other than the appliance's own "
        "(`appliance/simulator/pdu.py`, written separately from TS 23.040, and hand-assembled "
        "octets); `corpus.json` holds every PDU with the values our decoder must produce. "
        "`tests/test_fuzz_inbound.py` decodes each with `appliance.modem.pdu.decode` and also "
        "mutates them for the inbound fuzz run. All numbers and CNICs are made up.",
        "",
        f"Common to all: SMSC `{SMSC}`, time stamp `{TIME_ISO}` (TP-SCTS zone +20 quarters).",
        "",
        "| name | built | expected sender | type | DCS | expected text | note |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in cases:
        shown = json.dumps(c["text"], ensure_ascii=False)[1:-1].replace("|", "\\|")
        if len(shown) > 60:
            shown = shown[:57] + "..."
        lines.append(f"| {c['name']} | {c['how']} | `{c['sender']}` | {c['sender_type']} | "
                     f"0x{c['dcs']:02X} | {shown} | {c['note']} |")
    lines.append("")
    return "\n".join(lines)


if __name__ == "__main__":
    (HERE / "corpus.json").write_text(json.dumps(cases, ensure_ascii=False, indent=1) + "\n",
                                      encoding="utf-8")
    (HERE / "README.md").write_text(readme(), encoding="utf-8")
    print(f"{len(cases)} cases written to {HERE}")
