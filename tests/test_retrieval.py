"""Ingestion and retrieval on a real Chroma store with the real MiniLM embedding model."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hybrid import api
from hybrid.settings import resolve_settings
from retrieval import store as store_module
from retrieval.lexical import lexical_index
from retrieval.search import reciprocal_rank_fusion, search
from retrieval.store import StoreBusy, get_collection
from tests.conftest import REPO
from tests.documents import write_pdf
from tests.fakes import FakeModels
from tests.servers import free_port, serving

SAMPLE = REPO / "data" / "knowledge"


@pytest.fixture
def docs(tmp_path: Path) -> Path:
    folder = tmp_path / "docs"
    folder.mkdir()
    return folder


def chunks_by_source(collection: str | None = None) -> dict[str, list[dict]]:
    found = get_collection(resolve_settings(), collection).get(include=["metadatas"])
    grouped: dict[str, list[dict]] = {}
    for meta in found["metadatas"]:
        grouped.setdefault(Path(meta["source"]).name, []).append(meta)
    return grouped


@pytest.mark.integration
def test_every_supported_format_is_read_with_its_metadata(docs: Path) -> None:
    (docs / "guide.md").write_text("# Guide\n\n## Install\n\nRun make run.\n\n## Test\n\nRun make test.")
    (docs / "notes.txt").write_text("Plain notes about llamas.")
    (docs / "page.html").write_text(
        "<html><head><title>Alpacas</title><script>var x = 1;</script></head><body><nav>menu</nav>"
        "<h1>Alpacas</h1><p>Alpacas hum.</p><h2>Food</h2><p>They eat grass.</p></body></html>"
    )
    write_pdf(docs / "report.pdf", ["Vicunas live in the Andes.", "Guanacos are wild."], title="Camelids")
    (docs / "corpus.jsonl").write_text(
        json.dumps({"_id": "d1", "title": "Dromedary", "text": "One hump."})
        + "\n"
        + json.dumps({"_id": "d2", "title": "Bactrian", "text": "Two humps."})
        + "\n"
    )
    (docs / "squad.json").write_text(
        json.dumps(
            {"data": [{"title": "Camel", "paragraphs": [{"context": "Camels store fat.", "qas": []}]}]}
        )
    )

    report = api.ingest([docs])

    assert report.ok, report.failed
    assert report.files == 6
    grouped = chunks_by_source()
    assert {m["section"] for m in grouped["guide.md"]} == {"Install", "Test"}
    assert {m["title"] for m in grouped["guide.md"]} == {"Guide"}
    assert {(m["title"], m["section"]) for m in grouped["page.html"]} == {
        ("Alpacas", "Alpacas"),
        ("Alpacas", "Food"),
    }
    assert sorted(m["page"] for m in grouped["report.pdf"]) == [1, 2]
    assert {m["title"] for m in grouped["report.pdf"]} == {"Camelids"}
    assert sorted(m["doc_id"] for m in grouped["corpus.jsonl"]) == ["d1", "d2"]
    assert [m["doc_id"] for m in grouped["squad.json"]] == ["Camel#0"]
    for metas in grouped.values():
        assert all(len(m["file_hash"]) == 64 and m["modified"] for m in metas)
    html_text = get_collection(resolve_settings()).get(where={"title": "Alpacas"}, include=["documents"])
    assert not any("var x" in text or "menu" in text for text in html_text["documents"])


@pytest.mark.integration
def test_ingesting_twice_adds_nothing_and_says_so() -> None:
    first = api.ingest([SAMPLE])
    assert first.ok
    assert first.chunks_added > first.files

    again = api.ingest([SAMPLE])

    assert (again.chunks_added, again.chunks_unchanged) == (0, first.chunks_added)
    assert again.summary().endswith("nothing new")
    assert get_collection(resolve_settings()).count() == first.chunks_added


@pytest.mark.integration
def test_sync_removes_chunks_of_changed_and_deleted_files(docs: Path) -> None:
    (docs / "keep.md").write_text("# Keep\n\nThis file stays the same.")
    (docs / "change.md").write_text("# Change\n\nThe old wording of this file.")
    (docs / "delete.md").write_text("# Delete\n\nThis file will be deleted.")
    outside = docs.parent / "outside.md"
    outside.write_text("# Outside\n\nNot under the synced folder.")
    api.ingest([docs, outside])

    (docs / "change.md").write_text("# Change\n\nThe new wording of this file.")
    (docs / "delete.md").unlink()
    without_sync = api.ingest([docs])
    assert without_sync.chunks_removed == 0
    report = api.ingest([docs], sync=True)

    assert report.chunks_removed == 2  # the old version of change.md and all of delete.md
    texts = get_collection(resolve_settings()).get(include=["documents"])["documents"]
    assert any("new wording" in t for t in texts)
    assert not any("old wording" in t or "will be deleted" in t for t in texts)
    assert any("Not under the synced folder" in t for t in texts)


@pytest.mark.integration
def test_unreadable_files_are_named_with_reasons_and_the_rest_is_ingested(docs: Path) -> None:
    (docs / "good.md").write_text("# Ports\n\nThe dev server listens on port 2025.")
    (docs / "latin1.txt").write_bytes("caf\xe9".encode("latin-1"))
    (docs / "image.png").write_bytes(b"\x89PNG\r\n")
    (docs / "broken.pdf").write_bytes(b"%PDF-1.4\n1 0 obj << /Type /Catalog garbage")
    (docs / "bad.jsonl").write_text('{"_id": "a", "text": "fine"}\n{not json}\n')
    (docs / "unknown.json").write_text('{"hello": "world"}')

    report = api.ingest([docs, docs / "missing.md"])

    assert report.chunks_added == 1
    reasons = {Path(path).name: reason for path, reason in report.failed.items()}
    assert set(reasons) == {
        "latin1.txt",
        "image.png",
        "broken.pdf",
        "bad.jsonl",
        "unknown.json",
        "missing.md",
    }
    assert "not valid UTF-8" in reasons["latin1.txt"]
    assert "unsupported file type '.png'" in reasons["image.png"]
    assert "PDF" in reasons["broken.pdf"]
    assert reasons["bad.jsonl"].startswith("line 2: invalid JSON")
    assert "unrecognised JSON layout" in reasons["unknown.json"]
    assert reasons["missing.md"] == "no such file or folder"
    assert set(chunks_by_source()) == {"good.md"}  # nothing of a bad file was written


@pytest.mark.integration
def test_a_file_that_fails_half_way_is_rolled_back(docs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    records = [json.dumps({"_id": str(i), "text": f"Record number {i} about camels."}) for i in range(600)]
    (docs / "big.jsonl").write_text("\n".join(records))
    (docs / "small.md").write_text("# Small\n\nA small file.")
    monkeypatch.setenv("HYBRID_EMBED_BATCH_SIZE", "50")  # 200 chunks per write: 3 writes for big.jsonl

    from retrieval import ingest as ingest_module

    real_store = ingest_module._store_chunks
    calls = {"n": 0}

    def flaky_upsert(store, chunks, settings, progress):
        original = store.upsert

        def upsert(**kwargs):
            calls["n"] += 1
            if calls["n"] == 3:
                raise OSError("disk full")
            return original(**kwargs)

        store.upsert = upsert
        try:
            return real_store(store, chunks, settings, progress)
        finally:
            store.upsert = original

    monkeypatch.setattr(ingest_module, "_store_chunks", flaky_upsert)
    report = api.ingest([docs])

    assert "disk full" in report.failed[str(docs / "big.jsonl")]
    assert set(chunks_by_source()) == {"small.md"}


@pytest.mark.integration
def test_collections_use_our_embedding_function_never_chromas_default() -> None:
    api.ingest([SAMPLE])
    collection = get_collection(resolve_settings())
    assert collection.configuration_json["embedding_function"]["name"] == "hybrid-minilm"
    store_module.reset()
    code = (
        "import chromadb, sys; from chromadb.config import Settings; "
        "c = chromadb.PersistentClient(sys.argv[1], Settings(anonymized_telemetry=False)); "
        "print(c.get_collection('knowledge').configuration_json['embedding_function']['name'])"
    )
    result = subprocess.run(
        [sys.executable, "-c", code, str(resolve_settings().chroma_path)],
        capture_output=True,
        text=True,
        check=False,
    )
    # Another process finds our function's name stored, so it never falls back to Chroma's default.
    assert result.stdout.strip() == "hybrid-minilm", result.stderr


@pytest.mark.integration
def test_a_second_process_on_the_embedded_store_fails_fast_and_points_to_server_mode() -> None:
    settings = resolve_settings()
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from retrieval.store import client_for; "
            "from hybrid.settings import resolve_settings; "
            "client_for(resolve_settings()); print('ready', flush=True); sys.stdin.read()",
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=dict(os.environ),
    )
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline().strip() == "ready"
        with pytest.raises(StoreBusy, match=rf"in use by pid {holder.pid} .*HYBRID_CHROMA_URL"):
            store_module.client_for(settings)
    finally:
        holder.communicate("", timeout=30)
    store_module.client_for(settings)  # free again once the holder has exited


@pytest.mark.integration
def test_the_three_ranking_modes_return_scored_hits_with_sources() -> None:
    api.ingest([SAMPLE])
    settings = resolve_settings()
    question = "How do I resolve a pending review case?"
    for mode in ("dense", "bm25", "hybrid"):
        hits = search(settings, question, 5, mode=mode)
        assert hits, mode
        assert Path(hits[0]["source"]).name == "human-review.md", mode
        assert [h["score"] for h in hits] == sorted((h["score"] for h in hits), reverse=True)
        assert all(0 < h["similarity"] <= 1 for h in hits)
        assert all(set(h["ranks"]) <= {"dense", "bm25"} and h["ranks"] for h in hits)
    fused = search(settings, question, 5, mode="hybrid")
    assert fused[0]["ranks"].keys() == {"dense", "bm25"}


@pytest.mark.unit
def test_reciprocal_rank_fusion_rewards_agreement() -> None:
    fused = reciprocal_rank_fusion({"dense": ["a", "b", "c"], "bm25": ["b", "d"]}, k=60)
    assert [item for item, _ in fused] == ["b", "a", "d", "c"]
    assert fused[0][1] == pytest.approx(1 / 62 + 1 / 61)


@pytest.mark.integration
def test_lexical_coverage_separates_knowledge_questions_from_general_ones() -> None:
    api.ingest([SAMPLE])
    index = lexical_index(resolve_settings())
    assert index.coverage("How does the verifier penalise ungrounded answers?") >= 0.5
    assert index.coverage("What is the capital of France?") < 0.5


@pytest.mark.integration
def test_the_lexical_index_follows_the_collection_across_processes(docs: Path) -> None:
    (docs / "a.md").write_text("# A\n\nZebras are striped.")
    api.ingest([docs])
    assert lexical_index(resolve_settings()).search("zebras", 3)
    api.reset()  # a new process: the index is read from disk, not rebuilt
    assert lexical_index(resolve_settings()).search("zebras", 3)

    (docs / "b.md").write_text("# B\n\nOkapis are shy.")
    api.ingest([docs])
    assert lexical_index(resolve_settings()).search("okapis", 3)


@pytest.mark.integration
def test_the_graph_retrieves_for_knowledge_questions_only(fakes: FakeModels) -> None:
    api.ingest([SAMPLE])
    fakes.set("small", lambda messages: "Port 2025." if "2025" in messages[-1].text else "Paris.")

    kb = api.ask("Which port does hybrid dev serve the graph on?")
    assert kb.route["needs_kb"]
    assert kb.retrieval is not None
    assert kb.retrieval["mode"] == "hybrid"
    assert kb.retrieval["hits"]
    assert kb.retrieval["confidence"] == max(h["similarity"] for h in kb.retrieval["hits"])
    assert any(Path(h["source"]).name == "interfaces.md" for h in kb.retrieval["hits"])
    assert kb.answer == "Port 2025."
    assert "source(s), best" in kb.explanation

    general = api.ask("What is the capital of France?")
    assert not general.route["needs_kb"]
    assert general.retrieval is None


@pytest.mark.integration
@pytest.mark.parametrize("mode", ["never", "always"])
def test_retrieval_is_a_per_run_setting(fakes: FakeModels, mode: str) -> None:
    api.ingest([SAMPLE])
    fakes.set("small", "Paris is the capital of France.")
    answer = api.ask("What is the capital of France?", retrieval=mode, retrieval_mode="bm25")
    assert answer.route["needs_kb"] is (mode == "always")
    if mode == "always":
        assert answer.retrieval is not None
        assert answer.retrieval["mode"] == "bm25"


@pytest.mark.integration
def test_a_busy_store_degrades_to_answering_without_retrieval(fakes: FakeModels, monkeypatch) -> None:
    api.ingest([SAMPLE])
    api.reset()

    def busy(settings):
        raise StoreBusy("the knowledge base is in use by pid 1")

    monkeypatch.setattr(store_module, "client_for", busy)
    fakes.set("small", "Port 2025.")
    answer = api.ask("Which port does hybrid dev serve the graph on?")
    assert answer.status == "answered"
    assert any("knowledge base unavailable: StoreBusy" in reason for reason in answer.route["reasons"])


@pytest.mark.e2e
def test_server_mode_ingests_and_retrieves_through_a_real_chroma_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    command = [str(Path(sys.executable).parent / "chroma"), "run", "--path", str(tmp_path / "server")]
    command += ["--host", "127.0.0.1", "--port", str(port)]
    with serving(command, f"http://127.0.0.1:{port}/api/v2/heartbeat", tmp_path / "chroma.log"):
        monkeypatch.setenv("HYBRID_CHROMA_URL", f"http://127.0.0.1:{port}")
        report = api.ingest([SAMPLE])
        assert report.ok
        assert report.chunks_added > 0
        assert api.ingest([SAMPLE]).chunks_added == 0

        hits = api.search("How do I resolve a pending review case?", k=3)
        assert Path(hits[0]["source"]).name == "human-review.md"
        assert not (resolve_settings().chroma_path).exists()  # nothing went to the embedded store
