"""Labelled pairs: one question answered by both tiers, and how good each answer was.

Pairs come from two places:

- a question-answer set run through `hybrid eval answers` (each question answered by always-small
  and always-large, labelled by its reference answers);
- live traffic with shadow runs (`hybrid.shadow`): the answer the user got and the other tier's,
  labelled by, in order of precedence, a reviewer's verdict or the user's feedback, a reference
  answer when the question came from an evaluation set, or the judge model (`hybrid.tuning.judge`).

A pair is what the router learns from (which tier was good enough) and what each tier's verifier
learns from (was this tier's draft good).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

LABEL_SOURCES = ("reviewer", "feedback", "reference", "judge")
"""Where a label came from, most trusted first."""


@dataclass(frozen=True)
class TierDraft:
    """One tier's answer to the question, as the verifier sees it."""

    model: str
    text: str
    finish_reason: str | None = "stop"
    model_meta: dict[str, Any] = field(default_factory=dict)
    cost: float = 0.0
    error: str | None = None

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> TierDraft:
        return cls(
            model=str(record.get("model") or ""),
            text=str(record.get("text") or ""),
            finish_reason=record.get("finish_reason"),
            model_meta=dict(record.get("model_meta") or {}),
            cost=float(record.get("cost") or 0.0),
            error=record.get("error"),
        )


@dataclass(frozen=True)
class Pair:
    """A question, both tiers' drafts, and their labels."""

    id: str
    group: str
    question: str
    passages: tuple[str, ...]
    small: TierDraft
    large: TierDraft
    small_quality: float
    """How good the small answer is, in [0, 1] (token F1 against a reference, or 1/0 from a verdict)."""
    large_quality: float
    small_good: bool
    large_good: bool
    source: str
    """Where the labels came from (`LABEL_SOURCES`)."""
    retrieval_confidence: float | None = None

    @property
    def small_sufficed(self) -> bool:
        """The small answer was as good as the large one (escalating would have gained nothing)."""
        return self.small_quality >= self.large_quality


def pairs_from_outcomes(small: Sequence[Mapping[str, Any]], large: Sequence[Mapping[str, Any]]) -> list[Pair]:
    """Pairs from `hybrid eval answers` outcomes of always-small and always-large (matched by id)."""
    by_id = {row["id"]: row for row in large}
    pairs = []
    for row in small:
        other = by_id.get(row["id"])
        if other is None or not row.get("drafts") or not other.get("drafts") or row["status"] == "error":
            continue
        small_draft = next((d for d in row["drafts"] if d["tier"] == "small"), None)
        large_draft = next((d for d in other["drafts"] if d["tier"] == "large"), None)
        if small_draft is None or large_draft is None:
            continue
        pairs.append(
            Pair(
                id=row["id"],
                group=row["group"],
                question=row["question"],
                passages=tuple(row.get("passages") or ()),
                small=TierDraft.from_record(small_draft),
                large=TierDraft.from_record(large_draft),
                # Each tier's own draft, scored: the delivered answer may be another tier's (a
                # fallback after an empty draft) or none (a draft sent to review).
                small_quality=float(small_draft.get("f1", row["f1"])),
                large_quality=float(large_draft.get("f1", other["f1"])),
                small_good=bool(small_draft.get("correct", row["correct"])),
                large_good=bool(large_draft.get("correct", other["correct"])),
                source="reference",
                retrieval_confidence=row.get("retrieval_confidence"),
            )
        )
    return pairs
