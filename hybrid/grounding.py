"""Sources for an answer: passages from the knowledge base, screened before a model sees them.

Passages less similar to the question than the minimum are dropped; passages carrying instructions
(prompt injection) are kept out of the prompt and listed; passages holding sensitive data make
the whole prompt sensitive, so only local models may see it. A learned router that reads
retrieval's confidence judges the query again once it is known.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

from hybrid import observability
from hybrid.decisions import Hit, Retrieval, RouteDecision
from hybrid.injection import looks_like_injection
from hybrid.models import is_local_model
from hybrid.routing.decision import rescore_with_retrieval, routing_text, score_query
from hybrid.sensitivity import find_sensitive
from hybrid.settings import Settings


def hit_flags(hit: Hit) -> dict[str, bool]:
    """Why a passage needs care: it instructs a model, or it holds sensitive data."""
    meta = hit.get("metadata") or {}
    return {
        "prompt_injection": bool(meta.get("injection")) or looks_like_injection(hit["text"]),
        "sensitive": meta.get("sensitivity", "none") != "none" or bool(find_sensitive(hit["text"])),
    }


def search_sources(question: str, settings: Settings) -> Retrieval:
    """The passages kept for the prompt, with what was dropped or held back and why."""
    retrieval = Retrieval(
        mode=settings.retrieval_mode,
        hits=[],
        dropped=0,
        confidence=0.0,
        min_score=settings.retrieval_min_score,
    )
    try:
        from retrieval.search import search

        found: list[Hit] = search(settings, question, settings.passages)  # type: ignore[assignment]
    except Exception as exc:  # answer without the knowledge base rather than not at all
        retrieval["error"] = f"{type(exc).__name__}: {exc}"
        return retrieval
    similar = [hit for hit in found if hit["similarity"] >= settings.retrieval_min_score]
    for hit in similar:
        hit["flags"] = [name for name, on in hit_flags(hit).items() if on]
    kept = [hit for hit in similar if "prompt_injection" not in hit["flags"]]
    retrieval.update(
        hits=kept,
        dropped=len(found) - len(similar),
        flagged=[
            {"id": h["id"], "source": h["source"], "flags": h["flags"]} for h in similar if h not in kept
        ],
        confidence=max((hit["similarity"] for hit in kept), default=0.0),
    )
    return retrieval


def rescored_route(
    route: RouteDecision,
    question: str,
    previous_questions: Sequence[str],
    confidence: float,
    settings: Settings,
) -> RouteDecision:
    """Let a learned router that reads retrieval confidence judge the query again with it."""
    router = ((route.get("versions") or {}).get("paths") or {}).get("router")
    if not route.get("router", "").startswith("learned") or route["forced"] or not router:
        return route
    try:
        from hybrid.routing.model import RouterModel

        if "retrieval_confidence" not in RouterModel.load(Path(router)).informative_extras:
            return route
        text = routing_text(question, previous_questions)
        label = (route["versions"].get("labels") or {}).get("router")
        rescored = score_query(text, Path(router), {"retrieval_confidence": confidence}, label=label)
    except Exception as exc:  # the first decision stands
        observability.logger.warning("re-scoring with retrieval failed: %s", exc)
        return route
    return rescore_with_retrieval(route, rescored, confidence)


def tightened_route(route: RouteDecision, hits: list[Hit], settings: Settings) -> RouteDecision:
    """Sensitive passages make the whole prompt sensitive: only local models may see it."""
    if not any("sensitive" in hit.get("flags", []) for hit in hits):
        return route
    models = {
        tier: [s for s in specs if is_local_model(s, settings)] for tier, specs in route["models"].items()
    }
    if models == route["models"]:
        return route
    dropped = sorted(
        {s for specs in route["models"].values() for s in specs} - {s for v in models.values() for s in v}
    )
    return {
        **route,
        "models": models,
        "allowed_tiers": [tier for tier in ("small", "large") if models.get(tier)],  # type: ignore[misc]
        "sensitivity": "secret" if route["sensitivity"] == "secret" else "personal",
        "reasons": [
            *route["reasons"],
            f"retrieved passages hold sensitive data: not used: {', '.join(dropped)}",
        ],
    }


def gather_sources(
    question: str, route: RouteDecision, previous_questions: Sequence[str], settings: Settings
) -> tuple[Retrieval, RouteDecision]:
    """Search the knowledge base, then let what was found adjust the route (the same object when not)."""
    retrieval = search_sources(question, settings)
    if "error" in retrieval:
        return retrieval, route
    route = rescored_route(route, question, previous_questions, retrieval["confidence"], settings)
    return retrieval, tightened_route(route, retrieval["hits"], settings)
