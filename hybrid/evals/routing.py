"""`hybrid eval routing`: the router on RouteLLM's own data, beside random, oracle and RouteLLM.

Four benchmarks, each a seeded 5-fold cross-validation in which every query is scored by the
fold model that never saw it (and never saw its duplicates), then scored once with RouteLLM's
metrics over all queries:

- `mmlu_random_split`: MMLU, folds grouped by prompt text (105 prompts appear twice);
- `mmlu_unseen_subjects`: MMLU, whole subjects held out (folds of subjects balanced by size);
- `gsm8k_query`: GSM8K, the question alone decides;
- `gsm8k_cascade`: GSM8K, Mixtral always answers and a verifier reading the question and
  Mixtral's response decides whether to escalate to GPT-4 (GPT-4's response and the gold answer
  are never read).

Every model is the product's `RouterModel`, trained by the product's code; embeddings come from
`retrieval.embeddings.embed` (kept in a cache folder between runs).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.evals.stats import percentile
from hybrid.routing.data import Benchmark, load_gsm8k, load_mmlu
from hybrid.routing.embedding import embed_cached
from hybrid.routing.features import RESPONSE_FEATURE_NAMES, response_check_features
from hybrid.routing.metrics import (
    RouterMetrics,
    mean_metrics,
    oracle_curve,
    oracle_metrics,
    quality_curve,
    random_metrics,
    router_metrics,
)
from hybrid.routing.model import Example, RouterModel, TrainConfig
from hybrid.routing.training import balanced_group_folds, cross_validated_need_large, grouped_folds

BENCHMARKS = ("mmlu_random_split", "mmlu_unseen_subjects", "gsm8k_query", "gsm8k_cascade")
FOLDS = 5

# RouteLLM paper figures (arXiv 2406.18665), transcribed second-hand: approximate; None: not given.
PUBLISHED: dict[str, dict[str, float | None]] = {
    "mmlu_random_split": {"apgr": 0.60, "cpt50": 0.35, "cpt80": None},
    "mmlu_unseen_subjects": {"apgr": 0.60, "cpt50": 0.35, "cpt80": None},
    "gsm8k_query": {"apgr": None, "cpt50": 0.336, "cpt80": None},
    "gsm8k_cascade": {"apgr": None, "cpt50": 0.336, "cpt80": None},
}
TARGETS: dict[str, dict[str, float]] = {
    "mmlu_random_split": {"apgr": 0.70},
    "mmlu_unseen_subjects": {"apgr": 0.65},
    "gsm8k_query": {"apgr": 0.65},
    "gsm8k_cascade": {"apgr": 0.85, "cpt50_max": 0.20},
}
# The recipe per benchmark. MMLU: the research's stacked router. GSM8K (1,000 training rows per
# fold, one topic): level-2 logistic regression, since boosting on so few rows scored lower in
# development (docs/benchmarks.md). Cascade: the response checks are the signal; the question
# embedding added nothing in the research.
CONFIGS: dict[str, TrainConfig] = {
    "mmlu_random_split": TrainConfig(level2="hgb", holdout="text"),
    "mmlu_unseen_subjects": TrainConfig(level2="hgb", holdout="group"),
    "gsm8k_query": TrainConfig(level2="lr"),
    "gsm8k_cascade": TrainConfig(use_embedding=False, level2="lr", extra_features=RESPONSE_FEATURE_NAMES),
}


def benchmark_examples(name: str, bench: Benchmark) -> list[Example]:
    """A benchmark's queries as labelled examples (the cascade's carry Mixtral's response checks)."""
    examples = []
    for i, prompt in enumerate(bench.prompts):
        extra: dict[str, float] = {}
        if name == "gsm8k_cascade":
            assert bench.weak_responses is not None
            vector = response_check_features(prompt, bench.weak_responses[i])
            extra = dict(zip(RESPONSE_FEATURE_NAMES, map(float, vector), strict=True))
        group = None if bench.groups is None else str(bench.groups[i])
        examples.append(
            Example(prompt, small_correct=bool(bench.weak[i]), large_correct=bool(bench.strong[i]),
                    group=group, extra=extra)
        )  # fmt: skip
    return examples


def benchmark_folds(name: str, bench: Benchmark, seed: int) -> np.ndarray:
    """The outer folds: by subject for unseen subjects, else random with duplicate texts together."""
    if name == "mmlu_unseen_subjects":
        assert bench.groups is not None
        return balanced_group_folds(bench.groups, FOLDS, seed)
    return grouped_folds(np.unique(bench.prompts, return_inverse=True)[1], FOLDS, seed)


def _sample(bench: Benchmark, max_items: int | None) -> Benchmark:
    if not max_items or max_items >= len(bench):
        return bench
    return bench.subset(np.sort(np.random.default_rng(0).choice(len(bench), max_items, replace=False)))


@dataclass(frozen=True)
class BenchmarkResult:
    """One benchmark's figures: ours (mean over seeds), random, oracle, published, and the curves."""

    ours: RouterMetrics
    per_seed: list[RouterMetrics]
    random: RouterMetrics
    oracle: RouterMetrics
    items: int
    seconds: float
    curve: np.ndarray
    """Seed 0's (large-model share, quality) points."""
    oracle_points: np.ndarray
    weak_accuracy: float
    strong_accuracy: float


def run_benchmark(
    name: str,
    bench: Benchmark,
    *,
    seeds: int,
    cache_dir: Path | None,
    config: TrainConfig | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> BenchmarkResult:
    """Cross-validate the router on one benchmark for `seeds` fold seeds."""
    began = time.perf_counter()
    config = config or CONFIGS[name]
    examples = benchmark_examples(name, bench)
    embeddings = (
        embed_cached([e.text for e in examples], cache_dir, layer=config.embedding_layer)
        if config.use_embedding
        else None
    )
    rows, curve = [], None
    for seed in range(seeds):
        score = cross_validated_need_large(
            examples, embeddings, replace(config, seed=seed), benchmark_folds(name, bench, seed)
        )
        rows.append(router_metrics(score, bench.weak, bench.strong))
        if curve is None:
            curve = quality_curve(score, bench.weak, bench.strong)
        log(f"  {name} seed {seed}: APGR {rows[-1].apgr:.3f}, CPT50 {rows[-1].cpt50:.1%}")
    return BenchmarkResult(
        ours=mean_metrics(rows),
        per_seed=rows,
        random=random_metrics(bench.weak, bench.strong),
        oracle=oracle_metrics(bench.weak, bench.strong),
        items=len(bench),
        seconds=time.perf_counter() - began,
        curve=curve,  # type: ignore[arg-type]
        oracle_points=oracle_curve(bench.weak, bench.strong),
        weak_accuracy=float(np.mean(bench.weak)),
        strong_accuracy=float(np.mean(bench.strong)),
    )


def decision_latency(
    model: RouterModel, texts: Sequence[str], embeddings: np.ndarray, warmup: int = 20
) -> dict[str, float]:
    """Milliseconds per `model.score` call (embedding excluded), after `warmup` calls, and per
    decision including the question's MiniLM embedding (on 100 of the texts), as a served question
    is embedded (`query_threads()`)."""
    from threadpoolctl import threadpool_limits

    times = []
    with threadpool_limits(1):  # numpy on one thread, as `hybrid serve` runs it
        for i in range(min(warmup, len(texts))):
            model.score(texts[i] + " (warm-up)", embeddings[i])
        for text, vector in zip(texts, embeddings, strict=True):
            began = time.perf_counter()
            model.score(text, vector)
            times.append((time.perf_counter() - began) * 1000)
    with_embedding = []
    with threadpool_limits(1):
        from retrieval.embeddings import embed

        for text in texts[:100]:  # MMLU prompts with their options: longer than most questions
            began = time.perf_counter()
            model.score(text, embed([text], layer=model.embedding_layer)[0])
            with_embedding.append((time.perf_counter() - began) * 1000)
    return {**_percentiles(times), "queries": len(times), "with_embedding": _percentiles(with_embedding)}


def _percentiles(times: Sequence[float]) -> dict[str, float]:
    return {"p50": round(percentile(times, 50), 3), "p95": round(percentile(times, 95), 3)}


def evaluate_routing(
    root: Path,
    *,
    seeds: int = 1,
    max_items: int | None = None,
    cache_dir: Path | None = None,
    benchmarks: Sequence[str] = BENCHMARKS,
    router: Path | None = None,
    plot_dir: Path | None = None,
    log: Callable[[str], None] = lambda _m: None,
) -> dict[str, Any]:
    """Run the benchmarks; figures per benchmark, plus the decision latency of `router` if given."""
    data: dict[str, Benchmark] = {}
    results: dict[str, BenchmarkResult] = {}
    for name in benchmarks:
        source = "mmlu" if name.startswith("mmlu") else "gsm8k"
        if source not in data:
            data[source] = _sample(load_mmlu(root) if source == "mmlu" else load_gsm8k(root), max_items)
        log(f"{name}: {len(data[source])} queries, {seeds} seed(s) of {FOLDS}-fold CV ...")
        results[name] = run_benchmark(name, data[source], seeds=seeds, cache_dir=cache_dir, log=log)
    report: dict[str, Any] = {name: _figures(name, result) for name, result in results.items()}
    if router is not None and (Path(router) / "router.json").exists():
        model = RouterModel.load(router)
        bench = data.get("mmlu") or _sample(load_mmlu(root), max_items)
        pick = np.random.default_rng(1).choice(len(bench), min(500, len(bench)), replace=False)
        texts = [bench.prompts[i] for i in pick]
        report["decision_latency_ms"] = {
            "router": str(router),
            **decision_latency(model, texts, embed_cached(texts, cache_dir, layer=model.embedding_layer)),
        }
    if plot_dir is not None:
        report["plots"] = [str(p) for p in plot_curves(results, Path(plot_dir))]
    return report


def _figures(name: str, result: BenchmarkResult) -> dict[str, Any]:
    def three(m: RouterMetrics) -> dict[str, float]:
        return {k: v for k, v in m.as_dict().items() if k != "cpt20"}

    return {
        "ours": three(result.ours),
        "random": three(result.random),
        "oracle": three(result.oracle),
        "routellm_published": PUBLISHED[name],
        "target": TARGETS[name],
        "per_seed_apgr": [round(r.apgr, 4) for r in result.per_seed],
        "seeds": len(result.per_seed),
        "items": result.items,
        "weak_accuracy": round(result.weak_accuracy, 4),
        "strong_accuracy": round(result.strong_accuracy, 4),
        "config": {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(CONFIGS[name]).items()
                   if k != "extra_features"},
        "seconds": round(result.seconds, 1),
    }  # fmt: skip


def plot_curves(results: Mapping[str, BenchmarkResult], folder: Path) -> list[Path]:
    """One PNG per benchmark: quality against large-model share, ours beside random and oracle."""
    import matplotlib

    matplotlib.use("Agg")  # files only, no display
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    written = []
    for name, result in results.items():
        figure, axes = plt.subplots(figsize=(6, 4.2), dpi=110)
        axes.plot(result.curve[:, 0], result.curve[:, 1], "o-", label=f"ours (APGR {result.ours.apgr:.3f})")
        axes.plot([0, 1], [result.weak_accuracy, result.strong_accuracy], "--", color="grey",
                  label="random (APGR 0.5)")  # fmt: skip
        axes.plot(result.oracle_points[:, 0], result.oracle_points[:, 1], ":", color="black",
                  label=f"oracle (APGR {result.oracle.apgr:.3f})")  # fmt: skip
        axes.axhline(result.weak_accuracy, color="tab:red", linewidth=0.6)
        axes.axhline(result.strong_accuracy, color="tab:green", linewidth=0.6)
        axes.set_xlabel("share of queries sent to the large model (GPT-4)")
        axes.set_ylabel("quality (accuracy)")
        axes.set_title(f"{name}: {result.items} queries, {len(result.per_seed)} seed(s)")
        axes.set_xlim(0, 1)
        axes.legend(loc="lower right", fontsize=8)
        axes.grid(alpha=0.3)
        path = folder / f"{name}.png"
        figure.tight_layout()
        figure.savefig(path)
        plt.close(figure)
        written.append(path)
    return written


def format_report(report: Mapping[str, Any]) -> str:
    """The figures as a table for people."""

    def cell(value: float | None, percent: bool) -> str:
        if value is None:
            return "—"
        return f"{value:.1%}" if percent else f"{value:.3f}"

    lines = [f"{'benchmark':<22}{'router':<20}{'APGR':>7}{'CPT50':>8}{'CPT80':>8}"]
    for name in BENCHMARKS:
        if name not in report:
            continue
        figures = report[name]
        for row in ("ours", "random", "oracle", "routellm_published"):
            values = figures[row]
            label = {"routellm_published": "RouteLLM (paper)"}.get(row, row)
            lines.append(
                f"{name if row == 'ours' else '':<22}{label:<20}{cell(values['apgr'], False):>7}"
                f"{cell(values['cpt50'], True):>8}{cell(values['cpt80'], True):>8}"
            )
        target = ", ".join(
            f"{k.replace('_max', '')} {'≤' if k.endswith('_max') else '≥'} {v:g}"
            for k, v in figures["target"].items()
        )
        seeds = ", ".join(f"{a:.3f}" for a in figures["per_seed_apgr"])
        lines.append(f"{'':<22}target {target}; APGR per seed {seeds}; {figures['items']} queries, "
                     f"{figures['seconds']:.0f}s")  # fmt: skip
    if "decision_latency_ms" in report:
        latency = report["decision_latency_ms"]
        lines.append(
            f"\ndecision latency ({latency['router']}, embedding excluded, {latency['queries']} queries): "
            f"p50 {latency['p50']:.2f} ms, p95 {latency['p95']:.2f} ms; with the embedding: "
            f"p50 {latency['with_embedding']['p50']:.2f} ms, p95 {latency['with_embedding']['p95']:.2f} ms"
        )
    return "\n".join(lines)
