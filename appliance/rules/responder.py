"""SMS text → verdicts → one reply text (pure, apart from :func:`load_templates`).

The responder is where the safety rules of the service live, so they are in one place and
testable without a modem or a database (docs/design.md, decision 6):

* A "convict" reply needs an exact match: the record returned for a CNIC must carry that
  CNIC and be ``active``; a ``removed`` record answers as no record.
* A registry that is stale or missing, or a lookup that fails, gives "service temporarily
  unavailable" for every message: never "no record", never a hit, and the lookup is not
  called at all when the shell already knows the registry is unusable.
* The relation word (ولد / بنت / زوجہ) comes from the record, never from the CNIC's last
  digit; no victim or offence detail exists in a record, so none can reach a reply.
* Every reply with a hit carries the correction channel; the disclosure level "hit-only"
  leaves name and parentage out.
* A verdict reply longer than ``Policy.max_parts`` SMS parts is sent without names, then
  also without footers (:data:`COMPACT_FORMS`); never without a CNIC's verdict line or
  the correction line. Templates must use the placeholders that say which CNIC a line
  answers and who a convict is (:data:`TEMPLATE_NEEDS`).

Wording lives in ``firmware_config/replies.toml`` so that it can be reviewed and corrected
without touching code; :func:`load_templates` checks every key and placeholder up front and
reports all problems at once, because a broken template found at 2 a.m. by a citizen's SMS
is a reply that never goes out.
"""

from __future__ import annotations

import difflib
import enum
import re
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

from appliance.errors import ConfigError, RegistryError, RegistryMisbehaved
from appliance.modem.pdu_text import count_parts
from appliance.registry.record import RELATIONS, OffenderRecord
from appliance.rules.cnic import CnicParse, format_cnic, parse_message

LANGUAGES: tuple[str, ...] = ("ur", "en")
DISCLOSURES: tuple[str, ...] = ("full", "hit-only")
DEFAULT_LANGUAGE = "ur"

_PERSON = frozenset({"cnic", "name", "relation", "parent", "pronoun"})
_ANONYMOUS = frozenset({"cnic", "pronoun"})
#: Every template key and the placeholders it may use.
TEMPLATE_KEYS: Mapping[str, frozenset[str]] = MappingProxyType({
    "hit": _PERSON,
    "hit_only": _ANONYMOUS,
    "no_record": frozenset({"cnic"}),
    "line_hit": _PERSON,
    "line_hit_only": _ANONYMOUS,
    "line_no_record": frozenset({"cnic"}),
    "multi_hit_footer": frozenset(),
    "multi_no_record_footer": frozenset(),
    "extra": frozenset({"max", "extra"}),
    "correction": frozenset(),
    "invalid": frozenset({"count"}),
    "help": frozenset({"max"}),
    "empty": frozenset(),
    "unavailable": frozenset(),
    "limit": frozenset(),
})
#: Placeholders a template must use. A per-line template without ``{cnic}`` cannot say which
#: of several CNICs a line is about: with disclosure "hit-only" the reply would then say
#: "one of these is a convict" and brand every holder. A hit without name, relation and
#: parent does not say who the convict is ("ABC XYZ" could be either person). A one-CNIC
#: "no record" or "hit-only" reply echoes the number, so that the citizen can see that the
#: unit read the number on the card (one mistyped digit turns an offender into "no record").
TEMPLATE_NEEDS: Mapping[str, frozenset[str]] = MappingProxyType({
    "hit": frozenset({"name", "relation", "parent"}),
    "hit_only": frozenset({"cnic"}),
    "no_record": frozenset({"cnic"}),
    "line_hit": frozenset({"cnic", "name", "relation", "parent"}),
    "line_hit_only": frozenset({"cnic"}),
    "line_no_record": frozenset({"cnic"}),
})
#: Sub-tables of words chosen by the record's relation, each keyed by every RELATIONS entry.
WORD_TABLES: tuple[str, ...] = ("relation", "pronoun")

DEFAULT_MAX_PARTS = 4
MAX_PARTS_LIMIT = 10

KINDS: tuple[str, ...] = ("hit", "no_record", "mixed", "invalid", "help", "unavailable",
                          "limit", "empty")


class RegistryState(enum.Enum):
    """What the shell knows about the registry before asking for a reply."""

    OK = "ok"
    STALE = "stale"      # older than its max_age: no verdict may be given
    MISSING = "missing"  # never installed, or unreadable
    CORRUPT = "corrupt"  # content or metadata does not match what was signed (seal.py)


@dataclass(frozen=True)
class Policy:
    """Per-unit reply policy, from ``appliance.toml`` (``appliance.config`` validates it; the service builds it)."""

    language: str = DEFAULT_LANGUAGE
    disclosure: str = "full"
    max_cnics: int = 3
    #: Most SMS parts a verdict reply may take; a longer one is sent in a compact form
    #: (see :data:`COMPACT_FORMS`). ``reply_budget`` checks at start that every reply fits.
    max_parts: int = DEFAULT_MAX_PARTS
    #: Count parts as with 16-bit concatenation references (66 UCS-2 characters a part, not
    #: 67): true when any modem sends with ``concat_ref16``.
    ref16: bool = False

    def __post_init__(self) -> None:
        problems = []
        if self.language not in LANGUAGES:
            problems.append(f"reply language {self.language!r} is not one of {', '.join(LANGUAGES)}")
        if self.disclosure not in DISCLOSURES:
            problems.append(
                f"disclosure {self.disclosure!r} is not one of {', '.join(DISCLOSURES)}")
        if not 1 <= self.max_cnics <= 10:
            problems.append(f"max_cnics {self.max_cnics!r} is outside 1..10")
        if not 1 <= self.max_parts <= MAX_PARTS_LIMIT:
            problems.append(f"max_parts {self.max_parts!r} is outside 1..{MAX_PARTS_LIMIT}")
        if problems:
            raise ConfigError(problems)


@dataclass(frozen=True)
class Verdict:
    """The registry's answer for one CNIC; ``record`` is None for no (active) record."""

    cnic: str
    record: OffenderRecord | None

    @property
    def hit(self) -> bool:
        return self.record is not None


@dataclass(frozen=True)
class Form:
    """How much a verdict reply says beyond the verdicts themselves."""

    names: bool      # name, relation and parent (only with disclosure "full")
    footers: bool    # the several-CNIC footers and the "only the first N" line


#: The forms a verdict reply is tried in, in order; the first within ``Policy.max_parts``
#: is sent. Every form keeps each CNIC's verdict line and, with a hit, the correction line;
#: names go first (the citizen can ask about that one CNIC alone to get them), then the
#: advisory lines. The last form is sent even if it is too long: a verdict is never cut.
COMPACT_FORMS: tuple[Form, ...] = (Form(True, True), Form(False, True), Form(False, False))


@dataclass(frozen=True)
class Reply:
    """One reply SMS text and what it was built from (for the store and the audit log)."""

    text: str
    kind: str
    cnics: tuple[str, ...]
    verdicts: tuple[Verdict, ...]
    form: Form | None = None   # of a verdict reply: the COMPACT_FORMS entry it was sent in


@dataclass(frozen=True)
class LanguageTemplates:
    """The validated templates of one language; :meth:`render` cannot fail on them."""

    texts: Mapping[str, str]
    relation: Mapping[str, str]
    pronoun: Mapping[str, str]

    def render(self, key: str, **values: object) -> str:
        return self.texts[key].format(**values).strip()


@dataclass(frozen=True)
class Templates:
    """Templates for every language in :data:`LANGUAGES`, and the file they came from."""

    languages: Mapping[str, LanguageTemplates]
    source: str = "<templates>"
    #: (language, key) → line in the source file, to name it in error messages.
    lines: Mapping[tuple[str, str], int] = field(
        default_factory=lambda: MappingProxyType({}))

    def where(self, language: str, key: str) -> str:
        """``file: line N: [lang] key`` (the line when known), as config errors name a key."""
        line = self.lines.get((language, key))
        return f"{self.source}: {f'line {line}: ' if line else ''}[{language}] {key}"

    def for_language(self, language: str) -> LanguageTemplates:
        """English when asked for "en", Urdu (the default) for anything else."""
        return self.languages.get(language) or self.languages[DEFAULT_LANGUAGE]


# --- loading -------------------------------------------------------------------------------

def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


_TABLE = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?$")
_KEY = re.compile(r"""\s*(?:"([^"]+)"|'([^']+)'|([A-Za-z0-9_-]+))\s*=""")


def template_lines(text: str) -> dict[tuple[str, str], int]:
    """Where each ``[lang] key`` is set in a replies.toml text (tomllib keeps no positions).

    Only the line a key starts on is needed, so a light scan of table headers and
    ``key =`` lines does. A line inside a multi-line string that looks like one could only
    make an error message name the wrong line, never hide or invent a problem.
    """
    lines: dict[tuple[str, str], int] = {}
    table = ""
    for number, line in enumerate(text.splitlines(), start=1):
        header = _TABLE.match(line)
        if header:
            table = header.group(1)
            continue
        key = _KEY.match(line)
        if key and table:
            name = key.group(1) or key.group(2) or key.group(3)
            lines.setdefault((table, name), number)
    return lines


_NEED_WHY = {
    "cnic": "without it the reply does not say which CNIC it answers (with several CNICs and "
            "disclosure \"hit-only\" it would not say which one is the convict)",
    "person": "without name, relation and parent a hit does not say who the convict is",
}


def _check_template(where: str, text: str, allowed: frozenset[str],
                    needed: frozenset[str] = frozenset()) -> list[str]:
    try:
        fields = [(name, spec, conv) for _, name, spec, conv in string.Formatter().parse(text)
                  if name is not None]
    except ValueError as exc:
        return [f"{where}: not a valid template ({exc}); write a literal brace as {{{{ or }}}}"]
    problems = []
    allowed_text = ", ".join(f"{{{a}}}" for a in sorted(allowed)) or "none"
    for name, spec, conv in fields:
        if name not in allowed:
            problems.append(f"{where}: unknown placeholder {{{name}}}"
                            f"{_did_you_mean(name, sorted(allowed))} (allowed: {allowed_text})")
        elif spec or conv:
            problems.append(f"{where}: placeholder {{{name}}} takes no format spec or conversion")
    if not text.strip():
        problems.append(f"{where}: is empty; every reply must say something")
    missing = sorted(needed - {name for name, _, _ in fields})
    if missing:
        why = _NEED_WHY["cnic" if "cnic" in missing else "person"]
        problems.append(f"{where}: must use {', '.join(f'{{{m}}}' for m in missing)}; {why}")
    return problems


def _check_language(source: str, lang: str, table: Any,
                    lines: Mapping[tuple[str, str], int]) -> list[str]:
    if not isinstance(table, dict):
        return [f"{source}: [{lang}] must be a table of templates"]
    problems: list[str] = []
    known = [*TEMPLATE_KEYS, *WORD_TABLES]
    for key in table:
        if key not in known:
            problems.append(f"{source}: [{lang}] unknown key {key!r}{_did_you_mean(key, known)}")
    for key, allowed in TEMPLATE_KEYS.items():
        line = lines.get((lang, key))
        where = f"{source}: {f'line {line}: ' if line else ''}[{lang}] {key}"
        if key not in table:
            problems.append(f"{where}: missing")
        elif not isinstance(table[key], str):
            problems.append(f"{where}: must be a string")
        else:
            problems.extend(_check_template(where, table[key], allowed,
                                            TEMPLATE_NEEDS.get(key, frozenset())))
    for key in WORD_TABLES:
        words, where = table.get(key), f"{source}: [{lang}.{key}]"
        if not isinstance(words, dict):
            problems.append(f"{where}: missing table with keys {', '.join(RELATIONS)}")
            continue
        for rel in words:
            if rel not in RELATIONS:
                problems.append(f"{where}: unknown key {rel!r}"
                                f"{_did_you_mean(rel, list(RELATIONS))}")
        for rel in RELATIONS:
            if not isinstance(words.get(rel), str) or not words[rel].strip():
                problems.append(f"{where}: {rel!r} is missing or not a non-empty string")
    return problems


def parse_templates(data: Mapping[str, Any], source: str = "<templates>",
                    text: str = "") -> Templates:
    """Validate already-parsed TOML *data* (*text*: the file, for line numbers); raise
    ConfigError listing every problem."""
    lines = template_lines(text)
    problems: list[str] = []
    for lang in data:
        if lang not in LANGUAGES:
            problems.append(f"{source}: unknown table [{lang}]"
                            f"{_did_you_mean(lang, list(LANGUAGES))}")
    for lang in LANGUAGES:
        if lang not in data:
            problems.append(f"{source}: [{lang}] missing (every language needs every template)")
        else:
            problems.extend(_check_language(source, lang, data[lang], lines))
    if problems:
        raise ConfigError(problems)
    return Templates(
        languages=MappingProxyType({
            lang: LanguageTemplates(
                texts=MappingProxyType({k: data[lang][k] for k in TEMPLATE_KEYS}),
                relation=MappingProxyType({r: data[lang]["relation"][r] for r in RELATIONS}),
                pronoun=MappingProxyType({r: data[lang]["pronoun"][r] for r in RELATIONS}),
            )
            for lang in LANGUAGES
        }),
        source=source,
        lines=MappingProxyType(lines),
    )


def load_templates(path: Path) -> Templates:
    """Read and validate the reply templates (``firmware_config/replies.toml``)."""
    try:
        text = Path(path).read_text(encoding="utf-8")
        data = tomllib.loads(text)
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read reply templates ({exc.strerror or exc}); "
                          "check the path in appliance.toml") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid UTF-8 TOML ({exc}); "
                          "compare with the shipped firmware_config/replies.toml") from exc
    return parse_templates(data, str(path), text)


# --- replying ------------------------------------------------------------------------------

def _verdict(cnic: str, lookup: Callable[[str], OffenderRecord | None]) -> Verdict:
    record = lookup(cnic)
    if record is not None and record.cnic != cnic:
        raise RegistryMisbehaved(f"the registry answered for another CNIC than {cnic[:5]}…")
    return Verdict(cnic, record if record is not None and record.is_active else None)


def _clean(text: str) -> str:
    return " ".join(text.split())


def _person(record: OffenderRecord, lang: LanguageTemplates, english: bool) -> dict[str, str]:
    """Placeholder values for a hit; the other script stands in when one name is blank."""
    name = (record.name_en or record.name_ur) if english else (record.name_ur or record.name_en)
    parent = (record.parent_en or record.parent_ur) if english else \
        (record.parent_ur or record.parent_en)
    return {"name": _clean(name), "parent": _clean(parent),
            "relation": lang.relation[record.relation], "pronoun": lang.pronoun[record.relation]}


def parts_of(text: str, policy: Policy) -> int:
    """SMS parts ``text`` takes as the modem layer would send it."""
    return count_parts(text, ref16=policy.ref16)[0]


def _verdict_text(parsed: CnicParse, verdicts: tuple[Verdict, ...], lang: LanguageTemplates,
                  policy: Policy, form: Form = COMPACT_FORMS[0]) -> str:
    full = policy.disclosure == "full" and form.names
    english = policy.language == "en"
    single = len(verdicts) == 1
    lines: list[str] = []
    for v in verdicts:
        values: dict[str, str] = {"cnic": format_cnic(v.cnic)}
        if v.record is None:
            key = "no_record" if single else "line_no_record"
        else:
            values.update(_person(v.record, lang, english))
            key = ("hit" if full else "hit_only") if single else \
                ("line_hit" if full else "line_hit_only")
        lines.append(lang.render(key, **values))
    hits = sum(v.hit for v in verdicts)
    if not single and hits and form.footers:
        lines.append(lang.render("multi_hit_footer"))
    if not single and hits < len(verdicts) and form.footers:
        lines.append(lang.render("multi_no_record_footer"))
    if parsed.extra and form.footers:
        lines.append(lang.render("extra", max=len(verdicts), extra=parsed.extra))
    if hits:
        lines.append(lang.render("correction"))
    return "\n".join(lines)


def _kind(verdicts: tuple[Verdict, ...]) -> str:
    hits = sum(v.hit for v in verdicts)
    return "hit" if hits == len(verdicts) else "no_record" if hits == 0 else "mixed"


def respond(text: str | CnicParse, lookup: Callable[[str], OffenderRecord | None],
            templates: Templates, policy: Policy, registry: RegistryState = RegistryState.OK,
            forms: tuple[Form, ...] = COMPACT_FORMS) -> Reply:
    """Build the one reply to the SMS *text* (or to its CNICs, if the caller parsed it with
    :func:`~appliance.rules.cnic.parse_message` and the policy's ``max_cnics`` already).

    ``lookup`` gets 13 ASCII digits and returns the record or None; it is called only when
    *registry* is OK, once per distinct CNIC, at most ``policy.max_cnics`` times. A
    :class:`~appliance.errors.RegistryError` from it turns the whole reply into
    "unavailable" (the shell learns of it from ``Reply.kind``). A verdict reply is sent
    in the first of ``forms`` within ``policy.max_parts`` parts, else in the last.
    """
    lang = templates.for_language(policy.language)
    parsed = (text if isinstance(text, CnicParse)
              else parse_message(text, max_cnics=policy.max_cnics))
    unavailable = Reply(lang.render("unavailable"), "unavailable", parsed.cnics, ())
    if registry is not RegistryState.OK:
        return unavailable
    if parsed.cnics:
        try:
            verdicts = tuple(_verdict(c, lookup) for c in parsed.cnics)
        except RegistryError:
            return unavailable
        for form in forms:
            body = _verdict_text(parsed, verdicts, lang, policy, form)
            if parts_of(body, policy) <= policy.max_parts:
                break
        return Reply(body, _kind(verdicts), parsed.cnics, verdicts, form)
    if parsed.invalid:
        return Reply(lang.render("invalid", count=len(parsed.invalid[0])), "invalid", (), ())
    if parsed.is_help:
        return Reply(lang.render("help", max=policy.max_cnics), "help", (), ())
    return Reply(lang.render("empty"), "empty", (), ())


def limit_reply(templates: Templates, policy: Policy) -> Reply:
    """The reply for a sender over the per-sender limit (the guard decides when: ``service/guard.py``)."""
    return Reply(templates.for_language(policy.language).render("limit"), "limit", (), ())
