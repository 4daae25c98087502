"""The router: decides, before any model runs, which tier a query starts on and whether it needs
the knowledge base. Every decision is data (`RouteDecision`) with the signals and reasons behind it.

Two scorers sit behind one decision shape. The learned router (`hybrid.routing`, the default)
scores `need_large`, the accuracy the large model is expected to add, from the query's embedding
and features; `score_query` loads it and `decide_route` applies its calibrated threshold. The
heuristic, a noisy-OR of hand-weighted signals (each alone can make a query hard, and they
compound), answers when the learned router is switched off or its artifact cannot be read. Hard
rules (sensitivity, context window, overrides, budgets) apply after either, and say so.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from graphs.state import RouteDecision, Tier
from hybrid.models.state import ModelState
from hybrid.sensitivity import find_sensitive, kinds, sensitivity_level
from hybrid.settings import Settings
from hybrid.text import numbers, words

if TYPE_CHECKING:
    from hybrid.routing.model import RouterScore

HEURISTIC_THRESHOLD = 0.5

_ARITHMETIC = re.compile(r"\d\s*(?:[-+*/×÷^]|\bx\b)\s*\(?\s*\d")
_MATH_WORDS = re.compile(
    r"\b(calculate|compute|solve|how many|how much|percent(age)?|total|sum|average|mean|median|ratio|"
    r"equation|probability|remainder|divided|multiplied|times|squared|square root|integral|derivative)\b"
)
_STEP_WORDS = re.compile(
    r"\b(then|after|each|per|remaining|left|twice|half|more than|less than|if|every|altogether|"
    r"in total|difference)\b"
)
_REASONING_WORDS = re.compile(
    r"\b(why|explain|compare|contrast|prove|derive|analy[sz]e|evaluate|justify|step by step|"
    r"implications?|trade-?offs?|pros and cons|reason)\b"
)
_CODE = re.compile(
    r"```|\bdef\s+\w+\(|\bclass\s+\w+|\b(function|code|python|javascript|typescript|sql|regex|"
    r"implement|compile|stack ?trace|exception|bug|api)\b|[{};]\s*$",
    re.MULTILINE,
)
_LONG_FORM = re.compile(r"\b(write|essay|story|poem|summari[sz]e|draft|letter|translate|rewrite)\b")
_FOLLOW_UP = re.compile(
    r"^(and|what about|how about|why|also|then|so|but|or|are you sure|really)\b"
    r"|\b(it|that|this|they|those|them)\b"
)

# Weight of each signal: the probability it alone makes the small model fail (heuristic).
WEIGHTS = {
    "arithmetic": 0.8,
    "math_words": 0.25,
    "several_numbers": 0.45,
    "multi_step": 0.2,
    "reasoning": 0.35,
    "code": 0.45,
    "long_form": 0.4,
    "length": 0.5,
    "several_questions": 0.3,
}

_LABELS = {
    "arithmetic": "arithmetic expression",
    "math_words": "math vocabulary",
    "several_numbers": "several numbers to combine",
    "multi_step": "multi-step wording",
    "reasoning": "asks for reasoning",
    "code": "code",
    "long_form": "asks for long-form writing",
    "length": "long question",
    "several_questions": "several questions at once",
}


def routing_text(question: str, previous_questions: Sequence[str]) -> str:
    """The text the router judges: a short follow-up is judged with the question it follows."""
    if previous_questions and len(words(question)) <= 8 and _FOLLOW_UP.search(question.casefold()):
        return f"{previous_questions[-1]}\n{question}"
    return question


@dataclass(frozen=True)
class LearnedScore:
    """The learned router's judgement of one query, with the artifact that made it."""

    score: RouterScore
    threshold: float
    """The artifact's calibrated threshold on `need_large`."""
    version: str
    """Which artifact: its folder name and training date."""


def score_query(
    text: str, settings: Settings, extra_features: Mapping[str, float] | None = None
) -> LearnedScore:
    """Score a routing text with the learned router at `settings.router_path` (loaded once)."""
    from hybrid.routing.model import RouterModel
    from retrieval.embeddings import embed_query

    model = RouterModel.load(settings.router_path)
    embedding = embed_query(text, layer=model.embedding_layer) if model.use_embedding else None
    score = model.score(text, embedding, dict(extra_features or {}))
    trained = str(model.meta.get("trained") or model.meta.get("created") or "")[:10]
    return LearnedScore(score, model.threshold, f"{settings.router_path.name} {trained}".strip())


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


def difficulty_signals(text: str) -> dict[str, float]:
    """Each difficulty signal of a text, as a strength in [0, 1]."""
    lowered = text.casefold()
    n_words = len(words(text))
    n_numbers = len(numbers(text))
    return {
        "arithmetic": 1.0 if _ARITHMETIC.search(lowered) else 0.0,
        "math_words": min(1.0, len(_MATH_WORDS.findall(lowered)) / 2),
        "several_numbers": min(1.0, max(0, n_numbers - 1) / 3),
        "multi_step": min(1.0, len(_STEP_WORDS.findall(lowered)) / 4),
        "reasoning": min(1.0, len(_REASONING_WORDS.findall(lowered)) / 2),
        "code": 1.0 if _CODE.search(text) else 0.0,
        "long_form": 1.0 if _LONG_FORM.search(lowered) else 0.0,
        "length": min(1.0, max(0, n_words - 25) / 75),
        "several_questions": 1.0 if text.count("?") >= 2 else 0.0,
    }


def difficulty_score(signals: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
    """Noisy-OR of weighted signals, and each signal's contribution, largest first."""
    survive = 1.0
    contributions = []
    for name, strength in signals.items():
        p = WEIGHTS[name] * strength
        if p > 0:
            contributions.append((name, p))
            survive *= 1.0 - p
    contributions.sort(key=lambda item: -item[1])
    return 1.0 - survive, contributions


def _weigh_model_states(
    route: str,
    *,
    models: dict[str, list[str]],
    states: Mapping[str, ModelState],
    prompt_tokens: int,
    settings: Settings,
    reasons: list[str],
) -> str:
    """Hard and soft rules from the models' state: context size, cold start, load (edits `models`)."""

    def fits(spec: str) -> bool:
        context = states[spec].context_tokens if spec in states else None
        return context is None or prompt_tokens + settings.max_answer_tokens <= context

    too_small = [spec for spec in models["small"] if not fits(spec)]
    if too_small:
        models["small"] = [spec for spec in models["small"] if fits(spec)]
        names = ", ".join(too_small)
        reasons.append(
            f"prompt of about {prompt_tokens} tokens does not fit {names} (never truncated): not used"
        )
        if route == "small" and not models["small"] and models["large"]:
            reasons.append("no small model can take the prompt: starting on the large tier")
            return "large"
    if route != "small" or not models["small"]:
        return route
    first = states.get(models["small"][0])
    idle_large = next(
        (s for s in models["large"] if s in states and states[s].loaded is not False
         and states[s].in_flight < settings.busy_threshold),
        None,
    )  # fmt: skip
    if first is None or idle_large is None:
        return route
    if first.loaded is False and first.cold_start_s > settings.cold_start_tolerance_s:
        tolerance = settings.cold_start_tolerance_s
        reasons.append(
            f"{first.spec} is cold (about {first.cold_start_s:.0f}s to load, over {tolerance:.0f}s):"
            f" starting on warm {idle_large}"
        )
        return "large"
    if first.in_flight >= settings.busy_threshold:
        reasons.append(
            f"{first.spec} is busy ({first.in_flight} calls in flight): starting on idle {idle_large}"
        )
        return "large"
    return route


def _score(
    text: str, settings: Settings, learned: LearnedScore | None, learned_error: str | None
) -> tuple[str, float, float, dict[str, float], str, str]:
    """Which scorer, its score, threshold and signals, the route it implies, and the reason."""
    if learned is not None:
        from hybrid.routing.model import decide_with_model

        router = f"learned ({learned.version})"
        threshold = learned.threshold if settings.route_threshold is None else settings.route_threshold
        score = learned.score.need_large
        signals = {
            "need_large": learned.score.need_large,
            "p_small_ok": learned.score.p_small_ok,
            **{f"p_{name}": p for name, p in learned.score.probabilities.items()},
            **{f"effect_{name}": value for name, value in learned.score.top_signals},
        }
        route, reason = decide_with_model(learned.score, threshold)
    else:
        router = "heuristic"
        threshold = HEURISTIC_THRESHOLD if settings.route_threshold is None else settings.route_threshold
        signals = difficulty_signals(text)
        score, contributions = difficulty_score(signals)
        route = "large" if score >= threshold else "small"
        drivers = ", ".join(f"{_LABELS[name]} +{p:.2f}" for name, p in contributions[:3]) or "no signal"
        comparison = ">=" if route == "large" else "<"
        reason = f"difficulty {score:.2f} {comparison} {threshold:.2f} ({drivers})"
        if learned_error:
            reason += f"; learned router unavailable ({learned_error})"
    return router, score, threshold, signals, route, reason


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
) -> RouteDecision:
    """Route a query: starting tier, knowledge-base use, allowed tiers, and the reasons.

    `learned` is the learned router's score of `routing_text(question, previous_questions)`;
    without it (router off, or `learned_error` says why it failed) the heuristic decides.
    """
    text = routing_text(question, previous_questions)
    reasons: list[str] = []
    if text != question:
        reasons.append("short follow-up: judged together with the previous question")

    findings = find_sensitive(question)
    sensitivity = sensitivity_level(findings)
    models = {
        tier: [spec for spec in settings.tier_specs(tier) if sensitivity == "none" or model_is_local(spec)]
        for tier in ("small", "large")
    }
    if budget_exhausted and models["large"]:
        models["large"] = []
        reasons.append(f"{budget_exhausted}: large tier skipped")
    allowed: list[Tier] = [tier for tier in ("small", "large") if models[tier]]  # type: ignore[misc]
    if findings:
        blocked = [
            spec
            for tier in ("small", "large")
            for spec in settings.tier_specs(tier)
            if spec not in models[tier]
        ]
        reasons.append(
            f"sensitive data ({', '.join(kinds(findings))}): "
            + (f"not local, not used: {', '.join(blocked)}" if blocked else "every model is local")
        )

    router, score, threshold, signals, route, reason = _score(text, settings, learned, learned_error)
    if settings.force_route:
        route = settings.force_route
        reasons.insert(0, f"route forced to {route} by configuration (router bypassed)")
    else:
        reasons.insert(0, reason)
    if model_states and not settings.force_route:
        route = _weigh_model_states(
            route,
            models=models,
            states=model_states,
            prompt_tokens=prompt_tokens,
            settings=settings,
            reasons=reasons,
        )
        allowed = [tier for tier in ("small", "large") if models[tier]]  # type: ignore[misc]
    if route in ("small", "large") and route not in allowed:
        fallback = next(iter(allowed), None)
        reasons.append(f"{route} tier not allowed for sensitive data: " + (fallback or "human review"))
        route = fallback or "human"

    if settings.retrieval == "never":
        needs_kb = False
        reasons.append("knowledge base off for this run")
    elif not kb_available:
        needs_kb = False
        reasons.append("knowledge base empty or unavailable")
    elif settings.retrieval == "always":
        needs_kb = True
        reasons.append("knowledge base always consulted in this run")
    else:
        needs_kb = kb_score >= settings.kb_need_threshold
        comparison = ">=" if needs_kb else "<"
        reasons.append(
            f"knowledge-base term coverage {kb_score:.2f} {comparison} {settings.kb_need_threshold:.2f}: "
            + ("retrieve" if needs_kb else "no retrieval")
        )

    return RouteDecision(
        route=route,  # type: ignore[typeddict-item]
        forced=settings.force_route is not None,
        router=router,
        difficulty=round(score, 4),
        threshold=threshold,
        needs_kb=needs_kb,
        kb_score=round(kb_score, 4),
        kb_threshold=settings.kb_need_threshold,
        sensitivity=sensitivity,
        allowed_tiers=allowed,
        models=models,
        policies={"large_tier_down": settings.large_tier_down},
        signals={name: round(v, 4) for name, v in signals.items()},
        reasons=reasons,
    )
