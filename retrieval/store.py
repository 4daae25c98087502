"""The knowledge base: a Chroma collection, searched densely, with lexical statistics for routing."""

from __future__ import annotations

import math
import threading
from collections import Counter
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from hybrid.settings import Settings
from hybrid.text import content_terms

_lock = threading.Lock()


@lru_cache(maxsize=4)
def _persistent_client(path: Path) -> Any:
    import chromadb
    from chromadb.config import Settings as ChromaSettings

    path.mkdir(parents=True, exist_ok=True)
    return chromadb.PersistentClient(
        path=str(path), settings=ChromaSettings(anonymized_telemetry=False, allow_reset=False)
    )


def get_collection(settings: Settings, name: str | None = None) -> Any:
    """The named (default: configured) collection, created empty if missing, with our embeddings."""
    from retrieval.embeddings import MiniLMEmbeddingFunction

    client = _persistent_client(settings.chroma_path)
    return client.get_or_create_collection(
        name or settings.collection,
        embedding_function=MiniLMEmbeddingFunction(),
        configuration={"hnsw": {"space": "cosine"}},
    )


@dataclass(frozen=True)
class TermStats:
    """Document frequencies of content terms across a collection (its lexical fingerprint)."""

    documents: int
    frequency: dict[str, int]

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency; unknown terms get the highest value."""
        return math.log((self.documents + 1) / (self.frequency.get(term, 0) + 0.5))

    def coverage(self, text: str) -> float:
        """IDF-weighted share of the text's content terms that occur in the collection, in [0, 1]."""
        terms = set(content_terms(text))
        if not terms or not self.documents:
            return 0.0
        weights = {t: self.idf(t) for t in terms}
        total = sum(weights.values())
        known = sum(w for t, w in weights.items() if t in self.frequency)
        return known / total if total > 0 else 0.0


_stats_cache: dict[tuple[str, str], tuple[int, TermStats]] = {}


def term_stats(settings: Settings, name: str | None = None) -> TermStats:
    """Term statistics of a collection, recomputed only when its size changes."""
    collection = get_collection(settings, name)
    key = (str(settings.chroma_path), collection.name)
    count = collection.count()
    with _lock:
        cached = _stats_cache.get(key)
        if cached and cached[0] == count:
            return cached[1]
    frequency: Counter[str] = Counter()
    batch = 1000
    for offset in range(0, count, batch):
        page = collection.get(include=["documents"], limit=batch, offset=offset)
        for document in page["documents"] or []:
            frequency.update(set(content_terms(document or "")))
    stats = TermStats(documents=count, frequency=dict(frequency))
    with _lock:
        _stats_cache[key] = (count, stats)
    return stats


def search(settings: Settings, query: str, k: int, name: str | None = None) -> list[dict[str, Any]]:
    """The `k` chunks nearest to `query`, best first, each with its cosine similarity."""
    from retrieval.embeddings import embed

    collection = get_collection(settings, name)
    if collection.count() == 0:
        return []
    result = collection.query(
        query_embeddings=embed([query]),
        n_results=min(k, collection.count()),
        include=["documents", "metadatas", "distances"],
    )
    hits = []
    for chunk_id, text, metadata, distance in zip(
        result["ids"][0],
        result["documents"][0],
        result["metadatas"][0],
        result["distances"][0],
        strict=True,
    ):
        meta = dict(metadata or {})
        hits.append(
            {
                "id": chunk_id,
                "text": text or "",
                "source": str(meta.get("source", "")),
                "score": round(1.0 - float(distance), 4),
                "metadata": meta,
            }
        )
    return hits
