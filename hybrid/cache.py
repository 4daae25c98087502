"""The answer cache: verified answers reused for the same, or nearly the same, question.

- Only answers that passed verification or a reviewer are stored.
- A cached answer is only reused in the same scope: the same conversation context and the same
  knowledge-base version, so a follow-up is not answered out of context and ingestion makes
  earlier answers stale.
- A near-duplicate must be close in embedding space (cosine >= `cache_threshold`) and must not
  differ in polarity or numbers: "enable X" never serves "disable X", "17 * 23" never "17 * 24".
  Semantic caches that compare embeddings alone are known to collide on such pairs.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, Literal

import numpy as np
import sqlalchemy as sa

from hybrid.database import answer_cache, database_for, insert_ignore
from hybrid.settings import Settings
from hybrid.text import content_terms, numbers, words

# Words whose presence on one side only flips or bounds the meaning of an otherwise similar question.
POLARITY = frozenset(
    """
    not no never none nothing nobody without cannot can't don't doesn't isn't aren't won't shouldn't
    enable disable enabled disabled allow deny allowed denied add remove added removed start stop
    started stopped increase decrease increased decreased raise lower more less most least before
    after min max minimum maximum on off open close opened closed lock unlock include exclude
    included excluded true false yes accept reject accepted rejected above below over under first
    last highest lowest best worst up down in out install uninstall encrypt decrypt left right
    east west north south forward backward backwards inside outside upper lower internal external
    import export buy sell import exported imported positive negative increasing decreasing rise fall
    gain loss profit deficit surplus inflation deflation male female younger older earlier later
    """.split()  # noqa: SIM905 (a word list reads better as text)
)
_CANDIDATES = 500
_EMBEDDING_SEES = 600  # characters beyond which the embedding may not see a difference


@dataclass(frozen=True)
class CacheHit:
    """A cached answer found for a question."""

    kind: Literal["exact", "semantic"]
    answer: str
    answered_by: str
    question: str
    similarity: float
    trace_id: str | None


def scope(context: str, kb_version: str) -> str:
    """The cache scope of a question: its conversation context and the knowledge-base version."""
    return hashlib.sha256(f"{context}\0{kb_version}".encode()).hexdigest()[:32]


def normalized(question: str) -> str:
    """The question as compared exactly: case, spacing and punctuation do not matter."""
    return " ".join(words(question))


_CONTRACTIONS = [
    (re.compile(r"\bcan['’]t\b"), "can not"),
    (re.compile(r"\bwon['’]t\b"), "will not"),
    (re.compile(r"n['’]t\b"), " not"),
    (re.compile(r"\b(what|who|where|how|when|it|that|there)['’]s\b"), r"\1 is"),
    (re.compile(r"['’]re\b"), " are"),
    (re.compile(r"\bcannot\b"), "can not"),
]


def _expanded(text: str) -> list[str]:
    lowered = text.casefold()
    for pattern, replacement in _CONTRACTIONS:
        lowered = pattern.sub(replacement, lowered)
    return words(lowered)


def conflict(a: str, b: str) -> str | None:
    """Why two similar questions must not share an answer (polarity or numbers), if they must not."""
    la, lb = _expanded(a), _expanded(b)
    flipped = sorted((set(la) ^ set(lb)) & POLARITY)
    if flipped:
        return f"differ in {', '.join(flipped)}"
    if sorted(numbers(a)) != sorted(numbers(b)):
        return "differ in numbers"
    ta, tb = content_terms(a), content_terms(b)
    if sorted(ta) == sorted(tb) and ta != tb:
        return "same words in another order"  # "is A faster than B", "is B faster than A": embed alike
    if max(len(a), len(b)) > _EMBEDDING_SEES:
        sa, sb = set(ta), set(tb)
        if len(sa & sb) / max(1, len(sa | sb)) < 0.85:
            # MiniLM reads ~256 tokens: two long questions differing further on embed alike.
            return "long questions that differ in substance"
    return None


def lookup(settings: Settings, question: str, scope_key: str) -> tuple[CacheHit | None, str]:
    """A usable cached answer for `question` in `scope_key`, and a reason line for the route."""
    if settings.cache == "off":
        return None, "cache off"
    engine = database_for(settings).engine
    key = normalized(question)
    with engine.connect() as connection:
        row = connection.execute(
            sa.select(answer_cache).where(answer_cache.c.scope == scope_key, answer_cache.c.normalized == key)
        ).first()
        if row is not None:
            return CacheHit(
                "exact", row.answer, row.answered_by, row.question, 1.0, row.trace_id
            ), "cache: exact match"
        if settings.cache != "semantic":
            return None, "cache: no exact match"
        rows = connection.execute(
            sa.select(answer_cache)
            .where(answer_cache.c.scope == scope_key, answer_cache.c.embedding.is_not(None))
            .order_by(answer_cache.c.id.desc())
            .limit(_CANDIDATES)
        ).all()
    if not rows:
        return None, "cache: nothing cached in this scope"
    from retrieval.embeddings import embed_query

    query = embed_query(question)
    matrix = np.stack([np.frombuffer(r.embedding, dtype=np.float32) for r in rows])
    similarities = matrix @ query
    for index in np.argsort(-similarities)[:5]:
        similarity = float(similarities[index])
        if similarity < settings.cache_threshold:
            break
        candidate = rows[int(index)]
        reason = conflict(question, candidate.question)
        if reason is None:
            hit = CacheHit(
                "semantic",
                candidate.answer,
                candidate.answered_by,
                candidate.question,
                similarity,
                candidate.trace_id,
            )
            return hit, f"cache: near-duplicate ({similarity:.3f} >= {settings.cache_threshold:.3f})"
        return None, f"cache: similar question ({similarity:.3f}) refused: {reason}"
    return None, f"cache: no question above {settings.cache_threshold:.3f}"


def store(
    settings: Settings, *, question: str, scope_key: str, answer: str, answered_by: str, trace_id: str | None
) -> None:
    """Remember a verified answer (the first one for a question in a scope is kept)."""
    if settings.cache == "off":
        return
    embedding: Any = None
    if settings.cache == "semantic":
        from retrieval.embeddings import embed_query

        embedding = embed_query(question).tobytes()
    insert_ignore(
        database_for(settings).engine,
        answer_cache,
        {
            "scope": scope_key,
            "normalized": normalized(question),
            "question": question,
            "embedding": embedding,
            "answer": answer,
            "answered_by": answered_by,
            "trace_id": trace_id,
            "created_at": datetime.now(UTC),
        },
        ["scope", "normalized"],
    )
