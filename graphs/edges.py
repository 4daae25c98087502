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


def unreachable_next(state: State) -> Literal["answer_small", "escalate", "unreachable"] | None:
    """After a tier none of whose models could be reached: try an allowed tier not tried yet; when
    every allowed tier is unreachable, the configuration is dead and the turn ends with an error
    (unless the `unreachable_models` policy asks for a reviewer). None: the usual policy applies
    (a model was reached, or a reviewer's round is under way)."""
    drafts = state["drafts"]
    if drafts[-1].get("error_kind") != "unreachable" or state.get("review_round"):
        return None
    route = state["route"]
    tried = {d["tier"] for d in drafts}
    untried = [tier for tier in route["allowed_tiers"] if tier not in tried]
    if untried:
        return "answer_small" if untried[0] == "small" else "escalate"
    dead = all(d.get("error_kind") == "unreachable" for d in drafts)
    if dead and route.get("policies", {}).get("unreachable_models", "error") == "error":
        return "unreachable"
    return None


AfterVerify = Literal["accept", "answer_small", "escalate", "human_review", "unreachable"]


def after_verify(state: State) -> AfterVerify:
    """Accept a verified draft; otherwise escalate a small draft, or ask a person (or, in a service
    tier without review whose policy says so, accept the best draft unverified). A tier that could
    not be reached at all passes the question to an untried tier, or ends the turn."""
    target = _after_verify(state)
    usable = any(d["text"] and not d["error"] for d in state["drafts"])
    instead = state["route"].get("policies", {}).get("review")
    return "accept" if target == "human_review" and instead == "unverified" and usable else target


def _after_verify(state: State) -> AfterVerify:
    route, verification = state["route"], state["verifications"][-1]
    if route["route"] == "human" and not state.get("review_round"):
        return "human_review"  # after a reviewer escalated, the usual policy applies
    if verification["passed"]:
        return "accept"
    usable = not state["drafts"][-1]["error"] and bool(state["drafts"][-1]["text"])
    if route["forced"] and route["route"] == verification["tier"] and usable:
        return "accept"  # a forced route is the caller's choice; the failed check stays on record
    unreachable = unreachable_next(state)
    if unreachable is not None:
        return unreachable
    large_tried = any(d["tier"] == "large" for d in state["drafts"])
    if verification["tier"] == "small" and "large" in route["allowed_tiers"] and not large_tried:
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
