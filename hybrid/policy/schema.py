"""What a policy file may say: tenants and their service tiers, the rules that always win, and the
restrictions each data class puts on models. Pydantic checks each field; `cross_check` checks what
one part says about another (a tenant's tier exists, a key is listed once, ...).

Every check yields the path of the offending value (`tiers.free.budget.daily`), which
`hybrid.policy.loading` turns into the file's line.
"""

from __future__ import annotations

import fnmatch
import re
from collections import Counter
from collections.abc import Iterator
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BaseModel, BeforeValidator, ConfigDict, Field, model_validator

from hybrid.settings import PER_RUN_FIELDS

ModelTier = Literal["small", "large"]
Action = Literal["route_small", "route_large", "human_review", "refuse", "require_kb", "set_data_class"]
DETECTED_CLASSES = ("none", "personal", "secret")
"""The data classes `hybrid.sensitivity` detects, least sensitive first."""
DEFAULT_OVERRIDES = (
    "temperature",
    "max_answer_tokens",
    "user_id",
    "retrieval",
    "retrieval_k",
    "retrieval_mode",
    "history_turns",
    "cache",
)
"""Per-run settings a tenant's key may send when its tier does not list its own: none of them moves
a query to another model or around a rule."""
_KEY_HASH = re.compile(r"sha256:[0-9a-f]{64}")
Path = tuple[str | int, ...]


def _key_hash(value: str) -> str:
    if not _KEY_HASH.fullmatch(value):
        raise ValueError(
            "an API key is listed by its hash, 'sha256:' and 64 lower-case hex digits "
            "(`hybrid policy new-key` makes a key and its hash)"
        )
    return value


def _regex(value: str) -> str:
    try:
        re.compile(value)
    except re.error as exc:
        raise ValueError(f"not a regular expression: {exc}") from None
    return value


def _listed(value: Any) -> Any:
    """One item or a list of them."""
    return [value] if isinstance(value, str) else value


KeyHash = Annotated[str, AfterValidator(_key_hash)]
Regex = Annotated[str, AfterValidator(_regex)]
Names = Annotated[list[str], BeforeValidator(_listed), Field(min_length=1)]
Regexes = Annotated[list[Regex], BeforeValidator(_listed), Field(min_length=1)]


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Budget(_Strict):
    """Spend limits of one tenant; a tier's budget applies to each of its tenants separately."""

    daily: float | None = Field(None, gt=0, description="Cost per UTC day.")
    monthly: float | None = Field(None, gt=0, description="Cost per UTC calendar month.")
    when_spent: Literal["small_only", "refuse"] = Field(
        "small_only",
        description="Once spent: small_only (the large tier is skipped) or refuse (429 and Retry-After "
        "until the next period).",
    )
    step_down_from: float = Field(
        0.8, ge=0, lt=1, description="Share of a budget spent at which the routing threshold starts to rise."
    )
    max_rise: float = Field(0.3, ge=0, le=2, description="How far the threshold has risen when it is spent.")

    @model_validator(mode="after")
    def _a_limit(self) -> Budget:
        if self.daily is None and self.monthly is None:
            raise ValueError("a budget needs daily, monthly or both")
        return self


class LoadShift(_Strict):
    """How a tier's threshold moves toward the small model while the large tier is over objective."""

    step: float = Field(0.05, gt=0, le=1, description="Largest rise per routed query while over objective.")
    max: float = Field(0.3, ge=0, le=2, description="Largest total rise.")
    half_life_s: float = Field(60.0, gt=0, description="Half-life of the rise once load is back under.")


class Review(_Strict):
    allowed: bool = True
    instead: Literal["unverified", "reject"] = Field(
        "reject",
        description="Without review: give the best draft marked unverified, or reject with `message`.",
    )
    message: str = Field("Human review is not part of this service tier.", min_length=1)


class Retention(_Strict):
    """What the audit log, the feedback table, the log lines and the answer cache keep."""

    prompts: Literal["keep", "hash"] = "keep"
    answers: Literal["keep", "hash"] = "keep"


class RateLimit(_Strict):
    requests: int = Field(gt=0, description="Requests a key may send per window (and at once).")
    per_s: float = Field(60.0, gt=0, description="The window, in seconds.")


class Tier(_Strict):
    """A service tier: what its tenants may use and what they are promised."""

    priority: int = Field(0, description="Higher goes first when requests wait for a run slot.")
    models: Annotated[list[ModelTier], BeforeValidator(_listed)] = Field(
        default_factory=lambda: ["small", "large"], min_length=1, description="Model tiers it may use."
    )
    threshold_offset: float = Field(
        0.0, ge=-1, le=1, description="Added to the router's threshold (positive: fewer large calls)."
    )
    latency_objective_s: float | None = Field(
        None, gt=0, description="The large tier's p95 latency this tier is promised."
    )
    queue_objective: int | None = Field(
        None, ge=1, description="Large-model calls in flight beyond which this tier shifts toward small."
    )
    load_shift: LoadShift = Field(default_factory=LoadShift)
    budget: Budget | None = None
    review: Review = Field(default_factory=Review)
    retention: Retention = Field(default_factory=Retention)
    rate_limit: RateLimit | None = None
    overrides: list[str] | None = Field(
        None, description="Per-run settings its keys may send (default: those that move no query)."
    )

    @property
    def allowed_overrides(self) -> tuple[str, ...]:
        return tuple(self.overrides) if self.overrides is not None else DEFAULT_OVERRIDES


class Tenant(_Strict):
    tier: str
    keys: list[KeyHash] = Field(default_factory=list)
    budget: Budget | None = Field(None, description="This tenant's own budget, instead of its tier's.")


class Match(_Strict):
    """When a rule applies: every condition given must hold; a list holds when any item does."""

    regex: Regexes | None = None
    keywords: Names | None = None
    examples: Names | None = None
    similarity: float | None = Field(None, gt=0, le=1)
    data_class: Names | None = None
    tenant: Names | None = None
    tier: Names | None = None
    user: Regex | None = None
    header: dict[str, Regex] | None = None

    @model_validator(mode="after")
    def _something(self) -> Match:
        conditions = set(type(self).model_fields) - {"similarity"}
        if all(getattr(self, name) is None for name in conditions):
            raise ValueError(
                "a rule needs at least one condition: regex, keywords, examples, data_class, tenant, "
                "tier, user or header"
            )
        return self


class Rule(_Strict):
    name: str = Field(min_length=1)
    when: Match
    action: Action
    message: str | None = Field(None, min_length=1, description="What a refused question is told.")
    data_class: str | None = Field(None, description="The class set_data_class sets.")


class Restriction(_Strict):
    """What data of a class (and every more sensitive class) may not be sent to."""

    deny: Names | None = Field(None, description="Model specs, with * and ? wildcards, never used.")
    allow: Names | None = Field(None, description="Only these model specs are used.")
    refuse: str | None = Field(None, min_length=1, description="Refuse the question with this message.")


class Policy(_Strict):
    version: Literal[1] = 1
    default_tier: str | None = Field(None, description="Tier of requests without a tenant's key.")
    data_classes: list[str] = Field(default_factory=lambda: list(DETECTED_CLASSES), min_length=3)
    tiers: dict[str, Tier] = Field(default_factory=dict)
    tenants: dict[str, Tenant] = Field(default_factory=dict)
    admins: list[KeyHash] = Field(default_factory=list, description="Keys that see every tenant's data.")
    rules: list[Rule] = Field(default_factory=list)
    restrictions: dict[str, Restriction] = Field(default_factory=dict)


def dotted(path: Path) -> str:
    """A readable path: `rules[2].when.regex`."""
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _known(names: list[str], known: Any, what: str) -> str | None:
    unknown = [n for n in names if n not in known]
    if not unknown:
        return None
    listed = ", ".join(sorted(known)) or "none declared"
    return f"unknown {what} {', '.join(map(repr, unknown))} (known: {listed})"


def cross_check(policy: Policy) -> Iterator[tuple[Path, str]]:
    """What one part of the policy says about another: each problem with the path it is at."""
    classes = policy.data_classes
    for name, count in Counter(classes).items():
        if count > 1:
            yield ("data_classes",), f"data class {name!r} is listed {count} times"
    missing = [c for c in DETECTED_CLASSES if c not in classes]
    if missing:
        yield ("data_classes",), f"must list the detected classes {', '.join(missing)} too"
    elif [c for c in classes if c in DETECTED_CLASSES] != list(DETECTED_CLASSES):
        yield ("data_classes",), "none, personal and secret must stay in that order (least sensitive first)"
    if policy.default_tier is not None and (problem := _known([policy.default_tier], policy.tiers, "tier")):
        yield ("default_tier",), problem
    for name, tier in policy.tiers.items():
        for count_name, count in Counter(tier.models).items():
            if count > 1:
                yield ("tiers", name, "models"), f"model tier {count_name!r} is listed {count} times"
        if tier.overrides is not None and (
            problem := _known(tier.overrides, PER_RUN_FIELDS, "per-run setting")
        ):
            yield ("tiers", name, "overrides"), problem
    owners: dict[str, Path] = {}
    for index, key in enumerate(policy.admins):
        if key in owners:
            yield ("admins", index), "this key is listed twice"
        owners[key] = ("admins", index)
    for name, tenant in policy.tenants.items():
        if problem := _known([tenant.tier], policy.tiers, "tier"):
            yield ("tenants", name, "tier"), problem
        for index, key in enumerate(tenant.keys):
            if key in owners:
                where = dotted(owners[key])
                yield ("tenants", name, "keys", index), f"this key is already listed at {where}"
            owners[key] = ("tenants", name, "keys", index)
    yield from _check_rules(policy)
    for name, restriction in policy.restrictions.items():
        if problem := _known([name], classes, "data class"):
            yield ("restrictions", name), problem
        if restriction.deny is None and restriction.allow is None and restriction.refuse is None:
            yield ("restrictions", name), "a restriction needs deny, allow or refuse"


def _check_rules(policy: Policy) -> Iterator[tuple[Path, str]]:
    classes = policy.data_classes
    seen: dict[str, int] = {}
    for index, rule in enumerate(policy.rules):
        at: Path = ("rules", index)
        if rule.name in seen:
            yield (*at, "name"), f"rule name {rule.name!r} is already used by rule {seen[rule.name] + 1}"
        seen.setdefault(rule.name, index)
        if rule.action == "refuse" and rule.message is None:
            yield at, "a refuse rule needs a message (what the asker is told)"
        if rule.action != "refuse" and rule.message is not None:
            yield (*at, "message"), "only a refuse rule has a message"
        if rule.action == "set_data_class":
            if rule.data_class is None:
                yield at, "a set_data_class rule needs data_class"
            elif problem := _known([rule.data_class], classes, "data class"):
                yield (*at, "data_class"), problem
        elif rule.data_class is not None:
            yield (*at, "data_class"), "only a set_data_class rule sets data_class (match on when.data_class)"
        when = rule.when
        if when.similarity is not None and when.examples is None:
            yield (*at, "when", "similarity"), "similarity is the threshold of examples: give examples"
        for field, known, what in (
            ("data_class", classes, "data class"),
            ("tier", policy.tiers, "tier"),
            ("tenant", policy.tenants, "tenant"),
        ):
            values = getattr(when, field)
            if values is not None and (problem := _known(values, known, what)):
                yield (*at, "when", field), problem


def spec_matches(spec: str, patterns: list[str]) -> bool:
    """Whether a model spec matches any pattern (`openai:*`, `ollama:llama3*`), case-sensitively."""
    return any(fnmatch.fnmatchcase(spec, pattern) for pattern in patterns)
