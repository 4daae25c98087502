"""The lexical index: BM25 (bm25s, Snowball stemming, English stopwords) over a collection.

It is derived data: built from the chunks in Chroma, cached in memory and under the data
directory, and rebuilt when the collection's version changes. Its document frequencies also give
the router a cheap "does the knowledge base know these words" signal with no embedding model.
"""

from __future__ import annotations

import json
import math
import shutil
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.settings import Settings
from retrieval.store import collection_version, get_collection

_PAGE = 2000


def tokenize(texts: list[str]) -> Any:
    """Lower-cased, stopword-free, stemmed tokens, as bm25s ids with their vocabulary."""
    import bm25s

    from hybrid.text import stemmer

    return bm25s.tokenize(texts, stopwords="en", stemmer=stemmer(), show_progress=False)


def _terms(text: str) -> list[str]:
    import bm25s

    from hybrid.text import stemmer

    return bm25s.tokenize([text], stopwords="en", stemmer=stemmer(), return_ids=False, show_progress=False)[0]


@dataclass
class LexicalIndex:
    """BM25 over a collection's chunks, with the chunk id of each indexed document."""

    ids: list[str]
    retriever: Any | None
    document_frequency: dict[str, int]
    version: str = "none"
    """The collection version it was built from: `<chunks>-<changes>`."""

    @property
    def documents(self) -> int:
        return len(self.ids)

    def search(self, query: str, k: int) -> list[tuple[str, float]]:
        """The `k` best chunks for `query` by BM25, as (chunk id, score), best first."""
        if self.retriever is None or not self.ids:
            return []
        terms = _terms(query)
        known = [t for t in terms if t in self.retriever.vocab_dict]
        if not known:
            return []
        results, scores = self.retriever.retrieve([known], k=min(k, len(self.ids)), show_progress=False)
        return [
            (self.ids[int(i)], float(s)) for i, s in zip(results[0], scores[0], strict=True) if float(s) > 0
        ]

    def idf(self, term: str) -> float:
        """Smoothed inverse document frequency; unknown terms get the highest value."""
        return math.log((self.documents + 1) / (self.document_frequency.get(term, 0) + 0.5))

    def coverage(self, text: str) -> float:
        """IDF-weighted share of the text's terms that occur in the collection, in [0, 1]."""
        if not self.documents:  # an empty knowledge base: nothing to tokenise the text for
            return 0.0
        terms = set(_terms(text))
        if not terms:
            return 0.0
        weights = {t: self.idf(t) for t in terms}
        total = sum(weights.values())
        known = sum(w for t, w in weights.items() if t in self.document_frequency)
        return known / total if total > 0 else 0.0


def build(ids: list[str], texts: list[str]) -> LexicalIndex:
    """Index chunk texts."""
    import bm25s

    if not ids:
        return LexicalIndex([], None, {})
    tokens = tokenize(texts)
    retriever = bm25s.BM25()
    retriever.index(tokens, show_progress=False)
    counts = np.zeros(len(tokens.vocab), dtype=np.int64)
    for doc in tokens.ids:
        counts[np.unique(np.asarray(doc, dtype=np.int64))] += 1
    frequency = {term: int(counts[i]) for term, i in tokens.vocab.items() if counts[i]}
    return LexicalIndex(list(ids), retriever, frequency)


def _save(index: LexicalIndex, folder: Path) -> None:
    partial = folder.with_name(folder.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    if index.retriever is not None:
        index.retriever.save(str(partial / "bm25"))
    (partial / "index.json").write_text(json.dumps({"ids": index.ids, "df": index.document_frequency}))
    shutil.rmtree(folder, ignore_errors=True)
    partial.rename(folder)  # readers see a complete index or none


def _load(folder: Path) -> LexicalIndex | None:
    import bm25s

    try:
        meta = json.loads((folder / "index.json").read_text())
        retriever = bm25s.BM25.load(str(folder / "bm25")) if meta["ids"] else None
    except (OSError, ValueError, KeyError):
        return None
    return LexicalIndex(meta["ids"], retriever, meta["df"])


_cache: dict[tuple[str, str], tuple[tuple[int, int], LexicalIndex, float]] = {}
"""(store, collection) → (its version, its index, when that version was last read from Chroma)."""
_cache_lock = threading.Lock()


def lexical_index(settings: Settings, name: str | None = None, *, max_age_s: float = 1.0) -> LexicalIndex:
    """The BM25 index of a collection, current with its content.

    Asking Chroma for the collection's version costs milliseconds on every question, so it is asked
    at most every `max_age_s` seconds: a change made by another process shows within that time.
    This process's ingestion asks with 0 after each change, so its own changes show at once.
    """
    key = (settings.chroma_url or str(settings.chroma_path), name or settings.collection)
    with _cache_lock:
        cached = _cache.get(key)
        if cached and time.monotonic() - cached[2] < max_age_s:
            return cached[1]
    collection = get_collection(settings, name)
    version = collection_version(collection)
    with _cache_lock:
        cached = _cache.get(key)
        if cached and cached[0] == version:
            _cache[key] = (version, cached[1], time.monotonic())
            return cached[1]
        folder = settings.data_dir / "lexical" / collection.name / f"{version[0]}-{version[1]}"
        index = _load(folder) if folder.exists() else None
        if index is None:
            ids: list[str] = []
            texts: list[str] = []
            for offset in range(0, version[0], _PAGE):
                page = collection.get(include=["documents"], limit=_PAGE, offset=offset)
                ids += page["ids"]
                texts += [d or "" for d in page["documents"] or []]
            index = build(ids, texts)
            for stale in folder.parent.glob("*"):
                shutil.rmtree(stale, ignore_errors=True)
            _save(index, folder)
        index.version = f"{version[0]}-{version[1]}"
        _cache[key] = (version, index, time.monotonic())
        return index


def reset() -> None:
    """Forget in-memory indexes."""
    with _cache_lock:
        _cache.clear()
