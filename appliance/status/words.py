"""The status page's words in English and Urdu (appliance/status/html.py).

The Urdu is plain technical Urdu as a technician in Pakistan reads it: English loanwords
written in Urdu script where that is the usual word (موڈیم، سگنل، بیلنس), digits left as
0-9 as on the unit's other screens and in SMS. Values that come from modems or the software
(operator names, error texts, ports) are not translated; the page isolates them.
"""

from __future__ import annotations

REFRESH_S = 10

_EN: dict[str, str] = {
    "title": "NSOR unit", "as_of": "as of", "version": "version",
    "refresh": f"refreshes every {REFRESH_S} s; read-only",
    "ok_title": "OK", "alarms_title": "{n} alarm(s)",
    "no_alarms": "No active alarms.", "alarms": "Alarms", "since": "on for {d}",
    "times": "{n}×",
    "replies_24h": "Replies, last 24 h", "queue_now": "Waiting now",
    "modems_ready": "Modems in service", "registry": "Registry",
    "charts": "Last 24 hours", "charts_note": "one point a minute; times in {tz}",
    "chart_replies": "Replies per minute, by verdict (10-minute average)",
    "chart_queue": "Replies waiting",
    "chart_signal": "Signal (rssi, 0–31; 10 and more is fine)", "time": "Time",
    "chart_balance": "SIM balance (Rs)",
    "no_data": "No data yet", "no_balance": "No balance checks yet (balance_ussd)",
    "no_js": "The charts need JavaScript; the figures below do not.",
    "modems": "Modems", "unit": "Unit",
    "state": "state", "signal": "signal", "operator": "operator", "queue": "queue",
    "sent_1h": "sent 1 h / cap", "sent_24h": "sent 24 h / cap", "sim": "SIM store",
    "balance": "balance", "last_error": "last error", "ago": "{d} ago",
    "sync": "sync", "disk": "disk", "uptime": "uptime", "never": "never",
    "reg_text": "{state}, version {version}, {records} records, age {age} (limit {limit})",
    "sync_ok": "last success {when}", "sync_bad": "{n} failed attempt(s) since; last: {err}",
    "queue_text": "{pending} waiting, {unassigned} for any modem",
    "splits": "{n} split across two SIMs (an orphan part on a phone)",
    "fleet": "fleet link", "fleet_up": "connected; {n} hit report(s) waiting",
    "fleet_down": "not connected for {d}; {n} hit report(s) waiting;",
    "disk_text": "{pct}% used, {free} free ({path})",
    "machine": "Machine-readable", "switch": "اردو",
    "d": "d", "h": "h", "min": "min", "s": "s", "unknown": "unknown",
    "none": "–",
}

_UR: dict[str, str] = {
    "title": "NSOR یونٹ", "as_of": "بوقت", "version": "ورژن",
    "refresh": f"یہ صفحہ ہر {REFRESH_S} سیکنڈ بعد خود تازہ ہوتا ہے؛ صرف دیکھنے کے لیے",
    "ok_title": "سب ٹھیک", "alarms_title": "{n} الارم",
    "no_alarms": "کوئی الارم نہیں۔", "alarms": "الارم", "since": "{d} سے جاری",
    "times": "{n} بار",
    "replies_24h": "جوابات، پچھلے 24 گھنٹے", "queue_now": "اس وقت منتظر",
    "modems_ready": "کام کرنے والے موڈیم", "registry": "رجسٹری",
    "charts": "پچھلے 24 گھنٹے", "charts_note": "ہر منٹ کا ایک نقطہ؛ وقت {tz} میں",
    "chart_replies": "فی منٹ جوابات، نتیجے کے لحاظ سے (10 منٹ کی اوسط)",
    "chart_queue": "منتظر جوابات",
    "chart_signal": "سگنل: 0 تا 31 (10 یا زیادہ ٹھیک ہے)", "time": "وقت",
    "chart_balance": "سم بیلنس (روپے)",
    "no_data": "ابھی کوئی ڈیٹا نہیں", "no_balance": "ابھی بیلنس چیک نہیں ہوا (balance_ussd)",
    "no_js": "چارٹ کے لیے جاوا اسکرپٹ درکار ہے؛ نیچے کے اعداد و شمار کے لیے نہیں۔",
    "modems": "موڈیم", "unit": "یونٹ",
    "state": "حالت", "signal": "سگنل", "operator": "آپریٹر", "queue": "قطار",
    "sent_1h": "ایک گھنٹے میں بھیجے / حد", "sent_24h": "24 گھنٹے میں بھیجے / حد",
    "sim": "سم میموری", "balance": "بیلنس", "last_error": "آخری خرابی", "ago": "{d} پہلے",
    "sync": "اپ ڈیٹ", "disk": "ڈسک", "uptime": "مسلسل چل رہا ہے", "never": "کبھی نہیں",
    "reg_text": "{state}، ورژن {version}، {records} ریکارڈ، عمر {age} (حد {limit})",
    "sync_ok": "آخری کامیابی {when}", "sync_bad": "اس کے بعد {n} ناکام کوششیں؛ آخری: {err}",
    "queue_text": "{pending} منتظر، {unassigned} کسی بھی موڈیم کے لیے",
    "splits": "{n} جوابات دو سموں میں بٹ گئے (فون پر ایک ادھورا حصہ)",
    "fleet": "مرکز سے رابطہ", "fleet_up": "جڑا ہوا؛ {n} رپورٹیں منتظر",
    "fleet_down": "{d} سے رابطہ نہیں؛ {n} رپورٹیں منتظر؛",
    "disk_text": "{pct}% استعمال، {free} خالی ({path})",
    "machine": "مشین کے لیے", "switch": "English",
    "d": "دن", "h": "گھنٹے", "min": "منٹ", "s": "سیکنڈ", "unknown": "معلوم نہیں",
    "none": "–",
}

TEXTS: dict[str, dict[str, str]] = {"en": _EN, "ur": _UR}

#: Words for values the unit reports (modem and registry states, reply verdicts, alarms).
WORDS: dict[str, dict[str, str]] = {
    "en": {"ready": "ready", "starting": "starting", "no network": "no network",
           "failed": "failed", "gone": "gone", "stopped": "stopped",
           "ok": "ok", "stale": "stale", "missing": "missing",
           "hit": "record found", "mixed": "some found", "no_record": "no record",
           "invalid": "invalid CNIC", "unavailable": "unavailable", "limit": "over limit",
           "help": "help", "empty": "empty",
           "modem_down": "modem down", "modem_blocked": "modem blocked",
           "credit_low": "balance low", "reply_failed": "reply failed",
           "registry_stale": "registry too old", "registry_missing": "no registry",
           "queue_growing": "queue growing", "disk_full": "disk nearly full",
           "status_page": "status page", "inbound_held": "SMS not stored"},
    "ur": {"ready": "تیار", "starting": "شروع ہو رہا ہے", "no network": "نیٹ ورک نہیں",
           "failed": "ناکام", "gone": "غائب", "stopped": "بند",
           "ok": "درست", "stale": "پرانی", "missing": "موجود نہیں",
           "hit": "ریکارڈ ملا", "mixed": "کچھ ملے", "no_record": "کوئی ریکارڈ نہیں",
           "invalid": "غلط شناختی کارڈ نمبر", "unavailable": "سروس دستیاب نہیں",
           "limit": "حد سے زیادہ", "help": "مدد", "empty": "خالی",
           "modem_down": "موڈیم بند", "modem_blocked": "موڈیم روکا گیا",
           "credit_low": "بیلنس کم", "reply_failed": "جواب نہیں گیا",
           "registry_stale": "رجسٹری پرانی", "registry_missing": "رجسٹری موجود نہیں",
           "queue_growing": "قطار بڑھ رہی ہے", "disk_full": "ڈسک تقریباً بھر گئی",
           "status_page": "اسٹیٹس صفحہ", "inbound_held": "ایس ایم ایس محفوظ نہیں ہوا"},
}

#: The verdicts' colours, the same in the tiles and the chart (status.js reads them from
#: the page): a hit stands out, "no record" is calm, failures are greys and purples.
VERDICT_COLOURS = {"hit": "#c0392b", "mixed": "#e67e22", "no_record": "#27ae60",
                   "invalid": "#7f8c8d", "unavailable": "#8e44ad", "limit": "#a0522d",
                   "help": "#5dade2", "empty": "#bdc3c7"}
