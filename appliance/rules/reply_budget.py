"""Every reply the templates can produce fits ``replies.max_parts`` SMS parts.

A template is text a person edits; one pasted paragraph too many turned a reply into 72 SMS
parts (credit gone, and a SIM that sends bulk SMS gets suspended). So before the service
answers anyone, this module renders every kind of reply the responder can give — through
the responder itself, so the two cannot drift — at the longest it can be, and counts its
parts as the modem layer would send them:

* every verdict reply: 1 to ``max_cnics`` CNICs, every mix of hits and no-records, every
  relation, with and without the "only the first N numbers" line, with names as long as the
  registry's longest (or :data:`NAME_BOUND` without a registry), and a 4-digit count of
  extra CNICs; the responder sends a verdict reply in the first of its compact forms that
  fits (``responder.COMPACT_FORMS``: names dropped, then footers), so what must fit is
  the form it would send;
* a one-CNIC hit *with its names*: the reply the unit exists for must keep them;
* "invalid" (with a 4-digit count), "help", "empty", "unavailable" and "limit".

Problems name the file, the line and the key of the template that weighs most in the
failing reply, like the configuration's own errors. :func:`check` runs at start with the
installed registry's longest names capped at :data:`NAME_BOUND` (the bound itself without
a registry): a failure stops the unit (``ConfigError``), because only the templates or
``max_parts`` can be at fault. :func:`check_names` runs again with the uncapped names of
each installed registry version (at start and after every apply), where a failure is an
alarm, not a stop: the registry is data a technician cannot fix, and the responder still
keeps the reply within ``max_parts`` by leaving those names out.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass

from ..modem.pdu_text import count_parts
from ..registry.record import RELATIONS, OffenderRecord
from .responder import (
    COMPACT_FORMS, Form, Policy, RegistryState, Templates, limit_reply, parts_of, respond,
)

#: Longest name, and longest parent's name, assumed when no registry is installed yet
#: (characters). A chosen bound, not a measured one: room for four long words, twice the
#: longest names of the sample registry and of scripts/gen_registry.py's synthetic ones.
#: Once a registry is installed its own longest names are used (capped at this bound at
#: start; longer ones raise the "reply_names" alarm).
NAME_BOUND = 40

#: {count} and {extra} at their widest: 4 digits. A long SMS reassembled from 255 parts
#: holds about 17,000 characters, so fewer than 10,000 digits and about 1,200 CNICs.
_BIG_COUNT = 1000

# Probe names: Arabic-script letters for Urdu (UCS-2, as real Urdu names are), "W" for
# English names (GSM-7, as Latin names are; a name outside GSM-7 makes its reply UCS-2,
# and the responder's compact forms still keep that reply within max_parts).
_PROBE_LETTER = {"ur": "ب", "en": "W"}


@dataclass(frozen=True)
class NameLengths:
    """Longest offender name and parent's name to plan for, and where they come from."""

    name: int
    parent: int
    origin: str

    def at_most(self, bound: NameLengths) -> NameLengths:
        """These lengths, each no longer than ``bound``'s."""
        if self.name <= bound.name and self.parent <= bound.parent:
            return self
        return NameLengths(min(self.name, bound.name), min(self.parent, bound.parent),
                           f"{self.origin}, capped at {bound.origin}")


BOUND = NameLengths(NAME_BOUND, NAME_BOUND, f"the bound for a unit without a registry "
                    f"({NAME_BOUND} characters)")


@dataclass(frozen=True)
class Case:
    """One reply as the responder would send it, and what it is made of."""

    label: str                # what a technician would call this reply
    keys: tuple[str, ...]     # the templates in it, heaviest first
    text: str


def _cnics(count: int) -> list[str]:
    return [f"3{i:012d}" for i in range(1, count + 1)]


def _record(cnic: str, lengths: NameLengths, language: str, relation: str) -> OffenderRecord:
    letter = _PROBE_LETTER.get(language, "W")
    name, parent = letter * max(lengths.name, 1), letter * max(lengths.parent, 1)
    return OffenderRecord(cnic, name, name, parent, parent, relation, "active")


def _verdict_keys(n: int, hits: int, extra: bool, form: Form, policy: Policy) -> list[str]:
    """The templates a verdict reply of this shape is made of, in ``form``."""
    single, named = n == 1, policy.disclosure == "full" and form.names
    keys: list[str] = []
    if hits:
        keys.append(("hit" if named else "hit_only") if single else
                    ("line_hit" if named else "line_hit_only"))
    if hits < n:
        keys.append("no_record" if single else "line_no_record")
    if form.footers and not single:
        keys += (["multi_hit_footer"] if hits else []) + \
                (["multi_no_record_footer"] if hits < n else [])
    if form.footers and extra:
        keys.append("extra")
    if hits:
        keys.append("correction")
    return keys


def cases(templates: Templates, policy: Policy, lengths: NameLengths) -> Iterator[Case]:
    """Every reply shape at its longest, as the responder would send it."""
    texts = templates.for_language(policy.language).texts
    asked = _cnics(policy.max_cnics + _BIG_COUNT)
    for n in range(1, policy.max_cnics + 1):
        for hits in range(n + 1):
            for extra in ((False, True) if n == policy.max_cnics else (False,)):
                for relation in (RELATIONS if hits else RELATIONS[:1]):
                    records = {c: _record(c, lengths, policy.language, relation)
                               for c in asked[:hits]}
                    sms = " ".join(asked[:n + (_BIG_COUNT if extra else 0)])
                    reply = respond(sms, records.get, templates, policy)
                    assert reply.form is not None  # a verdict reply always has one
                    keys = _verdict_keys(n, hits, extra, reply.form, policy)
                    label = (f"{n} CNIC{'s' if n > 1 else ''} with {hits} hit(s)"
                             + (f" and {_BIG_COUNT} CNICs over max_cnics" if extra else "")
                             + ("" if reply.form.names or hits == 0
                                or policy.disclosure != "full"
                                else ", sent without names"
                                + ("" if reply.form.footers else " and footers")))
                    yield Case(label, _heaviest(texts, keys), reply.text)
    nothing = _no_lookup
    yield Case(f"a number of {_BIG_COUNT} digits", ("invalid",),
               respond("1" * _BIG_COUNT, nothing, templates, policy).text)
    yield Case("help", ("help",), respond("help", nothing, templates, policy).text)
    yield Case("an SMS without a number", ("empty",),
               respond("", nothing, templates, policy).text)
    yield Case("registry unavailable", ("unavailable",),
               respond("", nothing, templates, policy, RegistryState.STALE).text)
    yield Case("over the per-sender limit", ("limit",), limit_reply(templates, policy).text)


def one_cnic_hit(templates: Templates, policy: Policy, lengths: NameLengths) -> Case:
    """The one-CNIC hit with its names (in full disclosure), at the longest relation word."""
    longest = ""
    for relation in RELATIONS:
        cnic = _cnics(1)[0]
        record = _record(cnic, lengths, policy.language, relation)
        text = respond(cnic, lambda c: record, templates, policy,
                       forms=COMPACT_FORMS[:1]).text
        longest = max(longest, text, key=len)
    keys = ("hit", "correction") if policy.disclosure == "full" else ("hit_only", "correction")
    return Case("a one-CNIC hit with its names", keys, longest)


def check(templates: Templates, policy: Policy,
          lengths: NameLengths = BOUND) -> list[str]:
    """Problems (empty when every reply fits), one per template that weighs most in a reply
    over ``policy.max_parts``, naming file, line and key: :func:`check_replies` and
    :func:`check_names`."""
    return check_replies(templates, policy, lengths) + check_names(templates, policy, lengths)


def check_replies(templates: Templates, policy: Policy,
                  lengths: NameLengths = BOUND) -> list[str]:
    """Every reply, in the form the responder would send it, fits ``max_parts``."""
    worst: dict[str, tuple[int, Case]] = {}
    for case in cases(templates, policy, lengths):
        n = parts_of(case.text, policy)
        if n > policy.max_parts and n > worst.get(case.keys[0], (0, case))[0]:
            worst[case.keys[0]] = (n, case)
    return [_problem(templates, policy, key, n, case, lengths)
            for key, (n, case) in worst.items()]


def check_names(templates: Templates, policy: Policy, lengths: NameLengths) -> list[str]:
    """The one-CNIC hit keeps its names at these lengths (empty list), or the problem."""
    if policy.disclosure != "full":
        return []
    case = one_cnic_hit(templates, policy, lengths)
    n = parts_of(case.text, policy)
    if n <= policy.max_parts:
        return []
    return [_problem(templates, policy, "hit", n, case, lengths)]


def _problem(templates: Templates, policy: Policy, key: str, n: int, case: Case,
             lengths: NameLengths) -> str:
    encoding = count_parts(case.text, ref16=policy.ref16)[1]
    others = [k for k in case.keys if k != key]
    names = f"; names as long as {lengths.origin}" if key in ("hit", "line_hit") else ""
    also = f" (with {', '.join(others)})" if others else ""
    fewer = ", lower replies.max_cnics" if "CNICs" in case.label else ""
    return (f"{templates.where(policy.language, key)}: the reply \"{case.label}\"{also} "
            f"needs {n} SMS parts ({len(case.text)} characters in "
            f"{_ALPHABET.get(encoding, encoding)}){names}; "
            f"replies.max_parts is {policy.max_parts}: shorten the template{fewer} "
            f"or raise replies.max_parts")


def lengths_of(longest: tuple[int, int, int | None] | None) -> NameLengths | None:
    """A registry's longest name and parent's name, and its version
    (:func:`appliance.registry.names.longest_names`), as lengths to plan for."""
    if longest is None:
        return None
    name, parent, version = longest
    return NameLengths(name, parent, f"the longest in registry version {version} "
                                     f"({name} and {parent} characters)")


_ALPHABET = {"ucs2": "UCS-2", "gsm7": "GSM-7"}


def _no_lookup(cnic: str) -> OffenderRecord | None:
    return None


def _heaviest(texts: Mapping[str, str], keys: list[str]) -> tuple[str, ...]:
    """Keys by template length, longest first (the one to name in a problem)."""
    return tuple(sorted(keys, key=lambda k: -len(texts.get(k, ""))))
