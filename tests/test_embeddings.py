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


@pytest.mark.e2e
def test_onnx_vectors_equal_the_sentence_transformers_vectors() -> None:
    runner = embeddings.encoder()
    assert isinstance(runner, embeddings.OnnxMiniLM)
    expected = embeddings.TorchMiniLM().encode(TEXTS, batch_size=64, threads=1)
    for batch_size in (1, 2, 64):  # padding inside a batch changes nothing
        vectors = runner.encode(TEXTS, batch_size=batch_size, threads=1)
        assert vectors.shape == (len(TEXTS), embeddings.EMBEDDING_DIMENSIONS)
        assert np.abs(vectors - expected).max() < 1e-5
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    two_threads = runner.encode(TEXTS, batch_size=64, threads=2)
    assert np.abs(two_threads - expected).max() < 1e-5
    as_questions = np.stack([embeddings.embed([text])[0] for text in TEXTS])  # `query_threads()`
    assert np.abs(as_questions - expected).max() < 1e-5  # the router's reference was embedded in bulk


@pytest.mark.e2e
def test_an_exported_graph_is_written_whole_where_asked(tmp_path: Path) -> None:
    target = tmp_path / "minilm.onnx"
    assert embeddings.prepare_onnx(target) == target
    assert [p.name for p in tmp_path.iterdir()] == ["minilm.onnx"]  # no partial file left behind
    vectors = embeddings.OnnxMiniLM(target, embeddings.model_path()).encode(TEXTS[:1], 64, 1)
    assert vectors @ embeddings.embed(TEXTS[:1])[0] == pytest.approx(1.0, abs=1e-5)


def test_without_an_onnx_graph_the_embedder_runs_torch_and_says_why(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture, fresh_encoder: None
) -> None:
    def cannot_export(target: Path | None = None) -> Path:
        raise PermissionError("read-only environment")

    monkeypatch.setattr(embeddings, "onnx_path", lambda: Path("/nonexistent/minilm.onnx"))
    monkeypatch.setattr(embeddings, "prepare_onnx", cannot_export)
    with caplog.at_level(logging.WARNING, logger="retrieval.embeddings"):
        runner = embeddings.encoder()
    assert isinstance(runner, embeddings.TorchMiniLM)
    assert "PermissionError: read-only environment" in caplog.text


def test_nothing_to_embed_needs_no_model(monkeypatch: pytest.MonkeyPatch, fresh_encoder: None) -> None:
    monkeypatch.setattr(embeddings, "onnx_path", lambda: pytest.fail("no model for no texts"))
    assert embeddings.embed([]).shape == (0, embeddings.EMBEDDING_DIMENSIONS)
