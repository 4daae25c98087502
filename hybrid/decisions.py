"""The decisions of one turn, as typed records: what the router decided, what retrieval found,
each model's draft, each verdict of the verifier, and a reviewer's decision.

Everything is plain JSON-able data (TypedDicts), so checkpoints, the `langgraph dev` API, the audit
log and the Python `Answer` all carry the same record. The graph's state (`graphs.state`) is made of
these; the domain functions in `hybrid` produce them.
"""

from __future__ import annotations

from functools import lru_cache
from typing import Any, Literal, NotRequired

from pydantic import BaseModel, ConfigDict, Field, create_model, model_validator
from typing_extensions import TypedDict

from hybrid.sensitivity import Sensitivity

Tier = Literal["small", "large"]
Route = Literal["small", "large", "human"]
Status = Literal["answered", "pending_review", "rejected", "unreachable"]
"""`unreachable`: no model of any allowed tier could be reached, so the turn ended without an
answer and without a review case (a configuration error: see `hybrid doctor`)."""


class RouteDecision(TypedDict):
    """What the router decided before any model ran, and why. Written by `classify`."""

    route: Route
    """Tier the query starts on: `small`, `large`, or `human` (straight to a reviewer)."""
    forced: bool
    """True when a per-run override chose the route instead of the router."""
    router: str
    """Which scorer decided: `learned (<artifact>)` or `heuristic`."""
    difficulty: float
    """Router score: the learned router's `need_large` in [-1, 1] (accuracy the large model is
    expected to add), or the heuristic's difficulty in [0, 1]."""
    threshold: float
    """Score at or above which the query starts on the large model."""
    needs_kb: bool
    """Whether the knowledge base is consulted."""
    kb_score: float
    """Share of the query's informative terms the knowledge base contains, in [0, 1]."""
    kb_threshold: float
    """`kb_score` at or above which retrieval runs (in `auto` retrieval mode)."""
    sensitivity: Sensitivity
    """Most sensitive kind of data found in the query."""
    allowed_tiers: list[Tier]
    """Tiers the query may be sent to (sensitive queries only go to local models)."""
    models: dict[str, list[str]]
    """The models each tier may use for this query, in order of preference."""
    policies: dict[str, str]
    """Degradation policies in force for this query (e.g. what happens if the large tier is down)."""
    signals: dict[str, float]
    """Every feature the score was computed from, by name."""
    reasons: list[str]
    """Human-readable reasons, most important first."""
    versions: NotRequired[dict[str, Any]]
    """The router and verifier artefacts that decided (`hybrid.registry.ArtifactSet.record`): version,
    where it came from (promoted, canary, shipped, pinned), their folders, the models they were
    calibrated for, and why they are stale if they are."""


class Hit(TypedDict):
    """One retrieved chunk. Written by `retrieve`."""

    id: str
    text: str
    source: str
    score: float
    """The score the hit was ranked by: cosine (dense), BM25 (bm25) or fused RRF score (hybrid)."""
    similarity: float
    """Cosine similarity between query and chunk, in [-1, 1], whatever the ranking mode."""
    ranks: dict[str, int]
    """Rank of the hit in each ranker that found it (`dense`, `bm25`), from 1."""
    flags: NotRequired[list[str]]
    """`prompt_injection` (instructions aimed at a model), `sensitive` (personal data, secrets)."""
    metadata: dict[str, str | int | float | bool]


class Retrieval(TypedDict):
    """Result of consulting the knowledge base. Written by `retrieve`."""

    mode: str
    """Ranking used: dense, bm25 or hybrid."""
    hits: list[Hit]
    """Hits kept (similarity at or above the minimum), best first."""
    dropped: int
    """Hits ranked but less similar to the query than the minimum."""
    confidence: float
    """Best similarity among kept hits, 0 when nothing was kept: a signal for router and verifier."""
    min_score: float
    error: NotRequired[str]
    """Why the knowledge base could not be searched, if it could not."""
    flagged: NotRequired[list[dict[str, Any]]]
    """Relevant hits kept out of the prompt because they carry instructions (prompt injection)."""


class TokenUsage(TypedDict):
    input_tokens: int
    output_tokens: int


class Draft(TypedDict):
    """One model's answer (or its failure). Written by `answer_small` and `escalate`."""

    tier: Tier
    model: str
    """Model spec that produced it, `provider:model`."""
    text: str
    error: str | None
    """Why the model call failed, if it did; the text is then empty."""
    finish_reason: str | None
    usage: TokenUsage
    cost: float
    """Estimated cost: tokens and compute seconds at the configured prices of `model`."""
    latency_ms: float
    server_ms: NotRequired[float | None]
    """The model servers' part of `latency_ms`, timed at the HTTP boundary; the rest is our client
    library's. None where it cannot be measured (in-process models: all of it is the model's)."""
    error_kind: NotRequired[str | None]
    """`tier_down` (every model failed), `unreachable` (no model of the tier could be reached at
    all: refused, unknown host, unknown model), `deadline` (time ran out), or None."""
    attempts: NotRequired[list[dict[str, Any]]]
    """Every try of every model of the tier: outcome, error, latency (fallbacks and retries)."""
    fallback: NotRequired[bool]
    """True when a model other than the tier's first answered."""
    model_meta: dict[str, float | str]
    """Extra signals the model reported (e.g. mean token log-probability)."""


class Verification(TypedDict):
    """The verifier's judgement of one draft. Written by `verify`."""

    tier: Tier
    model: str
    score: float
    """Confidence in [0, 1] that the draft is a good answer: the learned verifier's P(good) after its
    rules when `calibrated`, else the heuristic's multiplicative score."""
    threshold: float
    """The score at or above which the draft passes: a per-run or `HYBRID_*_ACCEPT_THRESHOLD` setting,
    else (small tier) the threshold calibrated into the verifier's artifact."""
    passed: bool
    signals: dict[str, float]
    """Every measured signal by name (unmeasurable ones are left out; `no_context`, `no_logprobs`
    and `no_embedding` say which), and `p_good`."""
    reasons: list[str]
    """The verdict first, then any rule that applied, then the signals that moved the score most."""
    calibrated: NotRequired[bool]
    """True when the learned, calibrated verifier judged; False when it could not be loaded and the
    heuristic did (the reasons say why). Absent in records written before it existed."""
    cost: NotRequired[float]
    """The verifier's own compute, at `verifier_price_per_s`."""


ReviewAction = Literal["approve", "edit", "reject", "escalate"]
REVIEW_ACTIONS: tuple[ReviewAction, ...] = ("approve", "edit", "reject", "escalate")


class ReviewDecision(BaseModel):
    """A reviewer's verdict on a pending case: the value a paused graph is resumed with."""

    model_config = ConfigDict(extra="forbid")

    action: ReviewAction = Field(
        description="approve the latest answer, edit (answer yourself), reject, or escalate (large model)."
    )
    answer: str | None = Field(None, description="The reviewer's answer; required for `edit`.")
    reason: str | None = Field(None, description="Why; recommended for `reject`.")
    reviewer: str = Field("anonymous", min_length=1, max_length=200)
    claim: str | None = Field(None, description="Set by Hybrid AI when it claimed the case; leave empty.")

    @model_validator(mode="after")
    def _edit_has_answer(self) -> ReviewDecision:
        if self.action == "edit" and not (self.answer or "").strip():
            raise ValueError("an edit needs the reviewer's answer text")
        return self


@lru_cache(maxsize=16)
def decision_schema(actions: tuple[ReviewAction, ...]) -> type[ReviewDecision]:
    """`ReviewDecision` narrowed to the actions a case allows (LangGraph refuses the others)."""
    if actions == REVIEW_ACTIONS:
        return ReviewDecision
    return create_model(
        "ReviewDecision_" + "_".join(actions),
        __base__=ReviewDecision,
        action=(Literal[actions], Field(description=f"One of: {', '.join(actions)}.")),  # type: ignore[valid-type]
    )


class Review(TypedDict):
    """A resolved review. Written by `human_review`."""

    case_id: str
    action: ReviewAction
    reviewer: str
    answer: str | None
    reason: str | None
    resolved_at: str
    """ISO-8601 UTC time of the verdict."""


class ReviewRequest(TypedDict):
    """What a reviewer is shown: the payload of the `human_review` interrupt."""

    case_id: str
    """Conversation, turn and review round: `<thread>:<turn>:<round>`."""
    actions: list[ReviewAction]
    """What the reviewer may do with this case."""
    question: str
    why: str
    drafts: list[Draft]
    verifications: list[Verification]
    hits: list[Hit]
    route: RouteDecision
