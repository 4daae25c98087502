"""Query embeddings for training and benchmarks, computed once per text and kept on disk.

Embedding MMLU's 14,037 prompts with MiniLM takes minutes; training and benchmark runs over the
same texts reuse the vectors. Each cache file holds the SHA-256 of every
text it covers and the vectors, so any mix of texts finds what was computed before.
"""

from __future__ import annotations

import hashlib
import re
import uuid
from collections.abc import Sequence
from pathlib import Path

import numpy as np


def _key(text: str) -> bytes:
    return hashlib.sha256(text.encode("utf-8")).digest()[:16]


def embed_cached(
    texts: Sequence[str], cache_dir: Path | None, threads: int = 1, layer: int = 6
) -> np.ndarray:
    """Unit-length MiniLM embeddings after `layer` (`retrieval.embeddings.embed`), one row per text,
    cached (one set of files per layer)."""
    from retrieval.embeddings import EMBEDDING_DIMENSIONS, FINAL_LAYER, embed, encoder

    if cache_dir is None:
        return embed(list(texts), batch_size=64, threads=threads, layer=layer)
    # Named after the vectors the encoder gives, so files of another precision are never reused.
    vectors = f"minilm-{encoder().vectors}"
    name = vectors if layer == FINAL_LAYER else f"{vectors}-layer{layer}"
    keys = [_key(t) for t in texts]
    wanted = set(keys)
    found: dict[bytes, np.ndarray] = {}
    # Exactly this layer's files: "minilm-q8-*" would also match "minilm-q8-layer3-*", and hand out
    # layer-3 vectors as final-layer ones (training signals unlike the ones served).
    own = re.compile(rf"{re.escape(name)}-[0-9a-f]{{12}}\.npz")
    for path in sorted(p for p in Path(cache_dir).glob(f"{name}-*.npz") if own.fullmatch(p.name)):
        with np.load(path, allow_pickle=False) as stored:
            for key, vector in zip(stored["keys"], stored["vectors"], strict=True):
                if key.tobytes() in wanted:
                    found[key.tobytes()] = vector
    missing = list(dict.fromkeys(t for t, k in zip(texts, keys, strict=True) if k not in found))
    if missing:
        vectors = embed(missing, batch_size=64, threads=threads, layer=layer)
        Path(cache_dir).mkdir(parents=True, exist_ok=True)
        new_keys = np.frombuffer(b"".join(_key(t) for t in missing), dtype=np.uint8).reshape(-1, 16)
        np.savez(Path(cache_dir) / f"{name}-{uuid.uuid4().hex[:12]}.npz", keys=new_keys, vectors=vectors)
        found.update(zip((_key(t) for t in missing), vectors, strict=True))
    if not texts:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    return np.stack([found[k] for k in keys]).astype(np.float32)
