"""Find the CNICs a citizen meant in the text of one SMS (pure: text in, values out).

Why this is more than ``re.findall(r"\\d{13}")``: people type the number on Urdu keyboards
(Extended Arabic-Indic digits ۰–۹, U+06F0–U+06F9), Arabic keyboards (٠–٩, U+0660–U+0669) or
Latin ones, group it ``XXXXX-XXXXXXX-X`` with whatever dash the keyboard offers, and phones
sprinkle invisible bidi marks around digits written inside Urdu text (docs/field-notes.md, "CNIC and
the service"). A wrong reading is worse than none, so the rules below are conservative: a
number of the wrong length is reported as invalid, never cut or padded into a CNIC.

Rules, in the order they apply:

1. **Digits** are ASCII, Arabic-Indic, Extended Arabic-Indic and fullwidth (U+FF10–U+FF19,
   what East-Asian IMEs produce; free to accept). No NFKC: it would also turn ², ①, ⑴ and
   similar into digits, and nobody types a CNIC with those. Other scripts' digits
   (Devanagari, Bengali, …) are ordinary characters here.
2. **Invisible marks** (bidi controls U+200E/U+200F/U+061C/U+202A–U+202E/U+2066–U+2069,
   ZWSP/ZWNJ/ZWJ, word joiner, BOM, soft hyphen) are skipped wherever they are, as if absent.
3. **Gaps.** Digits separated by a short gap -- at most one dash or dot with up to two
   spaces on each side (``-``, `` ``, `` - ``, ``.``) -- belong to one *chunk*. Dashes are
   ASCII ``-``, U+2010–U+2015, U+2212, U+FE58, U+FE63, U+FF0D; spaces include NBSP, the
   U+2000–U+200A set, U+202F, U+205F, U+3000 and tab. Anything else (a letter, ``+``, a
   comma, a line break) ends the chunk.
4. **Chunks to CNICs.** If a chunk's groups add up, left to right, to exact multiples of 13
   digits with a gap at every 13th digit, each 13 is a CNIC (``3520212345671 3520212345672``
   is two CNICs; ``35202-1234567-1 35202-1234567-2`` too). Otherwise every group that is by
   itself exactly 13 digits is a CNIC (a 13-digit run written without gaps is unambiguous),
   and what lies between them is taken as a whole: 13 digits → CNIC, ≥ 7 digits → an
   invalid attempt, fewer → ignored (``3 CNICs``, a house number, a PIN).
   ``35202-1234567-12`` (14) and 26 digits with no gap are therefore invalid, and a phone
   number (``0300-1234567``, 11 digits) is reported as an invalid attempt; the responder
   mentions invalid attempts only when the message holds no valid CNIC.
5. **The last digit is never checked.** ``stdnum.pk.cnic.validate`` refuses a final 0 and
   unknown province digits; we look every 13-digit number up (docs/field-notes.md: no check digit).

Every function here accepts any ``str`` (lone surrogates included) without raising.
"""

from __future__ import annotations

import re
import unicodedata
from dataclasses import dataclass

from stdnum.pk import cnic as _stdnum_cnic

CNIC_LENGTH = 13
#: Digit groups shorter than this are not attempts at a CNIC (counts, house numbers).
MIN_ATTEMPT_DIGITS = 7

#: Whole-word keywords asking for the help text (compared after NFKC + casefold, with
#: Arabic diacritics and tatweel removed, so "HELP", "Help", "مَدَد" and "مـدد" all match).
HELP_KEYWORDS: frozenset[str] = frozenset({"help", "info", "madad", "مدد", "ہیلپ"})
#: A message made only of these (and spaces) is also a request for help.
HELP_MARKS = frozenset("?؟")


def _digit_map() -> dict[str, str]:
    table: dict[str, str] = {}
    for zero in (0x30, 0x660, 0x6F0, 0xFF10):
        for value in range(10):
            table[chr(zero + value)] = str(value)
    return table


_DIGITS: dict[str, str] = _digit_map()
_INVISIBLE = frozenset(
    "\u00ad\u061c\u200b\u200c\u200d\u200e\u200f\u202a\u202b\u202c\u202d\u202e"
    "\u2060\u2066\u2067\u2068\u2069\ufeff")
_PUNCT = frozenset("-\u2010\u2011\u2012\u2013\u2014\u2015\u2212\ufe58\ufe63\uff0d"
                   ".\uff0e\u066b\u066c")
_SPACES = frozenset(" \t\u00a0\u202f\u205f\u3000" + "".join(chr(c) for c in range(0x2000, 0x200B)))
_MAX_GAP_SPACES = 2  # on each side of the one dash/dot

_KIND_DIGIT, _KIND_PUNCT, _KIND_SPACE, _KIND_SKIP, _KIND_OTHER = range(5)
_KINDS: dict[str, int] = {
    **{c: _KIND_DIGIT for c in _DIGITS},
    **{c: _KIND_PUNCT for c in _PUNCT},
    **{c: _KIND_SPACE for c in _SPACES},
    **{c: _KIND_SKIP for c in _INVISIBLE},
}
_TO_URDU = str.maketrans({str(v): chr(0x6F0 + v) for v in range(10)})
_WORD = re.compile(r"\w+")
#: What :func:`normalise_cnic` drops: the separators registry exports use.
_EXPORT_SEPARATORS = str.maketrans("", "", "- \t")


@dataclass(frozen=True)
class CnicParse:
    """What one SMS asked.

    ``cnics``: 13 ASCII digits each, in message order, duplicates removed, at most
    ``max_cnics``; ``invalid``: ASCII digit strings of attempts with the wrong length, in
    order, duplicates removed; ``extra``: distinct valid CNICs beyond ``max_cnics`` (not to be
    looked up); ``is_help``: a help keyword is present; ``empty``: nothing usable at all
    (no CNIC, no invalid attempt, no keyword).
    """

    cnics: tuple[str, ...]
    invalid: tuple[str, ...]
    extra: int
    is_help: bool
    empty: bool


def _chunks(text: str) -> list[list[str]]:
    """Split *text* into chunks of digit groups (rules 1-3); each group is ASCII digits."""
    chunks: list[list[str]] = []
    groups: list[str] = []      # groups of the chunk being read
    digits: list[str] = []      # digits of the group being read
    # Gap state after the last digit: spaces before the dash/dot, the dash/dot, spaces after.
    before, punct, after = 0, False, 0

    def close_chunk() -> None:
        nonlocal groups
        if digits:
            groups.append("".join(digits))
            digits.clear()
        if groups:
            chunks.append(groups)
            groups = []

    in_gap = False
    for ch in text:
        kind = _KINDS.get(ch, _KIND_OTHER)
        if kind == _KIND_DIGIT:
            if in_gap:
                groups.append("".join(digits))
                digits.clear()
                in_gap = False
            digits.append(_DIGITS[ch])
        elif kind == _KIND_SKIP:
            continue
        elif not digits:
            continue  # separators outside a number mean nothing
        elif kind == _KIND_OTHER:
            close_chunk()
            in_gap = False
        else:
            if not in_gap:
                in_gap, before, punct, after = True, 0, False, 0
            if kind == _KIND_PUNCT and not punct and after == 0:
                punct = True
            elif kind == _KIND_SPACE and not punct and before < _MAX_GAP_SPACES:
                before += 1
            elif kind == _KIND_SPACE and punct and after < _MAX_GAP_SPACES:
                after += 1
            else:
                close_chunk()
                in_gap = False
    close_chunk()
    return chunks


def _partition(groups: list[str]) -> list[str] | None:
    """Cut *groups* into 13-digit CNICs at gaps only, or None when that is impossible."""
    out: list[str] = []
    acc = ""
    for group in groups:
        acc += group
        if len(acc) == CNIC_LENGTH:
            out.append(acc)
            acc = ""
        elif len(acc) > CNIC_LENGTH:
            return None
    return None if acc else out


def _resolve(groups: list[str]) -> list[tuple[bool, str]]:
    """Rule 4: a chunk → ``(is_cnic, digits)`` items; too-short leftovers are dropped."""
    whole = _partition(groups)
    if whole is not None:
        return [(True, c) for c in whole]
    out: list[tuple[bool, str]] = []
    pending: list[str] = []

    def flush() -> None:
        if not pending:
            return
        parts = _partition(pending)
        if parts is not None:
            out.extend((True, c) for c in parts)
        else:
            joined = "".join(pending)
            if len(joined) >= MIN_ATTEMPT_DIGITS:
                out.append((False, joined))
        pending.clear()

    for group in groups:
        if len(group) == CNIC_LENGTH and len(groups) > 1:
            flush()
            out.append((True, group))
        else:
            pending.append(group)
    flush()
    return out


def _keyword_form(text: str) -> str:
    text = unicodedata.normalize("NFKC", text).casefold()
    return "".join(c for c in text if c not in _INVISIBLE and c != "\u0640"
                   and unicodedata.category(c) != "Mn")


def _is_help(text: str) -> bool:
    form = _keyword_form(text)
    stripped = "".join(form.split())
    if stripped and set(stripped) <= HELP_MARKS:
        return True
    return any(word in HELP_KEYWORDS for word in _WORD.findall(form))


def parse_message(text: str, *, max_cnics: int = 3) -> CnicParse:
    """Read the CNICs (and invalid attempts, and a help request) in one SMS text.

    ``max_cnics`` below 1 is treated as 1: a message with a CNIC always gets it checked.
    """
    limit = max(1, max_cnics)
    cnics: dict[str, None] = {}
    invalid: dict[str, None] = {}
    for chunk in _chunks(text):
        for is_cnic, digits in _resolve(chunk):
            (cnics if is_cnic else invalid)[digits] = None
    found = tuple(cnics)
    is_help = _is_help(text)
    return CnicParse(
        cnics=found[:limit],
        invalid=tuple(invalid),
        extra=max(0, len(found) - limit),
        is_help=is_help,
        empty=not found and not invalid and not is_help,
    )


def _ascii_digits(text: str) -> str:
    return "".join(_DIGITS[c] for c in text if c in _DIGITS)


def _as_cnic(text: str) -> str | None:
    """The 13 ASCII digits of *text* if it is one CNIC in any accepted writing, else None."""
    found = parse_message(text, max_cnics=1)
    if len(found.cnics) == 1 and not found.extra and not found.invalid \
            and len(_ascii_digits(text)) == CNIC_LENGTH:
        return found.cnics[0]
    return None


def normalise_cnic(text: str) -> str | None:
    """A CNIC as the registry writes it: ``'35202-1234567-1'`` -> ``'3520212345671'``;
    ``None`` unless 13 ASCII digits remain once dashes, spaces and tabs are dropped.

    The strict form, for machine-written text (a registry export or delta, a technician's
    ``nsor registry lookup``): a row whose CNIC is written otherwise is refused, so the
    publisher fixes the export rather than the unit guessing. A citizen's SMS is read by
    :func:`parse_message`, which accepts every writing described above.
    """
    digits = text.translate(_EXPORT_SEPARATORS)
    return digits if len(digits) == CNIC_LENGTH and digits.isascii() and digits.isdigit() \
        else None


def format_cnic(cnic: str) -> str:
    """``3520212345671`` → ``35202-1234567-1`` (any accepted digits and separators in).

    Uses ``stdnum.pk.cnic.format``, which only regroups and so accepts a final 0 (its
    ``validate`` would not). Text that is not one CNIC comes back unchanged.
    """
    digits = _as_cnic(cnic)
    return cnic if digits is None else _stdnum_cnic.format(digits)


def province(cnic: str) -> str | None:
    """Province or territory named by the first digit (English, from python-stdnum)."""
    digits = _as_cnic(cnic)
    return None if digits is None else _stdnum_cnic.get_province(digits)


def to_urdu_digits(text: str) -> str:
    """ASCII digits → Extended Arabic-Indic digits (۰–۹), the ones Urdu keyboards type."""
    return text.translate(_TO_URDU)
