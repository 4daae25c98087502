"""MiniLM in ONNX Runtime: exported, it gives the vectors sentence-transformers gives in torch; served
with its early half in 8 bits, vectors within cosine 0.99 of those, the same for a text whatever is
embedded beside it; and the embedder falls back to torch, saying why, when no graph can be made."""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from concurrent.futures import Future
from pathlib import Path

import numpy as np
import onnx
import pytest

from retrieval import embeddings

TEXTS = [
    "What is the capital of France?",
    "x",
    "Alpacas hum softly when they are curious or content. " * 6,
    "word " * 400,  # longer than MiniLM's 256 tokens: truncated alike
    "",
]


@pytest.fixture
def fresh_encoder() -> None:
    embeddings.encoder.cache_clear()
    yield
    embeddings.encoder.cache_clear()


@pytest.fixture(scope="module")
def full_precision(tmp_path_factory: pytest.TempPathFactory) -> embeddings.OnnxMiniLM:
    """The export before its early half is quantised: what checks the export itself."""
    target = embeddings.prepare_onnx(tmp_path_factory.mktemp("export") / "minilm", quantize_early=False)
    return embeddings.OnnxMiniLM(target, embeddings.model_path())


def _cosines(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    return np.einsum("ij,ij->i", a, b) / np.linalg.norm(a, axis=1) / np.linalg.norm(b, axis=1)


@pytest.mark.integration
def test_the_exported_graphs_in_full_precision_give_the_sentence_transformers_vectors(
    full_precision: embeddings.OnnxMiniLM,
) -> None:
    torch = embeddings.TorchMiniLM()
    expected = torch.encode(TEXTS, batch_size=64, threads=1).final
    for threads in (1, 2):
        vectors = full_precision.encode(TEXTS, batch_size=64, threads=threads).final
        assert vectors.shape == (len(TEXTS), embeddings.EMBEDDING_DIMENSIONS)
        assert np.abs(vectors - expected).max() < 1e-5
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    early = full_precision.encode(TEXTS, batch_size=2, threads=1, final=False)
    assert early.final is None
    expected_early = torch.encode(TEXTS, batch_size=64, threads=1, final=False).early
    assert np.abs(early.early - expected_early).max() < 1e-5
    assert _cosines(expected_early, expected).max() < 0.99  # another vector, not the last layer's


@pytest.mark.integration
def test_the_served_vectors_with_an_8_bit_early_half_stay_close_to_full_precision(
    full_precision: embeddings.OnnxMiniLM,
) -> None:
    runner = embeddings.encoder()
    assert isinstance(runner, embeddings.OnnxMiniLM)
    assert runner.vectors == embeddings.VECTORS
    served = runner.encode(TEXTS, batch_size=64, threads=1)
    exact = full_precision.encode(TEXTS, batch_size=64, threads=1)
    for layer_served, layer_exact in ((served.early, exact.early), (served.final, exact.final)):
        assert np.allclose(np.linalg.norm(layer_served, axis=1), 1.0, atol=1e-5)
        cosines = _cosines(layer_served, layer_exact)
        assert cosines[:-1].min() > 0.99
        assert cosines[-1] > 0.98  # the empty text: MiniLM's two marker tokens alone, the worst case
        assert np.abs(layer_served - layer_exact).max() > 1e-4  # quantised indeed, not the same graph
    early_graph = onnx.load(str(runner.graphs / "early.onnx"), load_external_data=False)
    quantised = [node for node in early_graph.graph.node if node.op_type == "MatMulInteger"]
    assert len(quantised) == 2 * embeddings.EARLY_LAYER  # each layer's two feed-forward products


@pytest.mark.integration
def test_each_layer_runs_as_a_few_fused_operators(full_precision: embeddings.OnnxMiniLM) -> None:
    # The fused graphs give torch's vectors (the full-precision test above); here, that they are fused.
    for graphs in (embeddings.encoder().graphs, full_precision.graphs):  # served, and full precision
        for half, layers in (
            ("early", embeddings.EARLY_LAYER),
            ("late", embeddings.FINAL_LAYER - embeddings.EARLY_LAYER),
        ):
            ops = [
                node.op_type
                for node in onnx.load(str(graphs / f"{half}.onnx"), load_external_data=False).graph.node
            ]
            assert ops.count("Attention") == layers
            assert ops.count("SkipLayerNormalization") == 2 * layers
            assert "Softmax" not in ops
            assert len(ops) < 20 * layers


@pytest.mark.integration
def test_a_texts_vector_does_not_depend_on_the_texts_embedded_beside_it() -> None:
    # 8-bit activations are scaled per run: in a batch, a text's vector moved with its neighbours,
    # and the router's references (embedded in bulk) differed from a served question (alone).
    together = embeddings.embed(TEXTS, batch_size=64)
    alone = np.stack([embeddings.embed([text])[0] for text in TEXTS])
    assert (together == alone).all()
    two_threads = embeddings.embed(TEXTS, threads=2, layer=embeddings.EARLY_LAYER)
    assert np.abs(two_threads - embeddings.embed(TEXTS, threads=1, layer=embeddings.EARLY_LAYER)).max() < 1e-5
    with pytest.raises(ValueError, match="after layer 3 or 6, not 4"):
        embeddings.embed(TEXTS, layer=4)


@pytest.mark.integration
def test_each_text_runs_at_its_own_length_without_padding() -> None:
    # The packaged tokenizer pads to 128 tokens: a short question would pay for 128.
    runner = embeddings.encoder()
    assert isinstance(runner, embeddings.OnnxMiniLM)
    for text in TEXTS:
        feed = runner._feed(text)
        assert feed["attention_mask"].all()
        assert 2 <= feed["input_ids"].shape[1] <= 256
    assert runner._feed("What is the capital of France?")["input_ids"].shape[1] < 16


@pytest.mark.integration
def test_a_short_text_runs_on_one_thread_and_a_long_one_on_those_it_is_given(
    fresh_encoder: None,
) -> None:
    # A second thread pays only on long texts; on short ones it costs CPU for nothing.
    runner = embeddings.encoder()
    assert isinstance(runner, embeddings.OnnxMiniLM)
    runner.encode(["What is the capital of France?"], batch_size=1, threads=2)
    assert set(runner._sessions) == {("early", 1), ("late", 1)}
    runner.encode(["word " * 100], batch_size=1, threads=2)
    assert set(runner._sessions) == {("early", 1), ("late", 1), ("early", 2), ("late", 2)}


@pytest.mark.integration
def test_a_question_embedded_for_the_router_finishes_its_pass_to_the_same_last_vector() -> None:
    question = "Which planet has the most moons, and when was the last one found?"
    early = embeddings.embed_query(question, layer=embeddings.EARLY_LAYER)
    assert embeddings._partials.get(question) is not None  # the pass is kept open for the last layer
    final = embeddings.embed_query(question)
    assert question not in embeddings._partials
    assert np.abs(early - embeddings.embed([question], layer=embeddings.EARLY_LAYER)[0]).max() < 1e-5
    assert np.abs(final - embeddings.embed([question])[0]).max() < 1e-5
    assert embeddings.embed_query(question, layer=embeddings.EARLY_LAYER) is early  # remembered
    both = embeddings.embed_remembered([question, "another question", question])
    assert (both[0] == final).all()
    assert (both[2] == final).all()


@pytest.mark.integration
def test_a_disk_cache_holding_both_layers_gives_each_layer_its_own_vectors(tmp_path: Path) -> None:
    # Training caches the router's early vectors and the verifier's last ones in one folder; a
    # last-layer lookup that read the early files trained the verifier on signals it never serves.
    from hybrid.routing.embedding import _key, embed_cached

    texts = ["How many points did the Panthers defense surrender?", "What is the capital of France?"]
    # A file from before the early half was quantised: full-precision vectors under the old name.
    keys = np.frombuffer(b"".join(_key(t) for t in texts), dtype=np.uint8).reshape(-1, 16)
    np.savez(tmp_path / "minilm-layer3-0123456789ab.npz", keys=keys, vectors=np.ones((2, 384), np.float32))
    early = embed_cached(texts, tmp_path, layer=embeddings.EARLY_LAYER)
    final = embed_cached(texts, tmp_path)
    again = embed_cached(texts, tmp_path)  # read back from the files alone
    assert np.abs(early - embeddings.embed(texts, layer=embeddings.EARLY_LAYER)).max() < 1e-5
    assert np.abs(final - embeddings.embed(texts)).max() < 1e-5
    assert np.abs(again - final).max() < 1e-6
    assert sorted(p.name.rsplit("-", 1)[0] for p in tmp_path.iterdir()) == [
        "minilm-layer3",
        f"minilm-{embeddings.VECTORS}",
        f"minilm-{embeddings.VECTORS}-layer3",
    ]


@pytest.mark.integration
def test_exported_graphs_are_written_whole_where_asked(tmp_path: Path) -> None:
    target = tmp_path / "minilm"
    assert embeddings.prepare_onnx(target) == target
    assert [p.name for p in tmp_path.iterdir()] == ["minilm"]  # no partial directory left behind
    assert sorted(p.name for p in target.iterdir()) == ["early.onnx", "late.onnx"]
    vectors = embeddings.OnnxMiniLM(target, embeddings.model_path()).encode(TEXTS[:1], 64, 1).final
    assert vectors @ embeddings.embed(TEXTS[:1])[0] == pytest.approx(1.0, abs=1e-5)


@pytest.mark.unit
def test_without_an_onnx_graph_the_embedder_runs_torch_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_encoder: None
) -> None:
    def cannot_export(target: Path | None = None) -> Path:
        raise PermissionError("read-only environment")

    monkeypatch.setattr(embeddings, "onnx_path", lambda: Path("/nonexistent/minilm"))
    monkeypatch.setattr(embeddings, "prepare_onnx", cannot_export)
    with caplog.at_level(logging.WARNING, logger="retrieval.embeddings"):
        runner = embeddings.encoder()
    assert isinstance(runner, embeddings.TorchMiniLM)
    assert runner.vectors == "f32"  # full precision: kept apart from the ONNX vectors on disk
    assert "PermissionError: read-only environment" in caplog.text


@pytest.mark.unit
def test_nothing_to_embed_needs_no_model(monkeypatch: pytest.MonkeyPatch, fresh_encoder: None) -> None:
    monkeypatch.setattr(embeddings, "onnx_path", lambda: pytest.fail("no model for no texts"))
    assert embeddings.embed([]).shape == (0, embeddings.EMBEDDING_DIMENSIONS)


class _CountingEncoder:
    """Vectors from a text's length, recording who began each pass; the prefetch thread's passes
    wait for `gate`."""

    def __init__(self) -> None:
        self.begun: list[tuple[str, str]] = []
        self.gate = threading.Event()
        self.gate.set()
        self.fail = False

    def begin(self, text: str, threads: int) -> embeddings.Partial:
        worker = threading.current_thread().name.startswith("minilm-prefetch")
        if worker:
            self.gate.wait(10)
        self.begun.append((text, "prefetch" if worker else "caller"))
        if self.fail:
            raise RuntimeError("onnx fault")
        early = np.full(embeddings.EMBEDDING_DIMENSIONS, float(len(text)), dtype=np.float32)
        return embeddings.Partial(early, lambda _t: early * 2)


@pytest.fixture
def counting(monkeypatch: pytest.MonkeyPatch) -> Iterator[_CountingEncoder]:
    encoder = _CountingEncoder()
    monkeypatch.setattr(embeddings, "encoder", lambda: encoder)
    for name in ("_remembered", "_partials", "_prefetched"):
        monkeypatch.setattr(embeddings, name, OrderedDict())
    yield encoder
    encoder.gate.set()


def _prefetched(text: str) -> Future[np.ndarray]:
    return embeddings._prefetched[text, embeddings.EARLY_LAYER]


@pytest.mark.unit
def test_a_prefetched_embedding_is_the_one_its_caller_gets(counting: _CountingEncoder) -> None:
    embeddings.prefetch_query("capital of France?", embeddings.EARLY_LAYER)
    embeddings.prefetch_query("capital of France?", embeddings.EARLY_LAYER)  # already under way
    _prefetched("capital of France?").result(10)

    vector = embeddings.embed_query("capital of France?", layer=embeddings.EARLY_LAYER)

    assert vector[0] == len("capital of France?")
    assert counting.begun == [("capital of France?", "prefetch")]  # one pass, not two
    assert not embeddings._prefetched
    embeddings.prefetch_query("capital of France?", embeddings.EARLY_LAYER)  # remembered: nothing to do
    assert not embeddings._prefetched


@pytest.mark.unit
def test_while_one_prefetch_runs_another_is_not_queued_and_its_caller_embeds_at_once(
    counting: _CountingEncoder,
) -> None:
    counting.gate.clear()
    embeddings.prefetch_query("held", embeddings.EARLY_LAYER)  # the one worker waits at the gate
    ends = time.monotonic() + 10
    while not _prefetched("held").running() and time.monotonic() < ends:
        time.sleep(0.001)
    embeddings.prefetch_query("queued", embeddings.EARLY_LAYER)
    assert ("queued", embeddings.EARLY_LAYER) not in embeddings._prefetched  # under load: no queue

    vector = embeddings.embed_query("queued", layer=embeddings.EARLY_LAYER)  # the gate is still shut

    assert vector[0] == len("queued")
    assert counting.begun == [("queued", "caller")]
    counting.gate.set()
    _prefetched("held").result(10)
    assert embeddings.embed_query("held", layer=embeddings.EARLY_LAYER)[0] == len("held")
    assert counting.begun == [("queued", "caller"), ("held", "prefetch")]


@pytest.mark.unit
def test_a_failed_prefetch_is_embedded_again_and_a_lasting_fault_raises(counting: _CountingEncoder) -> None:
    counting.fail = True
    embeddings.prefetch_query("faulty", embeddings.EARLY_LAYER)
    assert isinstance(_prefetched("faulty").exception(10), RuntimeError)

    with pytest.raises(RuntimeError, match="onnx fault"):
        embeddings.embed_query("faulty", layer=embeddings.EARLY_LAYER)
    assert counting.begun == [("faulty", "prefetch"), ("faulty", "caller")]

    counting.fail = False
    assert embeddings.embed_query("faulty", layer=embeddings.EARLY_LAYER)[0] == len("faulty")
