"""The routing decision: which tier a query starts on, whether it needs the knowledge base, which
models may see it, and why. Every decision is data (`RouteDecision`) with the signals and reasons
behind it.

A scorer judges the query first: the learned router (`score_query`, the default) scores
`need_large`, the accuracy the large model is expected to add; the heuristic
(`hybrid.routing.heuristic`) answers when the learned router is off or its artifact cannot be
read. Then the rules in `RULES` apply in order, the policy file's first (`hybrid.policy`: a rule
there that matches pins the route, and its reason names the rule). A rule reads the query's
`RouteInputs` and the decision so far and returns an `Effect` (a route, the models left to a
tier, and the reason) or None when it does not apply, so a new rule is one function added to the
list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.decisions import Route, RouteDecision, Tier
from hybrid.policy.rules import model_allowed
from hybrid.routing.heuristic import HEURISTIC_THRESHOLD, LABELS, difficulty_score, difficulty_signals
from hybrid.sensitivity import Finding, find_sensitive, kinds, sensitivity_level
from hybrid.settings import Settings
from hybrid.text import words

if TYPE_CHECKING:
    from hybrid.models.state import ModelState
    from hybrid.policy.turn import TurnPolicy
    from hybrid.routing.model import RouterScore

TIERS: tuple[Tier, Tier] = ("small", "large")

_FOLLOW_UP = re.compile(
    r"^(and|what about|how about|why|also|then|so|but|or|are you sure|really)\b"
    r"|\b(it|that|this|they|those|them)\b"
)


def routing_text(question: str, previous_questions: Sequence[str]) -> str:
    """The text the router judges: a short follow-up is judged with the question it follows."""
    if previous_questions and len(words(question)) <= 8 and _FOLLOW_UP.search(question.casefold()):
        return f"{previous_questions[-1]}\n{question}"
    return question


# ---------------------------------------------------------------------------------------------
# Scorers
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LearnedScore:
    """The learned router's judgement of one query, with the artifact that made it."""

    score: RouterScore
    threshold: float
    """The artifact's calibrated threshold on `need_large`."""
    version: str
    """Which artifact: its folder name and training date."""


def score_query(
    text: str, router: Path, extra_features: Mapping[str, float] | None = None, *, label: str | None = None
) -> LearnedScore:
    """Score a routing text with the learned router in folder `router` (loaded once).

    `label` names the router in reasons (its registry version; default: the folder's name)."""
    from hybrid.routing.model import RouterModel
    from retrieval.embeddings import embed_query

    model = RouterModel.load(router)
    # What the text alone gives first: the embedding may still be on its way (`prefetch_query_embedding`).
    columns = model.text_columns([text])
    embedding = embed_query(text, layer=model.embedding_layer) if model.use_embedding else None
    score = model.score(text, embedding, dict(extra_features or {}), columns)
    trained = str(model.meta.get("trained") or model.meta.get("created") or "")[:10]
    return LearnedScore(score, model.threshold, f"{label or router.name} {trained}".strip())


def prefetch_query_embedding(text: str, router: Path) -> None:
    """Begin the embedding `score_query(text, router)` will read, on a background thread."""
    from hybrid.routing.model import RouterModel
    from retrieval.embeddings import prefetch_query

    model = RouterModel.load(router)
    if model.use_embedding:
        prefetch_query(text, model.embedding_layer)


@dataclass(frozen=True)
class Score:
    """What the scorer said: who scored, the score against its threshold, and the route it implies."""

    router: str
    value: float
    threshold: float
    signals: dict[str, float]
    route: Tier
    reason: str


def score(text: str, settings: Settings, learned: LearnedScore | None, learned_error: str | None) -> Score:
    """The learned router's score when there is one, else the heuristic's."""
    if learned is not None:
        from hybrid.routing.model import decide_with_model

        threshold = learned.threshold if settings.route_threshold is None else settings.route_threshold
        route, reason = decide_with_model(learned.score, threshold)
        signals = {
            "need_large": learned.score.need_large,
            "p_small_ok": learned.score.p_small_ok,
            **{f"p_{name}": p for name, p in learned.score.probabilities.items()},
            **{f"effect_{name}": value for name, value in learned.score.top_signals},
        }
        return Score(
            f"learned ({learned.version})", learned.score.need_large, threshold, signals, route, reason
        )
    threshold = HEURISTIC_THRESHOLD if settings.route_threshold is None else settings.route_threshold
    signals = difficulty_signals(text)
    value, contributions = difficulty_score(signals)
    route: Tier = "large" if value >= threshold else "small"
    drivers = ", ".join(f"{LABELS[name]} +{p:.2f}" for name, p in contributions[:3]) or "no signal"
    reason = f"difficulty {value:.2f} {'>=' if route == 'large' else '<'} {threshold:.2f} ({drivers})"
    if learned_error:
        reason += f"; learned router unavailable ({learned_error})"
    return Score("heuristic", value, threshold, signals, route, reason)


def rescore_with_retrieval(route: RouteDecision, rescored: LearnedScore, confidence: float) -> RouteDecision:
    """The route again, now that retrieval's confidence is known (learned routers that use it).

    Only the router's own choice moves: a forced route, or one a hard rule changed, stays.
    """
    from hybrid.routing.model import decide_with_model

    threshold = route["threshold"]
    before = "large" if route["difficulty"] >= threshold else "small"
    after, reason = decide_with_model(rescored.score, threshold)
    if route["forced"] or route["route"] != before or after == before or after not in route["allowed_tiers"]:
        return route
    return {
        **route,
        "route": after,
        "difficulty": round(rescored.score.need_large, 4),
        "signals": {**route["signals"], "retrieval_confidence": round(confidence, 4)},
        "reasons": [*route["reasons"], f"re-scored with retrieval confidence {confidence:.2f}: {reason}"],
    }


# ---------------------------------------------------------------------------------------------
# Rules
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RouteInputs:
    """Everything a rule may read about one query."""

    question: str
    text: str
    """The routing text (`routing_text`): the question, or a short follow-up with its predecessor."""
    settings: Settings
    scored: Score
    findings: list[Finding]
    model_is_local: Callable[[str], bool]
    budget_exhausted: str | None = None
    model_states: Mapping[str, ModelState] = field(default_factory=dict)
    prompt_tokens: int = 0
    policy: TurnPolicy | None = None
    """The policy file's say on this query (hybrid.policy): its rules, tier, shifts."""
    kb_available: bool = True


@dataclass
class Decision:
    """The decision so far: the route and the models each tier may still use."""

    route: Route
    models: dict[str, list[str]]
    reasons: list[str] = field(default_factory=list)
    pinned: str | None = None
    """The policy rule that fixed the route: later rules may take models away, not move it."""
    threshold: float | None = None
    """The threshold after policy shifts (None: the scorer's)."""
    require_kb: bool = False
    refusal: str | None = None

    @property
    def allowed(self) -> list[Tier]:
        return [tier for tier in TIERS if self.models[tier]]


@dataclass(frozen=True)
class Effect:
    """What a rule does: maybe a new route, maybe fewer models for a tier, and why."""

    reason: str
    route: Route | None = None
    models: dict[str, list[str]] | None = None
    decisive: bool = False
    """The reason that chose the route (the scorer's, or an override): it is listed first."""
    then: str | None = None
    """A second reason, when the rule found two things (models dropped, so the route moved)."""
    pin: str | None = None
    """A policy rule's name: the route it sets stands (`Decision.pinned`)."""
    threshold: float | None = None
    require_kb: bool = False
    refusal: str | None = None


Rule = Callable[[RouteInputs, Decision], Effect | None]


_POLICY_ROUTES: dict[str, Route] = {"route_small": "small", "route_large": "large", "human_review": "human"}


def policy_rule(inputs: RouteInputs, decision: Decision) -> Effect | None:
    """The policy file's rules always win: the first that matches decides (docs/policies.md)."""
    if inputs.policy is None:
        return None
    verdict = inputs.policy.verdict
    notes = []
    if verdict.classified_by:
        by = ", ".join(map(repr, verdict.classified_by))
        notes.append(f"data class {verdict.data_class} set by policy rule {by}")
    if verdict.refusal is not None:
        return Effect(
            f"refused by policy {verdict.refused_by}: {verdict.refusal}",
            decisive=True,
            pin=verdict.refused_by,
            refusal=verdict.refusal,
            then="; ".join(notes) or None,
        )
    rule = verdict.rule
    if rule is None:
        return Effect("; ".join(notes)) if notes else None
    said = f"policy rule {rule.name!r} ({verdict.matched})"
    then = "; ".join(notes) or None
    if rule.action in _POLICY_ROUTES:
        route = _POLICY_ROUTES[rule.action]
        if route == "human":
            return Effect(f"{said}: a person reviews it", route, decisive=True, pin=rule.name, then=then)
        other = "large" if route == "small" else "small"
        # Strict: the other tier is not used, not even to escalate a draft that fails verification.
        return Effect(
            f"{said}: the {route} tier answers ({other} not used)",
            route,
            models={other: []},
            decisive=True,
            pin=rule.name,
            then=then,
        )
    if not inputs.kb_available:  # require_kb, and there is no knowledge base to answer from
        return Effect(
            f"{said}: knowledge base required, but it is empty or unavailable: a person answers",
            "human",
            decisive=True,
            pin=rule.name,
            then=then,
        )
    return Effect(f"{said}: knowledge base required", require_kb=True, then=then)


def service_tier(inputs: RouteInputs, decision: Decision) -> Effect | None:
    """A service tier uses only the model tiers its policy lists."""
    tier = inputs.policy.tier if inputs.policy else None
    if tier is None:
        return None
    dropped = [t for t in TIERS if t not in tier.models and decision.models[t]]
    if not dropped:
        return None
    name = inputs.policy.tier_name if inputs.policy else ""
    allowed = " and ".join(tier.models)
    return Effect(
        f"service tier {name} may use the {allowed} tier only: {', '.join(dropped)} not used",
        models={t: [] for t in dropped},
    )


def data_class_models(inputs: RouteInputs, decision: Decision) -> Effect | None:
    """The policy's restrictions of the query's data class: models it may never reach."""
    if inputs.policy is None:
        return None
    verdict = inputs.policy.verdict
    models = {tier: [s for s in decision.models[tier] if model_allowed(s, verdict)] for tier in TIERS}
    blocked = [s for tier in TIERS for s in decision.models[tier] if s not in models[tier]]
    if not blocked:
        return None
    return Effect(
        f"data class {verdict.data_class}: {', '.join(blocked)} not allowed by the policy", models=models
    )


def follow_up(inputs: RouteInputs, decision: Decision) -> Effect | None:
    if inputs.text != inputs.question:
        return Effect("short follow-up: judged together with the previous question")
    return None


def budget_spent(inputs: RouteInputs, decision: Decision) -> Effect | None:
    if inputs.budget_exhausted and decision.models["large"]:
        return Effect(f"{inputs.budget_exhausted}: large tier skipped", models={"large": []})
    return None


def sensitive_data(inputs: RouteInputs, decision: Decision) -> Effect | None:
    """Sensitive data only goes to local models."""
    if not inputs.findings:
        return None
    models = {tier: [s for s in decision.models[tier] if inputs.model_is_local(s)] for tier in TIERS}
    blocked = [s for tier in TIERS for s in inputs.settings.tier_specs(tier) if s not in models[tier]]
    where = f"not local, not used: {', '.join(blocked)}" if blocked else "every model is local"
    return Effect(f"sensitive data ({', '.join(kinds(inputs.findings))}): {where}", models=models)


def forced_route(inputs: RouteInputs, decision: Decision) -> Effect | None:
    forced = inputs.settings.force_route
    if forced and decision.pinned:
        return Effect(f"route forced to {forced} by configuration: overruled by policy {decision.pinned}")
    if forced:
        return Effect(f"route forced to {forced} by configuration (router bypassed)", forced, decisive=True)
    return None


def scored_route(inputs: RouteInputs, decision: Decision) -> Effect | None:
    if decision.pinned:
        return Effect(f"router: {inputs.scored.reason} (not used: policy {decision.pinned} decides)")
    if inputs.settings.force_route:
        return None
    return Effect(inputs.scored.reason, inputs.scored.route, decisive=True)


def threshold_shift(inputs: RouteInputs, decision: Decision) -> Effect | None:
    """The service tier's offset, the load on the large tier and the budget spent move the
    threshold (hybrid.policy.shifts); the router's score is judged against the moved one."""
    policy, scored = inputs.policy, inputs.scored
    if policy is None or not policy.shift.parts or decision.pinned or inputs.settings.force_route:
        return None
    threshold = scored.threshold + policy.shift.total
    route: Tier = "large" if scored.value >= threshold else "small"
    outcome = f": {scored.value:.2f} now starts {route}" if route != scored.route else ""
    return Effect(
        f"threshold {scored.threshold:.2f} -> {threshold:.2f} by policy ({policy.shift.describe()}){outcome}",
        route if route != scored.route else None,
        threshold=threshold,
    )


def _model_rules_apply(inputs: RouteInputs) -> bool:
    return bool(inputs.model_states) and not inputs.settings.force_route


def context_window(inputs: RouteInputs, decision: Decision) -> Effect | None:
    """A prompt is never truncated: small models it does not fit are not used."""
    if not _model_rules_apply(inputs):
        return None

    def fits(spec: str) -> bool:
        state = inputs.model_states.get(spec)
        context = state.context_tokens if state else None
        return context is None or inputs.prompt_tokens + inputs.settings.max_answer_tokens <= context

    too_small = [spec for spec in decision.models["small"] if not fits(spec)]
    if not too_small:
        return None
    left = [spec for spec in decision.models["small"] if fits(spec)]
    reason = (
        f"prompt of about {inputs.prompt_tokens} tokens does not fit {', '.join(too_small)} "
        "(never truncated): not used"
    )
    if decision.route == "small" and not left and decision.models["large"] and not decision.pinned:
        return Effect(
            reason,
            route="large",
            models={"small": left},
            then="no small model can take the prompt: starting on the large tier",
        )
    return Effect(reason, models={"small": left})


def _small_and_idle_large(inputs: RouteInputs, decision: Decision) -> tuple[ModelState, str] | None:
    """The small tier's first model and a warm, idle large model, when the route could move."""
    if (
        not _model_rules_apply(inputs)
        or decision.pinned
        or decision.route != "small"
        or not decision.models["small"]
    ):
        return None
    states = inputs.model_states
    first = states.get(decision.models["small"][0])
    idle_large = next(
        (s for s in decision.models["large"] if s in states and states[s].loaded is not False
         and states[s].in_flight < inputs.settings.busy_threshold),
        None,
    )  # fmt: skip
    return None if first is None or idle_large is None else (first, idle_large)


def cold_small_model(inputs: RouteInputs, decision: Decision) -> Effect | None:
    found = _small_and_idle_large(inputs, decision)
    tolerance = inputs.settings.cold_start_tolerance_s
    if found and found[0].loaded is False and found[0].cold_start_s > tolerance:
        first, idle_large = found
        return Effect(
            f"{first.spec} is cold (about {first.cold_start_s:.0f}s to load, over {tolerance:.0f}s):"
            f" starting on warm {idle_large}",
            route="large",
        )
    return None


def busy_small_model(inputs: RouteInputs, decision: Decision) -> Effect | None:
    found = _small_and_idle_large(inputs, decision)
    if found and found[0].in_flight >= inputs.settings.busy_threshold:
        first, idle_large = found
        return Effect(
            f"{first.spec} is busy ({first.in_flight} calls in flight): starting on idle {idle_large}",
            route="large",
        )
    return None


def tier_not_allowed(inputs: RouteInputs, decision: Decision) -> Effect | None:
    if decision.route in ("small", "large") and decision.route not in decision.allowed:
        fallback = next(iter(decision.allowed), None)
        why = "for sensitive data" if inputs.policy is None else "for this query"
        return Effect(
            f"{decision.route} tier not allowed {why}: " + (fallback or "human review"),
            route=fallback or "human",
        )
    return None


RULES: tuple[Rule, ...] = (
    policy_rule,
    follow_up,
    budget_spent,
    service_tier,
    data_class_models,
    sensitive_data,
    forced_route,
    scored_route,
    threshold_shift,
    context_window,
    cold_small_model,
    busy_small_model,
    tier_not_allowed,
)
"""The rules, in the order they apply; a later rule sees what the earlier ones decided."""


def apply(effect: Effect, decision: Decision) -> None:
    """Fold one rule's effect into the decision."""
    if effect.models is not None:
        decision.models = {**decision.models, **effect.models}
    if effect.route is not None:
        decision.route = effect.route
    if effect.pin is not None:
        decision.pinned = effect.pin
    if effect.threshold is not None:
        decision.threshold = effect.threshold
    if effect.refusal is not None:
        decision.refusal = effect.refusal
    decision.require_kb = decision.require_kb or effect.require_kb
    if effect.decisive:
        decision.reasons.insert(0, effect.reason)
    else:
        decision.reasons.append(effect.reason)
    if effect.then:
        decision.reasons.append(effect.then)


def knowledge_need(
    kb_score: float, kb_available: bool, settings: Settings, required: bool = False
) -> tuple[bool, str]:
    """Whether retrieval runs, and why."""
    if required and kb_available:
        return True, "knowledge base consulted: required by policy"
    if settings.retrieval == "never":
        return False, "knowledge base off for this run"
    if not kb_available:
        return False, "knowledge base empty or unavailable"
    if settings.retrieval == "always":
        return True, "knowledge base always consulted in this run"
    needs = kb_score >= settings.kb_need_threshold
    return needs, (
        f"knowledge-base term coverage {kb_score:.2f} {'>=' if needs else '<'} "
        f"{settings.kb_need_threshold:.2f}: " + ("retrieve" if needs else "no retrieval")
    )


def decide_route(
    question: str,
    *,
    previous_questions: Sequence[str],
    kb_score: float,
    kb_available: bool,
    model_is_local: Callable[[str], bool],
    settings: Settings,
    budget_exhausted: str | None = None,
    model_states: Mapping[str, ModelState] | None = None,
    prompt_tokens: int = 0,
    learned: LearnedScore | None = None,
    learned_error: str | None = None,
    policy: TurnPolicy | None = None,
    rules: Sequence[Rule] = RULES,
    findings: Sequence[Finding] | None = None,
) -> RouteDecision:
    """Route a query: starting tier, knowledge-base use, allowed tiers, and the reasons.

    `learned` is the learned router's score of `routing_text(question, previous_questions)`;
    without it (router off, or `learned_error` says why it failed) the heuristic decides.
    `policy` is what the policy file says about this query (its rules apply first).
    `findings`: the question's `find_sensitive`, when already found.
    """
    text = routing_text(question, previous_questions)
    findings = find_sensitive(question) if findings is None else list(findings)
    scored = score(text, settings, learned, learned_error)
    inputs = RouteInputs(
        question=question,
        text=text,
        settings=settings,
        scored=scored,
        findings=findings,
        model_is_local=model_is_local,
        budget_exhausted=budget_exhausted,
        model_states=model_states or {},
        prompt_tokens=prompt_tokens,
        policy=policy,
        kb_available=kb_available,
    )
    decision = Decision(route=scored.route, models={tier: list(settings.tier_specs(tier)) for tier in TIERS})
    for rule in rules:
        effect = rule(inputs, decision)
        if effect is not None:
            apply(effect, decision)
    needs_kb, kb_reason = knowledge_need(kb_score, kb_available, settings, decision.require_kb)
    decision.reasons.append(kb_reason)
    policies = {
        "large_tier_down": settings.large_tier_down,
        "unreachable_models": settings.unreachable_models,
    }
    if policy is not None:
        policies |= policy.recorded()
        if decision.refusal is not None:
            policies["refusal"] = decision.refusal
    return RouteDecision(
        route=decision.route,
        forced=settings.force_route is not None and decision.pinned is None,
        router=scored.router,
        difficulty=round(scored.value, 4),
        threshold=round(decision.threshold, 4) if decision.threshold is not None else scored.threshold,
        needs_kb=needs_kb,
        kb_score=round(kb_score, 4),
        kb_threshold=settings.kb_need_threshold,
        sensitivity=sensitivity_level(findings),
        allowed_tiers=decision.allowed,
        models=decision.models,
        policies=policies,
        signals={name: round(v, 4) for name, v in scored.signals.items()},
        reasons=decision.reasons,
    )
