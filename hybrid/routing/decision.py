"""The routing decision: which tier a query starts on, whether it needs the knowledge base, which
models may see it, and why. Every decision is data (`RouteDecision`) with the signals and reasons
behind it.

A scorer judges the query first: the learned router (`score_query`, the default) scores
`need_large`, the accuracy the large model is expected to add; the heuristic
(`hybrid.routing.heuristic`) answers when the learned router is off or its artifact cannot be
read. Then the rules in `RULES` apply in order. A rule reads the query's `RouteInputs` and the
decision so far and returns an `Effect` (a route, the models left to a tier, and the reason) or
None when it does not apply, so a new rule is one function added to the list.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

from hybrid.decisions import Route, RouteDecision, Tier
from hybrid.routing.heuristic import HEURISTIC_THRESHOLD, LABELS, difficulty_score, difficulty_signals
from hybrid.sensitivity import Finding, find_sensitive, kinds, sensitivity_level
from hybrid.settings import Settings
from hybrid.text import words

if TYPE_CHECKING:
    from hybrid.models.state import ModelState
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
    embedding = embed_query(text, layer=model.embedding_layer) if model.use_embedding else None
    score = model.score(text, embedding, dict(extra_features or {}))
    trained = str(model.meta.get("trained") or model.meta.get("created") or "")[:10]
    return LearnedScore(score, model.threshold, f"{label or router.name} {trained}".strip())


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


@dataclass
class Decision:
    """The decision so far: the route and the models each tier may still use."""

    route: Route
    models: dict[str, list[str]]
    reasons: list[str] = field(default_factory=list)

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


Rule = Callable[[RouteInputs, Decision], Effect | None]


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
    if forced:
        return Effect(f"route forced to {forced} by configuration (router bypassed)", forced, decisive=True)
    return None


def scored_route(inputs: RouteInputs, decision: Decision) -> Effect | None:
    if inputs.settings.force_route:
        return None
    return Effect(inputs.scored.reason, inputs.scored.route, decisive=True)


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
    if decision.route == "small" and not left and decision.models["large"]:
        return Effect(
            reason,
            route="large",
            models={"small": left},
            then="no small model can take the prompt: starting on the large tier",
        )
    return Effect(reason, models={"small": left})


def _small_and_idle_large(inputs: RouteInputs, decision: Decision) -> tuple[ModelState, str] | None:
    """The small tier's first model and a warm, idle large model, when the route could move."""
    if not _model_rules_apply(inputs) or decision.route != "small" or not decision.models["small"]:
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
        return Effect(
            f"{decision.route} tier not allowed for sensitive data: " + (fallback or "human review"),
            route=fallback or "human",
        )
    return None


RULES: tuple[Rule, ...] = (
    follow_up,
    budget_spent,
    sensitive_data,
    forced_route,
    scored_route,
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
    if effect.decisive:
        decision.reasons.insert(0, effect.reason)
    else:
        decision.reasons.append(effect.reason)
    if effect.then:
        decision.reasons.append(effect.then)


def knowledge_need(kb_score: float, kb_available: bool, settings: Settings) -> tuple[bool, str]:
    """Whether retrieval runs, and why."""
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
    rules: Sequence[Rule] = RULES,
) -> RouteDecision:
    """Route a query: starting tier, knowledge-base use, allowed tiers, and the reasons.

    `learned` is the learned router's score of `routing_text(question, previous_questions)`;
    without it (router off, or `learned_error` says why it failed) the heuristic decides.
    """
    text = routing_text(question, previous_questions)
    findings = find_sensitive(question)
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
    )
    decision = Decision(route=scored.route, models={tier: list(settings.tier_specs(tier)) for tier in TIERS})
    for rule in rules:
        effect = rule(inputs, decision)
        if effect is not None:
            apply(effect, decision)
    needs_kb, kb_reason = knowledge_need(kb_score, kb_available, settings)
    decision.reasons.append(kb_reason)
    return RouteDecision(
        route=decision.route,
        forced=settings.force_route is not None,
        router=scored.router,
        difficulty=round(scored.value, 4),
        threshold=scored.threshold,
        needs_kb=needs_kb,
        kb_score=round(kb_score, 4),
        kb_threshold=settings.kb_need_threshold,
        sensitivity=sensitivity_level(findings),
        allowed_tiers=decision.allowed,
        models=decision.models,
        policies={
            "large_tier_down": settings.large_tier_down,
            "unreachable_models": settings.unreachable_models,
        },
        signals={name: round(v, 4) for name, v in scored.signals.items()},
        reasons=decision.reasons,
    )
