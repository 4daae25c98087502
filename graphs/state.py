"""The graph's state: a narrow input, and the full per-turn record made of the typed decisions in
`hybrid.decisions`.

Fields are overwritten per turn unless a reducer says otherwise; the graph runs its nodes one at a
time, so no two nodes write a field at once.
"""

from __future__ import annotations

from typing import Annotated, Any, NotRequired

from langchain_core.messages import AnyMessage
from langgraph.graph.message import add_messages
from typing_extensions import TypedDict

from hybrid.decisions import (
    REVIEW_ACTIONS,
    Draft,
    Hit,
    Retrieval,
    Review,
    ReviewAction,
    ReviewDecision,
    ReviewRequest,
    Route,
    RouteDecision,
    Status,
    Tier,
    TokenUsage,
    Verification,
    decision_schema,
)

__all__ = [
    "REVIEW_ACTIONS",
    "Draft",
    "Hit",
    "InputState",
    "Retrieval",
    "Review",
    "ReviewAction",
    "ReviewDecision",
    "ReviewRequest",
    "Route",
    "RouteDecision",
    "State",
    "Status",
    "Tier",
    "TokenUsage",
    "Verification",
    "decision_schema",
]


class InputState(TypedDict):
    """What a caller sends for one turn."""

    question: str
    """The user's question for this turn."""
    messages: NotRequired[Annotated[list[AnyMessage], add_messages]]
    """The conversation so far (questions and final answers). Callers may seed a new thread with
    earlier turns; `classify` appends the question and the final node of each turn the answer."""


class State(InputState):
    """The full record of a conversation thread; per-turn fields are reset by `classify`."""

    route: NotRequired[RouteDecision]
    retrieval: NotRequired[Retrieval | None]
    """None when the knowledge base was not consulted this turn."""
    drafts: NotRequired[list[Draft]]
    """Every model answer this turn, in call order."""
    verifications: NotRequired[list[Verification]]
    """One per draft, in the same order."""
    review: NotRequired[Review | None]
    answer: NotRequired[str | None]
    """The final answer of this turn; None while pending or when rejected."""
    answered_by: NotRequired[str | None]
    """Model spec of the final answer, or `human:<reviewer>` for an edited one."""
    status: NotRequired[Status | None]
    timings_ms: NotRequired[dict[str, float]]
    """Wall time of each node this turn, in milliseconds."""
    trace_id: NotRequired[str]
    """Id of this turn, carried into every audit row."""
    deadline_at: NotRequired[float]
    """Unix time by which this turn's model calls must be done."""
    cache_scope: NotRequired[str]
    """This turn's cache scope: conversation context and knowledge-base version."""
    cached: NotRequired[dict[str, Any] | None]
    """The cached answer serving this turn (kind, similarity, original question and model), if any."""
    review_round: NotRequired[int]
    """Reviews resolved this turn (a reviewer's escalation leads to another review round)."""
