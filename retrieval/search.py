"""Search: dense (Chroma), lexical (BM25), or both fused by reciprocal rank fusion.

Every hit carries the score it was ranked by, its rank in each ranker, and its cosine similarity
to the query, which is comparable across modes and serves as the retrieval-confidence signal.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from hybrid.settings import RankingMode, Settings
from retrieval.lexical import lexical_index
from retrieval.store import get_collection


def reciprocal_rank_fusion(rankings: Mapping[str, Sequence[str]], k: int) -> list[tuple[str, float]]:
    """Fuse ranked id lists: score(id) = sum over rankers of 1 / (k + rank), ranks from 1."""
    scores: dict[str, float] = {}
    for ranking in rankings.values():
        for rank, item in enumerate(ranking, start=1):
            scores[item] = scores.get(item, 0.0) + 1.0 / (k + rank)
    return sorted(scores.items(), key=lambda pair: (-pair[1], pair[0]))


def dense_ranking(collection: Any, query_vector: np.ndarray, n: int) -> list[tuple[str, float]]:
    """Nearest chunks by cosine similarity, as (chunk id, similarity)."""
    count = collection.count()
    if not count:
        return []
    result = collection.query(query_embeddings=[query_vector], n_results=min(n, count), include=["distances"])
    return [(i, 1.0 - float(d)) for i, d in zip(result["ids"][0], result["distances"][0], strict=True)]


def search(
    settings: Settings,
    query: str,
    k: int,
    *,
    mode: RankingMode | None = None,
    collection: str | None = None,
) -> list[dict[str, Any]]:
    """The `k` best chunks for `query`, best first, ranked by `mode` (default: configured)."""
    from retrieval.embeddings import embed_query

    mode = mode or settings.retrieval_mode
    store = get_collection(settings, collection)
    if store.count() == 0:
        return []
    query_vector = embed_query(query)
    depth = max(k, settings.fusion_candidates)
    rankings: dict[str, list[tuple[str, float]]] = {}
    if mode in ("dense", "hybrid"):
        rankings["dense"] = dense_ranking(store, query_vector, depth)
    if mode in ("bm25", "hybrid"):
        rankings["bm25"] = lexical_index(settings, collection).search(query, depth)
    if mode == "hybrid":
        ranked = reciprocal_rank_fusion(
            {name: [i for i, _ in r] for name, r in rankings.items()}, settings.rrf_k
        )
    else:
        ranked = rankings[mode]
    ranked = ranked[:k]
    if not ranked:
        return []

    ranks = {name: {item: rank for rank, (item, _) in enumerate(r, start=1)} for name, r in rankings.items()}
    found = store.get(ids=[i for i, _ in ranked], include=["documents", "metadatas", "embeddings"])
    by_id = {
        item: (text, meta, vector)
        for item, text, meta, vector in zip(
            found["ids"], found["documents"], found["metadatas"], found["embeddings"], strict=True
        )
    }
    hits = []
    for item, score in ranked:
        if item not in by_id:  # removed between ranking and fetching
            continue
        text, meta, vector = by_id[item]
        meta = dict(meta or {})
        hits.append(
            {
                "id": item,
                "text": text or "",
                "source": str(meta.get("source", "")),
                "score": round(float(score), 6),
                "similarity": round(float(np.dot(query_vector, np.asarray(vector, dtype=np.float32))), 4),
                "ranks": {name: r[item] for name, r in ranks.items() if item in r},
                "metadata": meta,
            }
        )
    return hits
