"""The retrieval benchmark: metric definitions, and the command on a tiny BEIR-format dataset."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
from click.testing import CliRunner

from hybrid.cli import cli
from hybrid.evals.retrieval import ndcg_at, recall_at
from tests.documents import write_beir


@pytest.mark.unit
def test_ndcg_follows_the_trec_definition() -> None:
    relevant = {"a": 1, "b": 2}
    assert ndcg_at(["b", "a", "x"], relevant) == pytest.approx(1.0)
    dcg = 1 / math.log2(3) + 2 / math.log2(4)
    idcg = 2 / math.log2(2) + 1 / math.log2(3)
    assert ndcg_at(["x", "a", "b"], relevant) == pytest.approx(dcg / idcg)
    assert ndcg_at(["x"] * 10 + ["a"], relevant) == 0.0  # beyond the cut-off
    assert ndcg_at(["a"], {}) == 0.0


@pytest.mark.unit
def test_recall_counts_relevant_documents_found() -> None:
    assert recall_at(["a", "x", "b"], {"a": 1, "b": 1, "c": 1}) == pytest.approx(2 / 3)
    assert recall_at(["a"], {"a": 0}) == 0.0


@pytest.mark.integration
def test_eval_retrieval_prints_every_figure_as_json(tmp_path: Path) -> None:
    corpus = {
        "d1": ("Llamas", "Llamas are domesticated South American camelids used as pack animals."),
        "d2": ("Photosynthesis", "Plants convert light energy into chemical energy in chloroplasts."),
        "d3": ("Volcanoes", "Magma rises through the crust and erupts as lava."),
        "d4": ("Tides", "The gravitational pull of the moon causes ocean tides."),
    }
    queries = {"q1": "Which animals carry packs in the Andes?", "q2": "How do plants use sunlight?"}
    dataset = write_beir(tmp_path / "tiny", corpus, queries, {"q1": {"d1": 1}, "q2": {"d2": 1}})
    (tmp_path / "mteb-reference").mkdir()
    (tmp_path / "mteb-reference" / "ref.json").write_text(
        json.dumps({"scores": {"test": [{"ndcg_at_10": 0.5, "recall_at_100": 0.9}]}})
    )

    result = CliRunner().invoke(cli, ["eval", "retrieval", "--beir", str(dataset), "--json"])

    assert result.exit_code == 0, result.output
    figures = json.loads(result.stdout)
    for mode in ("dense", "bm25", "hybrid"):
        assert figures[mode] == {"ndcg@10": 1.0, "recall@100": 1.0}
    assert figures["mteb_reference"] == {"ndcg@10": 0.5, "recall@100": 0.9}
    assert figures["chunks"] == 4
    assert figures["ingest_chunks_per_s"] > 0
    assert 0 < figures["query_ms_p50"] <= figures["query_ms_p95"]
