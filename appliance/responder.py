"""SMS text → verdicts → one reply text (pure, apart from :func:`load_templates`).

The responder is where the safety rules of the service live, so they are in one place and
testable without a modem or a database (DESIGN.md, decision 6):

* A "convict" reply needs an exact match: the record returned for a CNIC must carry that
  CNIC and be ``active``; a ``removed`` record answers as no record.
* A registry that is stale or missing, or a lookup that fails, gives "service temporarily
  unavailable" for every message: never "no record", never a hit, and the lookup is not
  called at all when the shell already knows the registry is unusable.
* The relation word (ولد / بنت / زوجہ) comes from the record, never from the CNIC's last
  digit; no victim or offence detail exists in a record, so none can reach a reply.
* Every reply with a hit carries the correction channel; the disclosure level "hit-only"
  leaves name and parentage out.

Wording lives in ``firmware_config/replies.toml`` so that it can be reviewed and corrected
without touching code; :func:`load_templates` checks every key and placeholder up front and
reports all problems at once, because a broken template found at 2 a.m. by a citizen's SMS
is a reply that never goes out.
"""

from __future__ import annotations

import difflib
import enum
import string
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType
from typing import Any

from appliance.cnic import CnicParse, format_cnic, parse_message
from appliance.errors import ConfigError, RegistryError
from appliance.registry.record import RELATIONS, OffenderRecord

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
#: Sub-tables of words chosen by the record's relation, each keyed by every RELATIONS entry.
WORD_TABLES: tuple[str, ...] = ("relation", "pronoun")

KINDS: tuple[str, ...] = ("hit", "no_record", "mixed", "invalid", "help", "unavailable",
                          "limit", "empty")


class RegistryState(enum.Enum):
    """What the shell knows about the registry before asking for a reply."""

    OK = "ok"
    STALE = "stale"      # older than its max_age: no verdict may be given (StaleRegistry)
    MISSING = "missing"  # never installed, or unreadable
    CORRUPT = "corrupt"  # content or metadata does not match what was signed (seal.py)


@dataclass(frozen=True)
class Policy:
    """Per-unit reply policy, from ``appliance.toml`` (config.py validates and builds it)."""

    language: str = DEFAULT_LANGUAGE
    disclosure: str = "full"
    max_cnics: int = 3

    def __post_init__(self) -> None:
        problems = []
        if self.language not in LANGUAGES:
            problems.append(f"reply language {self.language!r} is not one of {', '.join(LANGUAGES)}")
        if self.disclosure not in DISCLOSURES:
            problems.append(
                f"disclosure {self.disclosure!r} is not one of {', '.join(DISCLOSURES)}")
        if not 1 <= self.max_cnics <= 10:
            problems.append(f"max_cnics {self.max_cnics!r} is outside 1..10")
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
class Reply:
    """One reply SMS text and what it was built from (for the store and the audit log)."""

    text: str
    kind: str
    cnics: tuple[str, ...]
    verdicts: tuple[Verdict, ...]


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

    def for_language(self, language: str) -> LanguageTemplates:
        """English when asked for "en", Urdu (the default) for anything else."""
        return self.languages.get(language) or self.languages[DEFAULT_LANGUAGE]


# --- loading -------------------------------------------------------------------------------

def _did_you_mean(word: str, choices: list[str]) -> str:
    close = difflib.get_close_matches(word, choices, n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _check_template(where: str, text: str, allowed: frozenset[str]) -> list[str]:
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
    return problems


def _check_language(source: str, lang: str, table: Any) -> list[str]:
    if not isinstance(table, dict):
        return [f"{source}: [{lang}] must be a table of templates"]
    problems: list[str] = []
    known = [*TEMPLATE_KEYS, *WORD_TABLES]
    for key in table:
        if key not in known:
            problems.append(f"{source}: [{lang}] unknown key {key!r}{_did_you_mean(key, known)}")
    for key, allowed in TEMPLATE_KEYS.items():
        where = f"{source}: [{lang}] {key}"
        if key not in table:
            problems.append(f"{where}: missing")
        elif not isinstance(table[key], str):
            problems.append(f"{where}: must be a string")
        else:
            problems.extend(_check_template(where, table[key], allowed))
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


def parse_templates(data: Mapping[str, Any], source: str = "<templates>") -> Templates:
    """Validate already-parsed TOML *data*; raise ConfigError listing every problem."""
    problems: list[str] = []
    for lang in data:
        if lang not in LANGUAGES:
            problems.append(f"{source}: unknown table [{lang}]"
                            f"{_did_you_mean(lang, list(LANGUAGES))}")
    for lang in LANGUAGES:
        if lang not in data:
            problems.append(f"{source}: [{lang}] missing (every language needs every template)")
        else:
            problems.extend(_check_language(source, lang, data[lang]))
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
    )


def load_templates(path: Path) -> Templates:
    """Read and validate the reply templates (``firmware_config/replies.toml``)."""
    try:
        data = tomllib.loads(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read reply templates ({exc.strerror or exc}); "
                          "check the path in appliance.toml") from exc
    except (UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise ConfigError(f"{path}: not valid UTF-8 TOML ({exc}); "
                          "compare with the shipped firmware_config/replies.toml") from exc
    return parse_templates(data, str(path))


# --- replying ------------------------------------------------------------------------------

class _RegistryMisbehaved(Exception):
    """The lookup answered for a different CNIC: no verdict may be given."""


def _verdict(cnic: str, lookup: Callable[[str], OffenderRecord | None]) -> Verdict:
    record = lookup(cnic)
    if record is not None and record.cnic != cnic:
        raise _RegistryMisbehaved(cnic)
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


def _verdict_text(parsed: CnicParse, verdicts: tuple[Verdict, ...], lang: LanguageTemplates,
                  policy: Policy) -> str:
    full = policy.disclosure == "full"
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
    if not single and hits:
        lines.append(lang.render("multi_hit_footer"))
    if not single and hits < len(verdicts):
        lines.append(lang.render("multi_no_record_footer"))
    if parsed.extra:
        lines.append(lang.render("extra", max=len(verdicts), extra=parsed.extra))
    if hits:
        lines.append(lang.render("correction"))
    return "\n".join(lines)


def _kind(verdicts: tuple[Verdict, ...]) -> str:
    hits = sum(v.hit for v in verdicts)
    return "hit" if hits == len(verdicts) else "no_record" if hits == 0 else "mixed"


def respond(text: str, lookup: Callable[[str], OffenderRecord | None], templates: Templates,
            policy: Policy, registry: RegistryState = RegistryState.OK) -> Reply:
    """Build the one reply to the SMS *text*.

    ``lookup`` gets 13 ASCII digits and returns the record or None; it is called only when
    *registry* is OK, once per distinct CNIC, at most ``policy.max_cnics`` times. A
    :class:`~appliance.errors.RegistryError` from it turns the whole reply into
    "unavailable" (the shell learns of it from ``Reply.kind``).
    """
    lang = templates.for_language(policy.language)
    parsed = parse_message(text, max_cnics=policy.max_cnics)
    unavailable = Reply(lang.render("unavailable"), "unavailable", parsed.cnics, ())
    if registry is not RegistryState.OK:
        return unavailable
    if parsed.cnics:
        try:
            verdicts = tuple(_verdict(c, lookup) for c in parsed.cnics)
        except (RegistryError, _RegistryMisbehaved):
            return unavailable
        return Reply(_verdict_text(parsed, verdicts, lang, policy), _kind(verdicts),
                     parsed.cnics, verdicts)
    if parsed.invalid:
        return Reply(lang.render("invalid", count=len(parsed.invalid[0])), "invalid", (), ())
    if parsed.is_help:
        return Reply(lang.render("help", max=policy.max_cnics), "help", (), ())
    return Reply(lang.render("empty"), "empty", (), ())


def limit_reply(templates: Templates, policy: Policy) -> Reply:
    """The reply for a sender over the per-sender limit (the store decides when)."""
    return Reply(templates.for_language(policy.language).render("limit"), "limit", (), ())
