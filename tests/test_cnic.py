"""appliance.rules.cnic: how the text of one SMS is read into CNICs.

The table covers what docs/field-notes.md reports people actually send; the properties check that
no text makes the parser raise and that a wrong-length number is never cut or padded.
"""

from __future__ import annotations

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from appliance.rules.cnic import (CNIC_LENGTH, MIN_ATTEMPT_DIGITS, CnicParse, format_cnic,
                            normalise_cnic, parse_message, province, to_urdu_digits)

A = "3520212345671"
B = "3520212345672"
C = "4210198765432"
D = "6110155555550"  # last digit 0: stdnum.pk.cnic.validate refuses it, we must not

URDU = str.maketrans("0123456789", "۰۱۲۳۴۵۶۷۸۹")
ARABIC = str.maketrans("0123456789", "٠١٢٣٤٥٦٧٨٩")
FULLWIDTH = str.maketrans("0123456789", "０１２３４５６７８９")
LRM, RLM, ALM = "\u200e", "\u200f", "\u061c"

# (message, cnics, invalid, is_help)
CASES: list[tuple[str, tuple[str, ...], tuple[str, ...], bool]] = [
    # plain forms
    (A, (A,), (), False),
    ("35202-1234567-1", (A,), (), False),
    ("35202 1234567 1", (A,), (), False),
    ("35202.1234567.1", (A,), (), False),
    ("35202 - 1234567 - 1", (A,), (), False),
    ("  35202-1234567-1  \n", (A,), (), False),
    (D, (D,), (), False),
    # every digit script, and mixed within one number
    ("۳۵۲۰۲-۱۲۳۴۵۶۷-۱", (A,), (), False),
    ("٣٥٢٠٢-١٢٣٤٥٦٧-١", (A,), (), False),
    ("３５２０２－１２３４５６７－１", (A,), (), False),
    ("35202-۱۲۳۴۵۶۷-1", (A,), (), False),
    # dashes of every kind
    *[(f"35202{d}1234567{d}1", (A,), (), False)
      for d in "\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"],
    # spaces of every kind
    *[(f"35202{s}1234567{s}1", (A,), (), False)
      for s in "\u00a0\u2002\u2009\u200a\u202f\u205f\u3000\t"],
    # bidi marks and zero-width characters anywhere
    (f"{LRM}35202{LRM}-{LRM}1234567{LRM}-{LRM}1{LRM}", (A,), (), False),
    (f"{RLM}۳۵۲۰۲{RLM}-{RLM}۱۲۳۴۵۶۷{RLM}-{RLM}۱", (A,), (), False),
    (f"35202{ALM}-1234567{ALM}-1", (A,), (), False),
    ("\u202b35202-1234567-1\u202c", (A,), (), False),
    ("\u2067352021234567\u20691", (A,), (), False),
    ("3520\u200d2123\u200c45671\ufeff", (A,), (), False),
    # words around the number
    ("CNIC: 35202-1234567-1", (A,), (), False),
    ("cnic#3520212345671.", (A,), (), False),
    ("یہ شناختی کارڈ نمبر ۳۵۲۰۲-۱۲۳۴۵۶۷-۱ چیک کریں۔", (A,), (), False),
    ("شناختی کارڈ:3520212345671براہ کرم", (A,), (), False),
    # wrong lengths are invalid, never cut or padded
    ("35202-123456-1", (), ("352021234561",), False),
    ("35202-1234567-12", (), ("35202123456712",), False),
    ("352021234567", (), ("352021234567",), False),
    ("35202123456712", (), ("35202123456712",), False),
    (A + B, (), (A + B,), False),
    ("35202 1234567 1 2 3", (), ("352021234567123",), False),
    # several CNICs, separated by anything
    (f"{A} {B}", (A, B), (), False),
    (f"{A}-{B}", (A, B), (), False),
    ("35202-1234567-1 35202-1234567-2", (A, B), (), False),
    (f"{A}, {B}\n{C}", (A, B, C), (), False),
    (f"{A} and {B}", (A, B), (), False),
    (f"{A} {A} {B} {A}", (A, B), (), False),
    (f"{A} 35202-1234567-12", (A,), ("35202123456712",), False),
    # a standalone 13-digit run next to short numbers
    (f"{A} 2", (A,), (), False),
    # phone numbers and other numbers mixed in
    (f"CNIC {A} mera number 0300-1234567 hai", (A,), ("03001234567",), False),
    ("+92 300 1234567", (), ("923001234567",), False),
    ("0300-1234567", (), ("03001234567",), False),
    ("3 CNICs: 12 34", (), (), False),
    ("123456", (), (), False),
    ("1234567", (), ("1234567",), False),
    # help keywords
    ("HELP", (), (), True),
    ("help", (), (), True),
    ("Help me", (), (), True),
    ("ＨＥＬＰ", (), (), True),
    ("مدد", (), (), True),
    ("مجھے مدد چاہیے", (), (), True),
    ("مَدَد", (), (), True),
    (f"{RLM}مدد{RLM}", (), (), True),
    ("?", (), (), True),
    (" ؟ ", (), (), True),
    ("info", (), (), True),
    ("helpful", (), (), False),
    (f"help {A}", (A,), (), True),
    # nothing usable
    ("", (), (), False),
    ("   ", (), (), False),
    ("salam", (), (), False),
    ("what?", (), (), False),
]


@pytest.mark.parametrize(("text", "cnics", "invalid", "is_help"), CASES)
def test_parse_table(text: str, cnics: tuple[str, ...], invalid: tuple[str, ...],
                     is_help: bool) -> None:
    got = parse_message(text)
    assert (got.cnics, got.invalid, got.is_help) == (cnics, invalid, is_help)
    assert got.empty == (not cnics and not invalid and not is_help)


def test_four_cnics_with_default_limit_checks_three_and_counts_one_extra() -> None:
    got = parse_message(f"{A} {B} {C} {D}")
    assert got.cnics == (A, B, C)
    assert got.extra == 1


def test_duplicates_do_not_use_up_the_limit() -> None:
    got = parse_message(f"{A} {A} {B} {A} {C}", max_cnics=3)
    assert (got.cnics, got.extra) == ((A, B, C), 0)


def test_limit_below_one_still_checks_one() -> None:
    got = parse_message(f"{A} {B}", max_cnics=0)
    assert (got.cnics, got.extra) == ((A,), 1)


def test_format_cnic_accepts_a_final_zero_and_any_writing() -> None:
    assert format_cnic(A) == "35202-1234567-1"
    assert format_cnic(D) == "61101-5555555-0"
    assert format_cnic("۳۵۲۰۲۱۲۳۴۵۶۷۱") == "35202-1234567-1"
    assert format_cnic("1234") == "1234"
    assert format_cnic("") == ""


def test_province_from_first_digit() -> None:
    assert province(A) == "Punjab"
    assert province("4220103976408") == "Sindh"
    assert province("9220103976408") is None
    assert province("") is None
    assert province("12345") is None


def test_to_urdu_digits() -> None:
    assert to_urdu_digits("35202-1234567-1") == "۳۵۲۰۲-۱۲۳۴۵۶۷-۱"
    assert to_urdu_digits("abc") == "abc"


# --- properties ----------------------------------------------------------------------------

_interesting = st.text(
    alphabet=st.sampled_from(list("0123456789۰۱۲۳۴۵۶۷۸۹٠١٢٣٤٥٦٧٨٩-. \n\u2013\u200e\u200f"
                                  "\u061c\u00a0abcمدد?؟,+")),
    max_size=120)
_messages = st.one_of(st.text(max_size=200), _interesting)


def _check_invariants(text: str, max_cnics: int) -> None:
    got = parse_message(text, max_cnics=max_cnics)
    assert isinstance(got, CnicParse)
    limit = max(1, max_cnics)
    assert len(got.cnics) <= limit
    assert len(set(got.cnics)) == len(got.cnics)
    for cnic in got.cnics:
        assert len(cnic) == CNIC_LENGTH and cnic.isascii() and cnic.isdigit()
    for attempt in got.invalid:
        assert attempt.isascii() and attempt.isdigit()
        assert len(attempt) >= MIN_ATTEMPT_DIGITS and len(attempt) != CNIC_LENGTH
    assert got.extra >= 0
    assert got.extra == 0 or len(got.cnics) == limit
    assert got.empty == (not got.cnics and not got.invalid and not got.is_help)
    format_cnic(text)
    province(text)


@given(_messages, st.integers(min_value=-1, max_value=5))
def test_parse_never_raises(text: str, max_cnics: int) -> None:
    _check_invariants(text, max_cnics)


@pytest.mark.fuzz_long
def test_parse_never_raises_long(request: pytest.FixtureRequest) -> None:
    if "fuzz_long" not in (request.config.getoption("markexpr") or ""):
        pytest.skip("long fuzz run: select it with -m fuzz_long")
    run = settings(max_examples=100_000, deadline=None,
                   suppress_health_check=[HealthCheck.too_slow])(
        given(_messages, st.integers(min_value=-1, max_value=5))(_check_invariants))
    run()


_cnic_digits = st.text(alphabet="0123456789", min_size=13, max_size=13)
_script = st.sampled_from([str.maketrans({}), URDU, ARABIC, FULLWIDTH])
_words = st.text(alphabet=st.sampled_from(list("abcxyz شناختی کارڈ:")), max_size=12)


@given(_cnic_digits, _script, st.sampled_from(["", "-", " ", " - ", "\u2013", "."]),
       st.sampled_from(["", LRM, RLM, ALM]), _words, _words)
def test_any_written_form_reads_back(digits: str, script: dict[int, str], sep: str,
                                     mark: str, before: str, after: str) -> None:
    written = digits.translate(script)
    grouped = mark + sep.join((written[:5], written[5:12], written[12:])) + mark
    got = parse_message(f"{before} {grouped} {after}")
    assert got.cnics == (digits,)
    assert got.invalid == ()


@given(st.text(alphabet="0123456789", min_size=MIN_ATTEMPT_DIGITS, max_size=40)
       .filter(lambda s: len(s) != CNIC_LENGTH))
def test_a_wrong_length_run_is_never_cut_or_padded(digits: str) -> None:
    got = parse_message(f"CNIC {digits} thanks")
    assert got.cnics == ()
    assert got.invalid == (digits,)


@pytest.mark.parametrize(("text", "expected"), [
    ("35202-1234567-1", A), (A, A), ("35202 1234567\t1", A), ("-3520212345671-", A),
    ("35202.1234567.1", None),                # a citizen may write dots; an export may not
    ("\u06f3\u06f5\u06f2\u06f0\u06f2\u06f1\u06f2\u06f3\u06f4\u06f5\u06f6\u06f7\u06f1", None),
    ("352021234567", None), ("35202123456712", None), ("", None), ("35202-1234567-X", None),
])
def test_the_registry_form_is_strict(text: str, expected: str | None) -> None:
    assert normalise_cnic(text) == expected
