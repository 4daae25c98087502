"""Labels for the pairs live traffic left (`hybrid.shadow`): is each tier's answer right?

For each tier of a pair, the first source that says something wins:

1. a person: the user's thumbs on the answer they got, or a reviewer's verdict (approve: the
   approved tier's answer was right; edit or reject: every answer the reviewer saw was wrong;
   escalate: the small answer was wrong);
2. a reference answer, when the question came from an evaluation set (SQuAD F1 and the
   `correct` rule of `hybrid.qa`);
3. the judge model (`hybrid.tuning.judge`), asked twice with the answers swapped; its verdicts are
   kept in the pair's row, so a pair is judged once.

A tier nobody and nothing could label leaves the pair out of training. `quality` is F1 against a
reference, else 1 for right and 0 for wrong.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal

import sqlalchemy as sa

from hybrid.database import database_for, feedback, shadow_pairs
from hybrid.qa import QAItem, score
from hybrid.settings import Settings
from hybrid.tuning.pairs import LABEL_SOURCES, Pair, TierDraft

Log = Callable[[str], None]
TIERS = ("small", "large")


@dataclass(frozen=True)
class TierLabel:
    good: bool
    quality: float
    source: str


def human_labels(rows: list[Mapping[str, Any]], tried: set[str]) -> dict[str, TierLabel]:
    """What users' ratings and reviewers' verdicts on a turn say about each tier (latest wins)."""
    labels: dict[str, TierLabel] = {}
    for row in rows:
        tier, source = row["tier"], row["source"]
        if source == "user" and tier in TIERS:
            good = row["rating"] == "up"
            labels[tier] = TierLabel(good, float(good), "feedback")
        elif source == "reviewer":
            action = row["comment"]
            if action == "approve" and tier in TIERS:
                labels[tier] = TierLabel(True, 1.0, "reviewer")
            elif action in ("edit", "reject"):
                for seen in tried:
                    labels[seen] = TierLabel(False, 0.0, "reviewer")
            elif action == "escalate" and "small" in tried:
                labels["small"] = TierLabel(False, 0.0, "reviewer")
    return labels


def reference_labels(
    question: str, drafts: Mapping[str, Mapping[str, Any]], reference: list[str]
) -> dict[str, TierLabel]:
    item = QAItem(id="", question=question, answers=tuple(reference), kind="extractive", group="")
    out = {}
    for tier, draft in drafts.items():
        scored = score(draft.get("text") or "", item)
        out[tier] = TierLabel(scored.correct, scored.f1, "reference")
    return out


def _judged(row: Mapping[str, Any], settings: Settings) -> dict[str, Any]:
    from hybrid.tuning.judge import judge_pair

    verdict = judge_pair(
        row["question"], row["passages"] or [], row["small"]["text"], row["large"]["text"], settings
    )
    return {"small": verdict.small, "large": verdict.large, "model": verdict.model, "raw": list(verdict.raw)}


def _source_rank(source: str) -> int:
    return LABEL_SOURCES.index(source)


def labelled_pairs(
    settings: Settings,
    *,
    since: datetime | None = None,
    judge: Literal["run", "cached", "off"] = "run",
    log: Log = lambda _m: None,
) -> tuple[list[Pair], dict[str, int]]:
    """Every stored pair with both tiers labelled, and counts of what was left out and why.

    `judge`: run the judge where a pair needs it; use only verdicts it gave before (no model
    runs); or leave pairs only the judge could label out."""
    engine = database_for(settings).engine
    query = sa.select(shadow_pairs).order_by(shadow_pairs.c.at)
    if since is not None:
        query = query.where(shadow_pairs.c.at >= since)
    with engine.connect() as connection:
        rows = [dict(r._mapping) for r in connection.execute(query)]
        ratings = [dict(r._mapping) for r in connection.execute(sa.select(feedback).order_by(feedback.c.id))]
    by_trace: dict[str, list[dict[str, Any]]] = {}
    for rating in ratings:
        by_trace.setdefault(rating["trace_id"] or "", []).append(rating)
    counts = {"pairs": len(rows), "used": 0, "missing_draft": 0, "unlabelled": 0, "judged": 0}
    pairs = []
    for row in rows:
        drafts = {
            t: row[t]
            for t in TIERS
            if row[t] and (row[t].get("text") or "").strip() and not row[t].get("error")
        }
        if len(drafts) < 2:
            counts["missing_draft"] += 1
            continue
        tried = {t for t in TIERS if t != row["shadow_tier"]}
        labels: dict[str, TierLabel] = {}
        if row["reference"]:
            labels.update(reference_labels(row["question"], drafts, row["reference"]))
        labels.update(human_labels(by_trace.get(row["trace_id"], []), tried))  # people win
        if judge != "off" and any(t not in labels for t in TIERS):
            judged = (row.get("labels") or {}).get("judge")
            if judged is None and judge == "cached":
                judged = {}
            elif judged is None:
                log(f"judging pair {row['trace_id'][:12]} ...")
                judged = _judged(row, settings)
                counts["judged"] += 1
                with engine.begin() as connection:
                    connection.execute(
                        sa.update(shadow_pairs)
                        .where(shadow_pairs.c.trace_id == row["trace_id"])
                        .values(labels={**(row.get("labels") or {}), "judge": judged})
                    )
            for tier in TIERS:
                if tier not in labels and judged.get(tier) in ("right", "wrong"):
                    good = judged[tier] == "right"
                    labels[tier] = TierLabel(good, float(good), "judge")
        if any(t not in labels for t in TIERS):
            counts["unlabelled"] += 1
            continue
        counts["used"] += 1
        source = max((labels[t].source for t in TIERS), key=_source_rank)  # the weakest source used
        pairs.append(
            Pair(
                id=row["trace_id"],
                group=row["thread_id"],  # a conversation's turns share a fold
                question=row["question"],
                passages=tuple(row["passages"] or ()),
                small=TierDraft.from_record(drafts["small"]),
                large=TierDraft.from_record(drafts["large"]),
                small_quality=labels["small"].quality,
                large_quality=labels["large"].quality,
                small_good=labels["small"].good,
                large_good=labels["large"].good,
                source=source,
                retrieval_confidence=row["retrieval_confidence"],
            )
        )
    return pairs, counts
