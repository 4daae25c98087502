"""MiniLM in ONNX Runtime gives the vectors sentence-transformers gives in torch, and the embedder
falls back to torch, saying why, when no ONNX graph can be made."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
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


@pytest.mark.integration
def test_onnx_vectors_equal_the_sentence_transformers_vectors() -> None:
    runner = embeddings.encoder()
    assert isinstance(runner, embeddings.OnnxMiniLM)
    expected = embeddings.TorchMiniLM().encode(TEXTS, batch_size=64, threads=1).final
    for batch_size in (1, 2, 64):  # padding inside a batch changes nothing
        vectors = runner.encode(TEXTS, batch_size=batch_size, threads=1).final
        assert vectors.shape == (len(TEXTS), embeddings.EMBEDDING_DIMENSIONS)
        assert np.abs(vectors - expected).max() < 1e-5
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    two_threads = runner.encode(TEXTS, batch_size=64, threads=2).final
    assert np.abs(two_threads - expected).max() < 1e-5
    as_questions = np.stack([embeddings.embed([text])[0] for text in TEXTS])  # `query_threads()`
    assert np.abs(as_questions - expected).max() < 1e-5  # the router's reference was embedded in bulk


@pytest.mark.integration
def test_the_routers_early_vectors_equal_torchs_hidden_states_after_that_layer() -> None:
    runner = embeddings.encoder()
    assert isinstance(runner, embeddings.OnnxMiniLM)
    expected = embeddings.TorchMiniLM().encode(TEXTS, batch_size=64, threads=1, final=False).early
    only_early = runner.encode(TEXTS, batch_size=2, threads=1, final=False)
    assert only_early.final is None
    assert np.abs(only_early.early - expected).max() < 1e-5
    assert np.abs(embeddings.embed(TEXTS, layer=embeddings.EARLY_LAYER) - expected).max() < 1e-5
    last = embeddings.embed(TEXTS)
    assert np.einsum("ij,ij->i", expected, last).max() < 0.99  # another vector, not the last layer's
    with pytest.raises(ValueError, match="after layer 3 or 6, not 4"):
        embeddings.embed(TEXTS, layer=4)


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
    from hybrid.routing.embedding import embed_cached

    texts = ["How many points did the Panthers defense surrender?", "What is the capital of France?"]
    early = embed_cached(texts, tmp_path, layer=embeddings.EARLY_LAYER)
    final = embed_cached(texts, tmp_path)
    again = embed_cached(texts, tmp_path)  # read back from the files alone
    assert np.abs(early - embeddings.embed(texts, layer=embeddings.EARLY_LAYER)).max() < 1e-5
    assert np.abs(final - embeddings.embed(texts)).max() < 1e-5
    assert np.abs(again - final).max() < 1e-6


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
    assert "PermissionError: read-only environment" in caplog.text


@pytest.mark.unit
def test_nothing_to_embed_needs_no_model(monkeypatch: pytest.MonkeyPatch, fresh_encoder: None) -> None:
    monkeypatch.setattr(embeddings, "onnx_path", lambda: pytest.fail("no model for no texts"))
    assert embeddings.embed([]).shape == (0, embeddings.EMBEDDING_DIMENSIONS)
