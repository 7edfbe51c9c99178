"""Reply templates are checked before the unit answers anyone: the placeholders each reply
needs, and every reply within ``replies.max_parts`` SMS parts.

Part counts are judged here by an independent computation (UCS-2 code units: 70 fit one
SMS, 67 a part of a concatenated one, TS 23.040 §9.2.3.24.1), not by the codec's count, and
end to end by smspdudecoder reading the PDUs the simulator captured.
"""

from __future__ import annotations

import math
import re
import subprocess
import sys
from pathlib import Path
from collections.abc import Iterator
from typing import Any

import pytest

from appliance.rules.cnic import format_cnic
from appliance.errors import ConfigError
from appliance.registry.importer import SAMPLE_REGISTRY, demo_cnics, import_file
from appliance.registry.lookup import Registry
from appliance.registry.names import longest_names
from appliance.rules.reply_budget import BOUND, NAME_BOUND, cases, check, lengths_of
from appliance.rules.responder import Policy, Templates, load_templates, parse_templates, respond
from tests.conftest import FIRMWARE_CONFIG, ROOT, unit_config, wait_until, write_unit_toml
from tests.test_service_e2e import independent_texts

SHIPPED = (FIRMWARE_CONFIG / "replies.toml").read_text(encoding="utf-8")
CNICS = demo_cnics()
CITIZEN = "+923001112233"
NO_CNIC_LINE = "سزا یافتہ مجرم کا ریکارڈ ہے۔"   # the shipped line_hit_only without {cnic}


def ucs2_parts(text: str) -> int:
    """Independent of the codec: UTF-16 code units, 70 in one SMS, else 67 a part."""
    units = len(text.encode("utf-16-be")) // 2
    return 1 if units <= 70 else math.ceil(units / 67)


def plain_parts(text: str) -> int:
    """Plain ASCII letters, digits and punctuation in GSM-7's basic table: 160 septets in
    one SMS, else 153 a part (TS 23.038 §6.2.1); anything else as UCS-2."""
    if text.isascii() and not set(text) & set("[]{}\\^~|`"):
        return 1 if len(text) <= 160 else math.ceil(len(text) / 153)
    return ucs2_parts(text)


def _replace(text: str, table: str, key: str, value: str) -> str:
    """``text`` with ``key`` of ``[table]`` set to ``value`` (a TOML basic string)."""
    head = text.index(f"[{table}]\n")
    match = re.compile(rf"^{key} = .*$", re.M).search(text, head)
    assert match is not None
    escaped = value.replace("\\", "\\\\").replace('"', '\\"')
    return text[:match.start()] + f'{key} = "{escaped}"' + text[match.end():]


def _line_of(text: str, table: str, key: str) -> int:
    head = text.index(f"[{table}]\n")
    start = re.compile(rf"^{key} = ", re.M).search(text, head)
    assert start is not None
    return text.count("\n", 0, start.start()) + 1


@pytest.fixture(scope="module")
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Registry]:
    path = tmp_path_factory.mktemp("budget") / "registry.db"
    import_file(SAMPLE_REGISTRY, path, version=1, source="tests")
    with Registry(path) as reg:
        yield reg


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "replies.toml"
    path.write_text(text, encoding="utf-8")
    return path


# --- placeholders --------------------------------------------------------------------------

def test_a_per_line_template_without_cnic_is_refused_with_file_line_and_key(
        tmp_path: Path) -> None:
    text = _replace(SHIPPED, "ur", "line_hit_only", NO_CNIC_LINE)
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_templates(path)
    (problem,) = info.value.problems
    line = _line_of(text, "ur", "line_hit_only")
    assert problem.startswith(f"{path}: line {line}: [ur] line_hit_only: must use {{cnic}}")
    assert "which one is the convict" in problem


def test_without_the_check_two_cnics_would_hide_which_is_the_convict(
        registry: Registry) -> None:
    """Why {cnic} is required: the reply a template without it would give."""
    import tomllib

    data = tomllib.loads(_replace(SHIPPED, "ur", "line_hit_only", NO_CNIC_LINE))
    data["ur"]["line_hit_only"] += " {pronoun}"   # still refused: {pronoun} is not {cnic}
    with pytest.raises(ConfigError, match=r"line_hit_only: must use \{cnic\}"):
        parse_templates(data)
    hit, miss = CNICS.hits[0], CNICS.misses[0]
    templates = load_templates(FIRMWARE_CONFIG / "replies.toml")
    with_cnic = respond(f"{hit} {miss}", registry.lookup, templates,
                        Policy(disclosure="hit-only"))
    hit_line = next(line for line in with_cnic.text.splitlines() if "سزا یافتہ" in line)
    assert format_cnic(hit) in hit_line and format_cnic(miss) not in hit_line


@pytest.mark.parametrize("table, key, text, missing", [
    ("ur", "hit", "خبردار! {name} سزا یافتہ مجرم ہے۔", "{parent}, {relation}"),
    ("en", "line_hit", "{cnic}: {name} is a convicted offender.", "{parent}, {relation}"),
    ("en", "line_no_record", "no record.", "{cnic}"),
    ("en", "no_record", "No record. Check the number.", "{cnic}"),
    ("ur", "line_hit", "{name} {relation} {parent} سزا یافتہ مجرم ہے۔", "{cnic}"),
])
def test_each_reply_needs_its_placeholders(tmp_path: Path, table: str, key: str, text: str,
                                           missing: str) -> None:
    path = _write(tmp_path, _replace(SHIPPED, table, key, text))
    with pytest.raises(ConfigError) as info:
        load_templates(path)
    line = _line_of(path.read_text(encoding="utf-8"), table, key)
    assert info.value.problems == [
        p for p in info.value.problems
        if p.startswith(f"{path}: line {line}: [{table}] {key}: must use {missing};")]
    assert len(info.value.problems) == 1


# --- parts -----------------------------------------------------------------------------------

def _templates(tmp_path: Path, text: str) -> Templates:
    return load_templates(_write(tmp_path, text))


def test_the_shipped_templates_fit_four_parts_in_every_supported_policy() -> None:
    templates = load_templates(FIRMWARE_CONFIG / "replies.toml")
    for language in ("ur", "en"):
        for disclosure in ("full", "hit-only"):
            for max_cnics in (1, 2, 3):
                policy = Policy(language, disclosure, max_cnics)
                assert check(templates, policy) == [], policy
                worst = max(plain_parts(c.text) for c in cases(templates, policy, BOUND))
                assert worst <= 4, policy


@pytest.mark.parametrize("key", ["help", "correction", "hit", "unavailable", "line_no_record"])
def test_an_11000_character_template_is_refused(tmp_path: Path, key: str) -> None:
    filler = "یہ ایک بہت لمبا پیغام ہے۔ " * 440
    value = filler[:11_000 - 40] + ("{cnic}" if key == "line_no_record" else "")
    if key == "hit":
        value += " {name} {relation} {parent}"
    text = _replace(SHIPPED, "ur", key, value)
    templates = _templates(tmp_path, text)
    problems = check(templates, Policy())
    line = _line_of(text, "ur", key)
    mine = [p for p in problems if f"line {line}: [ur] {key}:" in p]
    assert mine, problems
    parts = int(re.search(r"needs (\d+) SMS parts", mine[0]).group(1))  # type: ignore[union-attr]
    assert parts > 160 and "replies.max_parts is 4" in mine[0]


def test_the_parts_bound_agrees_with_an_independent_ucs2_count(tmp_path: Path) -> None:
    """Lengthen the one-CNIC "no record" reply a character at a time: the check refuses it
    exactly when an independent UCS-2 count says it needs more than max_parts."""
    base = "{cnic}: اس نمبر کا کوئی ریکارڈ نہیں۔"
    policy = Policy(max_parts=2)
    verdicts = []
    for pad in range(60, 110):
        text = _replace(SHIPPED, "ur", "no_record", base + " " + "ن" * pad)
        templates = _templates(tmp_path, text)
        reply = respond(CNICS.misses[0], lambda c: None, templates, policy).text
        refused = any("[ur] no_record:" in p for p in check(templates, policy))
        verdicts.append((ucs2_parts(reply), refused))
    assert {n for n, _ in verdicts} == {2, 3}, "the padding must cross the boundary"
    assert all(refused == (n > 2) for n, refused in verdicts), verdicts


def test_a_long_verdict_reply_is_sent_compact_within_max_parts(registry: Registry) -> None:
    templates = load_templates(FIRMWARE_CONFIG / "replies.toml")
    lookup = registry.lookup
    hits = CNICS.hits[:3]
    full = respond(" ".join(hits), lookup, templates, Policy(max_parts=10))
    assert ucs2_parts(full.text) > 4, "the reply with names is longer than 4 parts"
    reply = respond(" ".join(hits), lookup, templates, Policy())
    assert ucs2_parts(reply.text) <= 4
    assert all(format_cnic(c) in reply.text for c in hits)      # every verdict stays
    assert "0800-00000" in reply.text                           # and the correction line
    records = [registry.lookup(c) for c in hits]
    assert not any(r is not None and r.name_ur in reply.text for r in records)


def test_16_bit_references_count_66_characters_a_part() -> None:
    templates = load_templates(FIRMWARE_CONFIG / "replies.toml")
    cases8 = {c.label: c.text for c in cases(templates, Policy(), BOUND)}
    longest = max(cases8.values(), key=lambda t: len(t.encode("utf-16-be")))
    units = len(longest.encode("utf-16-be")) // 2
    from appliance.rules.responder import parts_of
    assert parts_of(longest, Policy(ref16=True)) == math.ceil(units / 66)


# --- at start, and with the registry's names -----------------------------------------------

def test_run_refuses_to_start_with_a_template_over_the_bound(tmp_path: Path) -> None:
    text = _replace(SHIPPED, "ur", "correction", "غلطی کی اطلاع: " + "۰" * 300)
    replies = _write(tmp_path, text)
    config = write_unit_toml(tmp_path, [("sim1", "/dev/nsor-no-such-modem")])
    config.write_text(config.read_text().replace(str(FIRMWARE_CONFIG / "replies.toml"),
                                                 str(replies)))
    result = subprocess.run([sys.executable, "-m", "appliance", "run", "--config", str(config)],
                            cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2, result.stderr
    line = _line_of(text, "ur", "correction")
    assert f"error: {replies}: line {line}: [ur] correction: the reply" in result.stderr
    assert "nothing was started" in result.stderr and "Traceback" not in result.stderr


def _long_name_registry(path: Path, version: int, name_len: int) -> str:
    """The sample registry plus one offender whose names are ``name_len`` characters."""
    rows = SAMPLE_REGISTRY.read_text(encoding="utf-8").rstrip("\n").split("\n")
    cnic = "35202-9999999-1"
    long_ur = ("بہت لمبا نام " * 20)[:name_len].strip()
    rows.append(f"{cnic},{long_ur},Long Name,{long_ur},Long Father,s/o,active,2020-01-01,")
    src = path.with_suffix(f".v{version}.csv")
    src.write_text("\n".join(rows) + "\n", encoding="utf-8")
    import_file(src, path, version=version, source="tests")
    return cnic.replace("-", "")


def test_registry_lengths_reads_the_longest_active_names(tmp_path: Path) -> None:
    path = tmp_path / "registry.db"
    _long_name_registry(path, 1, 70)
    lengths = lengths_of(longest_names(path))
    assert lengths is not None and lengths.name >= 69 and lengths.parent >= 69
    assert lengths_of(longest_names(tmp_path / "none.db")) is None


def test_a_registry_with_names_too_long_raises_an_alarm_and_replies_stay_bounded(
        tmp_path: Path, sim: Any, sample_registry: Path) -> None:
    from appliance.service.unit import Service

    svc = Service(unit_config(tmp_path, sim, replies={"max_parts": 3}), health_check_s=0.3)
    svc.start()
    try:
        assert not any(a.kind == "reply_names" for a in svc.alarms.active())
        long_cnic = _long_name_registry(sample_registry, 2, 90)      # a sync applies v2
        assert wait_until(lambda: any(a.kind == "reply_names" for a in svc.alarms.active()),
                          10), "no alarm after the registry with long names was installed"
        alarm = next(a for a in svc.alarms.active() if a.kind == "reply_names")
        assert "registry version 2" in alarm.message and "[ur] hit" in alarm.message
        sim.citizen_send(CITIZEN, 0, long_cnic)
        assert wait_until(lambda: len(independent_texts(sim, CITIZEN)) == 1, 20)
        (reply,) = independent_texts(sim, CITIZEN)
        assert ucs2_parts(reply) <= 3 and format_cnic(long_cnic) in reply
        assert "بہت لمبا" not in reply                          # sent without the names
        parts = [s for s in sim.submitted if s.recipient.endswith(CITIZEN[-10:])]
        assert len(parts) <= 3
    finally:
        svc.stop()


def test_name_bound_is_documented() -> None:
    toml = (FIRMWARE_CONFIG / "appliance.toml").read_text(encoding="utf-8")
    assert f"({NAME_BOUND} characters without a registry)" in toml
    assert "max_parts = 4" in toml
