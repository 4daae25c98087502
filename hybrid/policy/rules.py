"""Which policy rule decides a question, and what its data class allows.

Rules are checked in the file's order and the first that matches wins, with one exception:
`set_data_class` rules classify and let the evaluation go on, so later rules (and the
restrictions) see the class they set. A class only ever rises (a rule cannot declassify what
`hybrid.sensitivity` detected). Then the restrictions of the question's class, and of every
less sensitive class, say which models it may reach, or that it is refused.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from hybrid.policy.loading import LoadedPolicy
from hybrid.policy.schema import Match, Rule, spec_matches

DEFAULT_SIMILARITY = 0.7
"""MiniLM cosine similarity at which a question matches a rule's examples, unless it says."""

Embed = Callable[[Sequence[str]], Any]
"""Texts to unit-length vectors, one row each (MiniLM by default; tests pass a fake)."""


@dataclass(frozen=True)
class RequestFacts:
    """What rules may match on besides the question."""

    tenant: str | None = None
    tier: str | None = None
    user: str | None = None
    metadata: Mapping[str, str] = field(default_factory=dict)
    """Request metadata by lower-case name (`hybrid serve` puts the request's headers here)."""


@dataclass(frozen=True)
class Checked:
    """One rule as the evaluation saw it: matched or not, and why."""

    rule: str
    action: str
    matched: bool
    detail: str


@dataclass(frozen=True)
class Verdict:
    """What the policy decided about one question."""

    rule: Rule | None
    """The rule that won (None: no rule decides; the router does)."""
    matched: str
    """What made it match (`keywords: subpoena`)."""
    data_class: str
    detected: str
    classified_by: tuple[str, ...]
    """Names of the set_data_class rules that raised the class."""
    refusal: str | None
    refused_by: str | None
    """The rule, or `restriction <class>`, that refuses the question."""
    deny: tuple[str, ...]
    allow: tuple[tuple[str, ...], ...]
    """Each applicable `allow` list: a model must match one pattern of every list."""
    restricted_by: tuple[str, ...]
    """Classes whose restrictions apply."""
    checked: tuple[Checked, ...]


def _default_embed(texts: Sequence[str]) -> Any:
    from retrieval.embeddings import embed_remembered

    return embed_remembered(list(texts))


def _words(keyword: str) -> re.Pattern[str]:
    return re.compile(rf"(?<!\w){re.escape(keyword)}(?!\w)", re.IGNORECASE)


class _Matcher:
    """Checks the conditions of rules against one question, embedding it at most once."""

    def __init__(self, loaded: LoadedPolicy, question: str, facts: RequestFacts, embed: Embed | None):
        self.loaded, self.question, self.facts = loaded, question, facts
        self.embed = embed or _default_embed
        self._vector: Any = None

    def _similarity(self, index: int, examples: list[str]) -> float:
        key = f"examples:{index}:{id(self.embed)}"
        with self.loaded.lock:
            vectors = self.loaded.caches.get(key)
        if vectors is None:
            vectors = self.embed(examples)
            with self.loaded.lock:
                self.loaded.caches[key] = vectors
        if self._vector is None:
            self._vector = self.embed([self.question])[0]
        return float(max(vectors @ self._vector))

    def check(self, index: int, when: Match, data_class: str) -> tuple[bool, str]:
        """Whether every condition holds, and what matched (or the first that did not)."""
        facts, found = self.facts, []
        for name, values, actual in (
            ("tenant", when.tenant, facts.tenant),
            ("tier", when.tier, facts.tier),
            ("data_class", when.data_class, data_class),
        ):
            if values is not None:
                if actual not in values:
                    return False, f"{name} is {actual or 'none'}, not {', '.join(values)}"
                found.append(f"{name} {actual}")
        if when.user is not None:
            if not (facts.user and re.search(when.user, facts.user)):
                return False, f"user {facts.user or '(none)'} does not match {when.user!r}"
            found.append(f"user {facts.user}")
        for header, pattern in (when.header or {}).items():
            value = facts.metadata.get(header.lower())
            if value is None or not re.search(pattern, value):
                return False, f"header {header} is {value!r}, not matching {pattern!r}"
            found.append(f"header {header}: {value}")
        if when.regex is not None:
            hit = next((m for p in when.regex if (m := re.search(p, self.question))), None)
            if hit is None:
                return False, "no regex matches"
            found.append(f"regex matched {hit.group(0)!r}")
        if when.keywords is not None:
            hit_word = next((k for k in when.keywords if _words(k).search(self.question)), None)
            if hit_word is None:
                return False, "no keyword found"
            found.append(f"keyword {hit_word!r}")
        if when.examples is not None:
            threshold = when.similarity if when.similarity is not None else DEFAULT_SIMILARITY
            similarity = self._similarity(index, when.examples)
            if similarity < threshold:
                return False, f"closest example {similarity:.2f} < {threshold:.2f}"
            found.append(f"similar to an example ({similarity:.2f} >= {threshold:.2f})")
        return True, "; ".join(found)


def evaluate(
    loaded: LoadedPolicy,
    question: str,
    detected: str,
    facts: RequestFacts,
    *,
    embed: Embed | None = None,
) -> Verdict:
    """The policy's verdict on a question whose detected data class is `detected`."""
    policy = loaded.policy
    order = {name: rank for rank, name in enumerate(policy.data_classes)}
    matcher = _Matcher(loaded, question, facts, embed)
    data_class, classified_by, checked = detected, [], []
    winner: Rule | None = None
    matched = ""
    for index, rule in enumerate(policy.rules):
        hit, detail = matcher.check(index, rule.when, data_class)
        checked.append(Checked(rule.name, rule.action, hit, detail))
        if not hit:
            continue
        if rule.action == "set_data_class":
            assert rule.data_class is not None  # validated
            if order[rule.data_class] > order[data_class]:
                data_class = rule.data_class
            classified_by.append(rule.name)
            continue
        winner, matched = rule, detail
        break
    applicable = [c for c in policy.data_classes[: order[data_class] + 1] if c in policy.restrictions]
    deny: list[str] = []
    allow: list[tuple[str, ...]] = []
    refusal, refused_by = None, None
    for name in applicable:
        restriction = policy.restrictions[name]
        deny += restriction.deny or []
        if restriction.allow is not None:
            allow.append(tuple(restriction.allow))
        if restriction.refuse is not None:
            refusal, refused_by = restriction.refuse, f"restriction {name}"
    if winner is not None and winner.action == "refuse":
        refusal, refused_by = winner.message, winner.name
    return Verdict(
        rule=winner,
        matched=matched,
        data_class=data_class,
        detected=detected,
        classified_by=tuple(classified_by),
        refusal=refusal,
        refused_by=refused_by,
        deny=tuple(dict.fromkeys(deny)),
        allow=tuple(allow),
        restricted_by=tuple(applicable),
        checked=tuple(checked),
    )


def model_allowed(spec: str, verdict: Verdict) -> bool:
    """Whether the question's data class lets it reach this model."""
    if spec_matches(spec, list(verdict.deny)):
        return False
    return all(spec_matches(spec, list(patterns)) for patterns in verdict.allow)
