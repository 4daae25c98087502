"""`hybrid eval retrieval`: retrieval quality and speed on a BEIR dataset, beside MTEB's figure.

The corpus goes through the same ingestion path users use (`corpus.jsonl` is a supported
format), into a throw-away data directory; then every test query is run in each ranking mode.
Metrics follow BEIR/MTEB (pytrec_eval definitions): nDCG@10 with graded relevance and log2
discount, Recall@100 as the share of relevant documents retrieved.
"""

from __future__ import annotations

import csv
import json
import math
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hybrid.evals.stats import percentile
from hybrid.settings import RankingMode, Settings

MODES: tuple[RankingMode, ...] = ("dense", "bm25", "hybrid")
DEPTH = 100


def ndcg_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 10) -> float:
    """Normalised discounted cumulative gain of a ranking at `k`."""
    dcg = sum(relevant.get(doc, 0) / math.log2(rank + 2) for rank, doc in enumerate(ranked[:k]))
    ideal = sorted((g for g in relevant.values() if g > 0), reverse=True)[:k]
    idcg = sum(g / math.log2(rank + 2) for rank, g in enumerate(ideal))
    return dcg / idcg if idcg else 0.0


def recall_at(ranked: Sequence[str], relevant: Mapping[str, int], k: int = 100) -> float:
    """Share of the relevant documents found in the first `k`."""
    wanted = {doc for doc, grade in relevant.items() if grade > 0}
    return len(wanted & set(ranked[:k])) / len(wanted) if wanted else 0.0


def load_beir(folder: Path, split: str = "test") -> tuple[dict[str, str], dict[str, dict[str, int]]]:
    """Queries (id → text) that have judgements in `split`, and the judgements (qrels)."""
    qrels: dict[str, dict[str, int]] = {}
    with (folder / "qrels" / f"{split}.tsv").open() as handle:
        for row in csv.DictReader(handle, delimiter="\t"):
            qrels.setdefault(row["query-id"], {})[row["corpus-id"]] = int(row["score"])
    queries = {}
    with (folder / "queries.jsonl").open() as handle:
        for line in handle:
            record = json.loads(line)
            if record["_id"] in qrels:
                queries[record["_id"]] = record["text"]
    return queries, qrels


def mteb_reference(folder: Path) -> dict[str, float] | None:
    """MTEB's published nDCG@10 and Recall@100 for all-MiniLM-L6-v2, if the file is there."""
    files = sorted(folder.glob("*.json")) if folder.is_dir() else []
    if not files:
        return None
    scores = json.loads(files[0].read_text())["scores"]["test"][0]
    return {"ndcg@10": scores["ndcg_at_10"], "recall@100": scores["recall_at_100"]}


def _doc_ranking(hits: Sequence[Mapping[str, Any]]) -> list[str]:
    """Chunk hits to corpus document ids, best chunk first, each document once."""
    seen: dict[str, None] = {}
    for hit in hits:
        seen.setdefault(str(hit["metadata"].get("doc_id", hit["id"])), None)
    return list(seen)


def evaluate_beir(
    folder: Path,
    *,
    reference: Path | None = None,
    max_queries: int | None = None,
    data_dir: Path | None = None,
    log: Callable[[str], None] = lambda _message: None,
) -> dict[str, Any]:
    """Ingest a BEIR corpus, run its test queries in every mode, and return the figures."""
    from retrieval.embeddings import embed
    from retrieval.ingest import ingest
    from retrieval.search import search
    from retrieval.store import reset

    queries, qrels = load_beir(folder)
    if max_queries:
        queries = dict(list(queries.items())[:max_queries])
    with tempfile.TemporaryDirectory(prefix="hybrid-eval-") as scratch:
        settings = Settings(
            data_dir=data_dir or Path(scratch),
            collection="beir-eval",
            fusion_candidates=DEPTH,
            retrieval_k=DEPTH,
        )
        embed(["warm-up"])  # model load is not ingestion throughput
        log(f"ingesting {folder / 'corpus.jsonl'} ...")
        report = ingest([folder / "corpus.jsonl"], settings)
        if report.failed:
            raise RuntimeError(f"ingestion failed: {report.failed}")
        log(f"  {report.chunks_added} chunks in {report.seconds:.1f}s")

        results: dict[str, Any] = {}
        latencies: list[float] = []
        for mode in MODES:
            search(settings, "warm-up", DEPTH, mode=mode)  # load indexes first
            ndcg, recall = [], []
            for query_id, text in queries.items():
                began = time.perf_counter()
                hits = search(settings, text, DEPTH, mode=mode)
                if mode == "hybrid":
                    latencies.append((time.perf_counter() - began) * 1000)
                ranking = _doc_ranking(hits)
                ndcg.append(ndcg_at(ranking, qrels[query_id], 10))
                recall.append(recall_at(ranking, qrels[query_id], DEPTH))
            results[mode] = {
                "ndcg@10": round(statistics.fmean(ndcg), 5),
                "recall@100": round(statistics.fmean(recall), 5),
            }
            figures = results[mode]
            log(f"  {mode}: nDCG@10 {figures['ndcg@10']:.5f}, Recall@100 {figures['recall@100']:.5f}")
        reset()
    return {
        **results,
        "mteb_reference": mteb_reference(reference) if reference else None,
        "queries": len(queries),
        "chunks": report.chunks_added,
        "ingest_seconds": round(report.seconds, 2),
        "ingest_chunks_per_s": round(report.chunks_per_second, 1),
        "query_ms_p50": round(percentile(latencies, 50), 2),
        "query_ms_p95": round(percentile(latencies, 95), 2),
    }


def format_table(figures: Mapping[str, Any]) -> str:
    """The figures as a small table for people."""
    reference = figures.get("mteb_reference") or {}
    lines = [f"{'':<22}{'nDCG@10':>10}{'Recall@100':>12}"]
    for mode in MODES:
        lines.append(f"{mode:<22}{figures[mode]['ndcg@10']:>10.5f}{figures[mode]['recall@100']:>12.5f}")
    if reference:
        lines.append(
            f"{'MTEB all-MiniLM-L6-v2':<22}{reference['ndcg@10']:>10.5f}{reference['recall@100']:>12.5f}"
        )
    lines.append(
        f"\n{figures['queries']} queries over {figures['chunks']} chunks; ingestion "
        f"{figures['ingest_chunks_per_s']:.1f} chunks/s ({figures['ingest_seconds']:.1f}s); hybrid query "
        f"p50 {figures['query_ms_p50']:.1f} ms, p95 {figures['query_ms_p95']:.1f} ms"
    )
    return "\n".join(lines)
