"""Pure edge functions: map the decisions recorded in the state to the next node."""

from __future__ import annotations

from typing import Literal

from langgraph.graph import END

from graphs.state import RouteDecision, State

FirstAnswer = Literal["answer_small", "escalate", "human_review"]


def first_answer(route: RouteDecision) -> FirstAnswer:
    """The node that answers first. A human-routed case gets a small-model draft for the reviewer."""
    if route["route"] == "large" and "large" in route["allowed_tiers"]:
        return "escalate"
    if route["route"] in ("small", "human") and "small" in route["allowed_tiers"]:
        return "answer_small"
    return "human_review"


def after_classify(state: State) -> Literal["accept", "retrieve", "answer_small", "escalate", "human_review"]:
    """A cached answer is final; otherwise consult the knowledge base first when the router said so."""
    if state.get("cached"):
        return "accept"
    route = state["route"]
    return "retrieve" if route["needs_kb"] else first_answer(route)


def after_retrieve(state: State) -> FirstAnswer:
    """After retrieval, answer on the routed tier."""
    return first_answer(state["route"])


def after_verify(state: State) -> Literal["accept", "escalate", "human_review"]:
    """Accept a verified draft; otherwise escalate a small draft, or ask a person (or, in a service
    tier without review whose policy says so, accept the best draft unverified)."""
    target = _after_verify(state)
    usable = any(d["text"] and not d["error"] for d in state["drafts"])
    instead = state["route"].get("policies", {}).get("review")
    return "accept" if target == "human_review" and instead == "unverified" and usable else target


def _after_verify(state: State) -> Literal["accept", "escalate", "human_review"]:
    route, verification = state["route"], state["verifications"][-1]
    if route["route"] == "human" and not state.get("review_round"):
        return "human_review"  # after a reviewer escalated, the usual policy applies
    if verification["passed"]:
        return "accept"
    usable = not state["drafts"][-1]["error"] and bool(state["drafts"][-1]["text"])
    if route["forced"] and route["route"] == verification["tier"] and usable:
        return "accept"  # a forced route is the caller's choice; the failed check stays on record
    if verification["tier"] == "small" and "large" in route["allowed_tiers"]:
        return "escalate"
    large_down = verification["tier"] == "large" and state["drafts"][-1].get("error_kind") is not None
    small_answer = any(d["tier"] == "small" and d["text"] and not d["error"] for d in state["drafts"])
    if large_down and small_answer and route.get("policies", {}).get("large_tier_down") == "unverified":
        return "accept"  # degrade by policy: the small answer, marked unverified
    return "human_review"


def after_review(state: State) -> Literal["accept", "escalate", "__end__"]:
    """Approved or edited: finalise; escalated: ask the large model; rejected: end."""
    action = (state.get("review") or {}).get("action")
    if action == "reject":
        return END
    return "escalate" if action == "escalate" else "accept"
