"""appliance.rules.responder: the safety rules of a reply, against the shipped templates.

The lookup is a real function over a dict of records that counts its calls, so "the
registry is not consulted when it is stale" is checked, not assumed.
"""

from __future__ import annotations

import tomllib
from datetime import date
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.errors import ConfigError, RegistryError
from appliance.registry.record import OffenderRecord
from appliance.rules.responder import (KINDS, Policy, RegistryState, Reply, Templates,
                                 limit_reply, load_templates, parse_templates, respond)

REPLIES = Path(__file__).resolve().parents[1] / "firmware_config" / "replies.toml"

HIT = "3520212345671"        # s/o
DAUGHTER = "3520299999993"   # d/o with an odd ("male") last digit: the record decides
WIFE = "4210155555550"       # w/o, last digit 0
REMOVED = "6110177777771"
NOBODY = "3740512345672"

RECORDS = {
    HIT: OffenderRecord(HIT, "محمد اسلم", "Muhammad Aslam", "محمد اکرم", "Muhammad Akram",
                        "s/o", "active", date(2019, 3, 1)),
    DAUGHTER: OffenderRecord(DAUGHTER, "نسرین بی بی", "Nasreen Bibi", "غلام رسول",
                             "Ghulam Rasool", "d/o", "active"),
    WIFE: OffenderRecord(WIFE, "شازیہ", "Shazia", "عبدالحمید", "Abdul Hameed", "w/o", "active"),
    REMOVED: OffenderRecord(REMOVED, "کاشف", "Kashif", "ناصر", "Nasir", "s/o", "removed"),
}


class Lookup:
    """The registry's exact lookup, over a dict, remembering what it was asked."""

    def __init__(self, records: dict[str, OffenderRecord] | None = None) -> None:
        self.records = RECORDS if records is None else records
        self.calls: list[str] = []

    def __call__(self, cnic: str) -> OffenderRecord | None:
        self.calls.append(cnic)
        return self.records.get(cnic)


@pytest.fixture(scope="module")
def templates() -> Templates:
    return load_templates(REPLIES)


@pytest.fixture(scope="module")
def toml() -> dict[str, dict[str, object]]:
    return tomllib.loads(REPLIES.read_text(encoding="utf-8"))


UR, EN = Policy(), Policy(language="en")
UR_HIT_ONLY, EN_HIT_ONLY = Policy(disclosure="hit-only"), Policy("en", "hit-only")


def test_hit_urdu_full(templates: Templates, toml: dict) -> None:
    reply = respond("35202-1234567-1", Lookup(), templates, UR)
    assert reply.kind == "hit"
    assert reply.text.startswith("خبردار! محمد اسلم ولد محمد اکرم سزا یافتہ مجرم ہے۔")
    assert toml["ur"]["correction"] in reply.text
    assert reply.cnics == (HIT,) and reply.verdicts[0].record is RECORDS[HIT]
    assert len(reply.text) <= 134, "a hit must fit two UCS-2 parts"


def test_hit_english_full(templates: Templates, toml: dict) -> None:
    reply = respond(HIT, Lookup(), templates, EN)
    assert reply.text.startswith(
        "Beware! Muhammad Aslam son of Muhammad Akram is a convicted offender. "
        "Don't let him be around children and women.")
    assert toml["en"]["correction"] in reply.text


@pytest.mark.parametrize(("cnic", "ur_word", "en_words"), [
    (DAUGHTER, "بنت", "daughter of Ghulam Rasool is a convicted offender. Don't let her"),
    (WIFE, "زوجہ", "wife of Abdul Hameed is a convicted offender. Don't let her"),
])
def test_relation_word_comes_from_the_record(templates: Templates, cnic: str, ur_word: str,
                                             en_words: str) -> None:
    assert f" {ur_word} " in respond(cnic, Lookup(), templates, UR).text
    assert "ولد" not in respond(cnic, Lookup(), templates, UR).text
    assert en_words in respond(cnic, Lookup(), templates, EN).text


@pytest.mark.parametrize("policy", [UR_HIT_ONLY, EN_HIT_ONLY])
def test_hit_only_names_nobody(templates: Templates, toml: dict, policy: Policy) -> None:
    reply = respond(HIT, Lookup(), templates, policy)
    assert reply.kind == "hit"
    assert "35202-1234567-1" in reply.text
    record = RECORDS[HIT]
    for secret in (record.name_ur, record.name_en, record.parent_ur, record.parent_en):
        assert secret not in reply.text
    assert toml[policy.language]["correction"] in reply.text


@pytest.mark.parametrize("policy", [UR, EN, UR_HIT_ONLY, EN_HIT_ONLY])
def test_no_record_echoes_the_number_and_advises_the_card(templates: Templates,
                                                          policy: Policy) -> None:
    reply = respond(f"CNIC {NOBODY}", Lookup(), templates, policy)
    assert reply.kind == "no_record"
    assert reply.text.startswith("37405-1234567-2")
    assert ("کارڈ" if policy.language == "ur" else "card") in reply.text
    assert reply.verdicts[0].record is None
    if policy.language == "ur":
        assert len(reply.text) <= 70, "one UCS-2 SMS"


def test_removed_record_is_no_record(templates: Templates) -> None:
    reply = respond(REMOVED, Lookup(), templates, UR)
    assert reply.kind == "no_record"
    assert reply.verdicts[0].record is None
    assert "کاشف" not in reply.text
    assert reply.text == respond(NOBODY, Lookup(), templates, UR).text.replace(
        "37405-1234567-2", "61101-7777777-1")


def test_several_cnics_one_reply_in_order(templates: Templates, toml: dict) -> None:
    lookup = Lookup()
    reply = respond(f"{NOBODY} {HIT}, {HIT}", lookup, templates, UR)
    assert reply.kind == "mixed"
    assert lookup.calls == [NOBODY, HIT]
    lines = reply.text.split("\n")
    assert lines[0].startswith("37405-1234567-2:")
    assert lines[1].startswith("35202-1234567-1: محمد اسلم ولد محمد اکرم")
    assert toml["ur"]["multi_hit_footer"] in lines
    assert toml["ur"]["multi_no_record_footer"] in lines
    assert lines[-1] == toml["ur"]["correction"]


def test_several_hits_hit_only(templates: Templates) -> None:
    reply = respond(f"{HIT} {WIFE}", Lookup(), templates, EN_HIT_ONLY)
    assert reply.kind == "hit"
    assert "Shazia" not in reply.text and "Aslam" not in reply.text
    assert "42101-5555555-0: convicted offender" in reply.text


def test_beyond_the_limit_only_the_first_are_checked(templates: Templates) -> None:
    lookup = Lookup()
    reply = respond(f"{NOBODY} {HIT} {WIFE} {DAUGHTER}", lookup, templates, EN)
    assert lookup.calls == [NOBODY, HIT, WIFE]
    assert "Only the first 3 numbers" in reply.text
    assert "Nasreen" not in reply.text


def test_limit_of_one_still_says_the_rest_were_not_checked(templates: Templates) -> None:
    reply = respond(f"{NOBODY} {HIT}", Lookup(), templates, Policy(max_cnics=1))
    assert reply.kind == "no_record"
    assert "صرف پہلے 1 نمبر" in reply.text


def test_invalid_only_when_no_valid_cnic(templates: Templates) -> None:
    reply = respond("35202-123456-1", Lookup(), templates, EN)
    assert reply.kind == "invalid"
    assert "has 12" in reply.text and "XXXXX-XXXXXXX-X" in reply.text
    assert respond("۳۵۲۰۲-۱۲۳۴۵۶۷-۱۲", Lookup(), templates, UR).kind == "invalid"
    mixed = respond(f"{NOBODY} 0300-1234567", Lookup(), templates, EN)
    assert mixed.kind == "no_record" and "13 digits" not in mixed.text


@pytest.mark.parametrize(("text", "policy", "needle"), [
    ("HELP", EN, "Send a CNIC"), ("مدد", UR, "شناختی کارڈ نمبر بھیجیں"),
    ("help", UR, "3 تک"), ("؟", EN, "up to 3 per message"),
])
def test_help(templates: Templates, text: str, policy: Policy, needle: str) -> None:
    lookup = Lookup()
    reply = respond(text, lookup, templates, policy)
    assert (reply.kind, lookup.calls) == ("help", [])
    assert needle in reply.text


@pytest.mark.parametrize("policy", [UR, EN])
def test_empty(templates: Templates, policy: Policy, toml: dict) -> None:
    reply = respond("", Lookup(), templates, policy)
    assert reply == Reply(toml[policy.language]["empty"], "empty", (), ())


@pytest.mark.parametrize("state", [RegistryState.STALE, RegistryState.MISSING])
@pytest.mark.parametrize("text", [HIT, NOBODY, f"{HIT} {NOBODY}", "help", "", "12345678"])
@pytest.mark.parametrize("policy", [UR, EN, UR_HIT_ONLY])
def test_unusable_registry_gives_no_verdict_and_is_not_consulted(
        templates: Templates, toml: dict, state: RegistryState, text: str,
        policy: Policy) -> None:
    lookup = Lookup()
    reply = respond(text, lookup, templates, policy, state)
    assert lookup.calls == []
    assert (reply.kind, reply.verdicts) == ("unavailable", ())
    assert reply.text == toml[policy.language]["unavailable"]


def test_failing_lookup_gives_unavailable(templates: Templates) -> None:
    def broken(cnic: str) -> OffenderRecord | None:
        raise RegistryError("registry.db: disk I/O error")

    assert respond(HIT, broken, templates, UR).kind == "unavailable"


def test_a_record_for_another_cnic_is_never_a_hit(templates: Templates) -> None:
    reply = respond(NOBODY, Lookup({NOBODY: RECORDS[HIT]}), templates, UR)
    assert reply.kind == "unavailable"
    assert "محمد اسلم" not in reply.text


@pytest.mark.parametrize("policy", [UR, EN])
def test_limit_reply(templates: Templates, toml: dict, policy: Policy) -> None:
    assert limit_reply(templates, policy) == Reply(toml[policy.language]["limit"], "limit",
                                                   (), ())


def test_unknown_language_falls_back_to_urdu(templates: Templates) -> None:
    assert templates.for_language("fr") is templates.for_language("ur")


def test_policy_rejects_bad_values_all_at_once() -> None:
    with pytest.raises(ConfigError) as info:
        Policy(language="fr", disclosure="everything", max_cnics=0)
    assert len(info.value.problems) == 3


def test_record_refuses_damaged_rows() -> None:
    with pytest.raises(RegistryError, match="relation 'x/o'.*status 'gone'"):
        OffenderRecord("35202-1234567-1", "a", "a", "b", "b", "x/o", "gone")


# --- template file errors ------------------------------------------------------------------

def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "replies.toml"
    path.write_text(text, encoding="utf-8")
    return path


def test_every_template_problem_is_reported_at_once(tmp_path: Path) -> None:
    text = REPLIES.read_text(encoding="utf-8")
    text = text.replace('Beware! {name}', 'Beware! {nmae}', 1)          # unknown placeholder
    text = text.replace('\nlimit = "آپ', '\nlimti = "آپ', 1)             # typo: unknown+missing
    text = text.replace('line_no_record = "{cnic}: no record."\n', "", 1)  # missing key
    text = text.replace('"w/o" = "her"', '"w/o" = "her"\n"x/o" = "them"', 1)
    path = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        load_templates(path)
    problems = info.value.problems
    assert all(str(path) in p for p in problems)
    joined = "\n".join(problems)
    assert "[en] hit: unknown placeholder {nmae}; did you mean 'name'?" in joined
    assert "[ur] unknown key 'limti'; did you mean 'limit'?" in joined
    assert "[ur] limit: missing" in joined
    assert "[en] line_no_record: missing" in joined
    assert "[en.pronoun]: unknown key 'x/o'" in joined
    assert "[en] hit: must use {name}" in joined    # the misspelt one is not there
    assert len(problems) == 6


def test_no_record_template_cannot_name_anyone(toml: dict) -> None:
    toml = {lang: dict(table) for lang, table in toml.items()}
    toml["en"]["hit_only"] = "Beware! {name} ({cnic}) is a convicted offender."
    with pytest.raises(ConfigError, match=r"\[en\] hit_only: unknown placeholder \{name\}"):
        parse_templates(toml, "test")


def test_missing_language_and_unknown_table(toml: dict) -> None:
    with pytest.raises(ConfigError) as info:
        parse_templates({"ur": toml["ur"], "eng": toml["en"]}, "test")
    assert info.value.problems == [
        "test: unknown table [eng]; did you mean 'en'?",
        "test: [en] missing (every language needs every template)"]


@pytest.mark.parametrize(("text", "needle"), [
    ("[ur]\nhit = 'x", "not valid UTF-8 TOML"),
])
def test_unreadable_templates(tmp_path: Path, text: str, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle):
        load_templates(_write(tmp_path, text))
    with pytest.raises(ConfigError, match="cannot read reply templates"):
        load_templates(tmp_path / "absent.toml")


def test_bad_brace_and_format_spec(toml: dict) -> None:
    toml = {lang: dict(table) for lang, table in toml.items()}
    toml["ur"]["no_record"] = "{cnic: no record"
    toml["ur"]["line_no_record"] = "{cnic!r}"
    toml["ur"]["empty"] = "  "
    with pytest.raises(ConfigError) as info:
        parse_templates(toml, "test")
    assert len(info.value.problems) == 3


# --- properties ----------------------------------------------------------------------------

_digits = "0123456789۰۱۲۳۴۵۶۷۸۹"
_messages = st.one_of(
    st.text(max_size=200),
    st.lists(st.sampled_from([HIT, DAUGHTER, WIFE, REMOVED, NOBODY, "35202-123456-1", " ",
                              "-", "مدد", "HELP", "?", "\u200f", "abc"]), max_size=8)
    .map("".join),
    st.text(alphabet=st.sampled_from(list(_digits + "- \u200e")), max_size=60))
_policies = st.builds(Policy, st.sampled_from(["ur", "en"]), st.sampled_from(["full", "hit-only"]),
                      st.integers(min_value=1, max_value=4))
_states = st.sampled_from(list(RegistryState))


def _check_reply(templates: Templates, text: str, policy: Policy,
                 state: RegistryState) -> None:
    reply = respond(text, Lookup(), templates, policy, state)
    assert reply.kind in KINDS
    assert reply.text.strip()
    if state is not RegistryState.OK:
        assert reply.kind == "unavailable"
    hits = [v for v in reply.verdicts if v.hit]
    assert all(v.record is not None and v.record.cnic == v.cnic and v.record.is_active
               for v in hits)


@settings(suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(_messages, _policies, _states)
def test_respond_never_raises_and_always_says_something(
        templates: Templates, text: str, policy: Policy, state: RegistryState) -> None:
    _check_reply(templates, text, policy, state)


@pytest.mark.fuzz_long
def test_respond_never_raises_long(request: pytest.FixtureRequest, templates: Templates) -> None:
    if "fuzz_long" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long fuzz run: select it with -m fuzz_long")
    run = settings(max_examples=100_000, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])(
        given(_messages, _policies, _states)(
            lambda text, policy, state: _check_reply(templates, text, policy, state)))
    run()
