"""Ingestion and retrieval on a real Chroma store with the real MiniLM embedding model."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid import api
from hybrid.settings import resolve_settings
from retrieval.store import get_collection, search, term_stats
from tests.conftest import REPO
from tests.fakes import FakeModels

SAMPLE = REPO / "data" / "knowledge"


def test_sample_knowledge_is_ingested_once(tmp_path: Path) -> None:
    first = api.ingest([SAMPLE])
    assert first.ok
    assert first.files == len(list(SAMPLE.glob("*.md")))
    assert first.chunks_added > first.files

    again = api.ingest([SAMPLE])
    assert again.chunks_added == 0
    assert again.chunks_unchanged == first.chunks_added
    assert get_collection(resolve_settings()).count() == first.chunks_added


def test_unreadable_files_are_reported_and_the_rest_ingested(tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "good.md").write_text("# Ports\n\nThe dev server listens on port 2025.")
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")

    report = api.ingest([docs, docs / "missing.md"])

    assert report.chunks_added == 1
    assert set(report.failed) == {str(docs / n) for n in ("latin1.txt", "image.png", "missing.md")}
    assert "not valid UTF-8" in report.failed[str(docs / "latin1.txt")]
    assert "unsupported file type '.png'" in report.failed[str(docs / "image.png")]
    assert not report.ok


def test_search_ranks_the_relevant_passage_first_with_scores() -> None:
    api.ingest([SAMPLE])
    hits = search(resolve_settings(), "How do I resolve a pending review case?", k=3)
    assert hits[0]["source"].endswith("human-review.md")
    assert hits[0]["metadata"]["title"] == "Human review"
    assert 0.3 < hits[0]["score"] <= 1.0
    assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)


def test_term_coverage_separates_knowledge_questions_from_general_ones() -> None:
    api.ingest([SAMPLE])
    stats = term_stats(resolve_settings())
    assert stats.coverage("How does the verifier penalise ungrounded answers?") >= 0.5
    assert stats.coverage("What is the capital of France?") < 0.5


def test_the_graph_retrieves_for_knowledge_questions_only(fakes: FakeModels) -> None:
    api.ingest([SAMPLE])
    fakes.set("small", lambda messages: "Port 2025." if "2025" in messages[0].text else "Paris.")
    fakes.set("large", "unused")

    kb = api.ask("Which port does hybrid dev serve the graph on?")
    assert kb.route["needs_kb"]
    assert kb.retrieval is not None
    assert kb.retrieval["hits"]
    assert kb.retrieval["confidence"] == kb.retrieval["hits"][0]["score"]
    assert any(h["source"].endswith("interfaces.md") for h in kb.retrieval["hits"])
    assert kb.answer == "Port 2025."
    assert "source(s), best" in kb.explanation

    general = api.ask("What is the capital of France?")
    assert not general.route["needs_kb"]
    assert general.retrieval is None


@pytest.mark.parametrize("mode", ["never", "always"])
def test_retrieval_mode_is_a_per_run_setting(fakes: FakeModels, mode: str) -> None:
    api.ingest([SAMPLE])
    fakes.set("small", "Paris is the capital of France.")
    answer = api.ask("What is the capital of France?", retrieval=mode)
    assert answer.route["needs_kb"] is (mode == "always")
