"""`hybrid eval cache`: calibrate the near-duplicate threshold of the answer cache on real questions.

A cache's costly mistake is answering a different question from the cache. So the threshold is
chosen on real, distinct questions that are close to each other (each question's nearest
neighbour among thousands of GSM8K, MMLU and XQuAD questions: same topic, same style, other
meaning): it is the lowest similarity at which the share of such pairs that would be served from
the cache (similar enough *and* passing the polarity, number and word-order guard) stays under the
target false-hit rate. Recall is then measured on rewrites of questions that keep their meaning
(contractions, word choice, punctuation and case), each compared with its original.
"""

from __future__ import annotations

import csv
import json
import random
import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.cache import conflict

# Rewrites that keep a question's meaning.
_REWRITES: list[tuple[str, str]] = [
    (r"\bWhat is\b", "What's"),
    (r"\bwhat is\b", "what's"),
    (r"\bHow many\b", "What number of"),
    (r"\bWhich\b", "What"),
    (r"\bcan not\b|\bcannot\b", "can't"),
    (r"\bdoes not\b", "doesn't"),
    (r"\bdo not\b", "don't"),
    (r"\bis not\b", "isn't"),
    (r"\bpeople\b", "persons"),
    (r"\bbig\b", "large"),
    (r"\blarge\b", "big"),
    (r"\bbuy\b", "purchase"),
    (r"\bhelp\b", "assist"),
]


def paraphrase(question: str, rng: random.Random) -> str | None:
    """A meaning-preserving rewrite of a question, or None if none of the rewrites apply."""
    candidates = [(p, r) for p, r in _REWRITES if re.search(p, question)]
    if not candidates:
        return None
    pattern, replacement = rng.choice(candidates)
    rewritten = re.sub(pattern, replacement, question, count=1)
    if rng.random() < 0.5:
        rewritten = rewritten.rstrip("?.! ") + ("?" if question.rstrip().endswith("?") else "")
    return rewritten if rewritten != question else None


def load_questions(routellm: Path, xquad: Path | None, limit: int, seed: int) -> list[str]:
    """Distinct real questions: GSM8K and MMLU prompts (with their answer options), XQuAD questions."""
    csv.field_size_limit(10**9)
    questions: list[str] = []
    with (routellm / "gsm8k" / "gsm8k_responses.csv").open() as handle:
        questions += [row["prompt"] for row in csv.DictReader(handle)]
    for path in sorted((routellm / "mmlu" / "responses").glob("*.csv")):
        with path.open() as handle:
            questions += [row["prompt"].strip() for row in csv.DictReader(handle)]  # options included
    if xquad and xquad.exists():
        data = json.loads(xquad.read_text())["data"]
        questions += [qa["question"] for article in data for p in article["paragraphs"] for qa in p["qas"]]
    unique = sorted({q.strip() for q in questions if 10 <= len(q.strip()) <= 2000})
    random.Random(seed).shuffle(unique)
    return unique[:limit]


def evaluate_cache(
    routellm: Path,
    *,
    xquad: Path | None = None,
    limit: int = 6000,
    target_false_hits: float = 0.001,
    seed: int = 0,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """False hits among nearest distinct questions and recall on rewrites, per threshold."""
    from retrieval.embeddings import embed

    questions = load_questions(routellm, xquad, limit, seed)
    log(f"embedding {len(questions)} distinct questions ...")
    vectors = embed(questions, batch_size=64, threads=2)
    similarities = vectors @ vectors.T
    np.fill_diagonal(similarities, -1.0)
    nearest = similarities.argmax(axis=1)
    pairs = [(i, int(nearest[i]), float(similarities[i, nearest[i]])) for i in range(len(questions))]
    guarded = [(s, conflict(questions[i], questions[j]) is None) for i, j, s in pairs]

    rng = random.Random(seed)
    rewrites = [(q, p) for q in questions[:2000] if (p := paraphrase(q, rng))]
    log(f"embedding {len(rewrites)} meaning-preserving rewrites ...")
    rewritten = embed([p for _, p in rewrites], batch_size=64, threads=2)
    index = {q: k for k, q in enumerate(questions)}
    positive = [
        (float(vectors[index[q]] @ rewritten[k]), conflict(q, p) is None) for k, (q, p) in enumerate(rewrites)
    ]

    rows = []
    for threshold in np.round(np.arange(0.80, 0.996, 0.01), 3):
        false_hits = sum(s >= threshold and ok for s, ok in guarded) / len(guarded)
        unguarded = sum(s >= threshold for s, _ in guarded) / len(guarded)
        recall = sum(s >= threshold and ok for s, ok in positive) / max(1, len(positive))
        rows.append(
            {
                "threshold": float(threshold),
                "false_hit_rate": false_hits,
                "false_hit_rate_without_guard": unguarded,
                "recall": recall,
            }
        )
    chosen = next((r for r in rows if r["false_hit_rate"] <= target_false_hits), rows[-1])
    return {
        "questions": len(questions),
        "rewrites": len(rewrites),
        "target_false_hit_rate": target_false_hits,
        "recommended_threshold": chosen["threshold"],
        "at_recommended": chosen,
        "thresholds": rows,
    }


def format_table(report: dict[str, Any]) -> str:
    """The calibration for people."""
    lines = [f"{'threshold':>10}{'false hits':>12}{'(no guard)':>12}{'recall':>9}"]
    for row in report["thresholds"]:
        mark = "  <- recommended" if row["threshold"] == report["recommended_threshold"] else ""
        lines.append(
            f"{row['threshold']:>10.2f}{row['false_hit_rate']:>12.4%}{row['false_hit_rate_without_guard']:>12.4%}"
            f"{row['recall']:>9.1%}{mark}"
        )
    lines.append(
        f"\n{report['questions']} distinct questions (each with its nearest neighbour), {report['rewrites']} "
        f"rewrites; recommended HYBRID_CACHE_THRESHOLD={report['recommended_threshold']:.2f} "
        f"(false hits <= {report['target_false_hit_rate']:.2%})"
    )
    return "\n".join(lines)
