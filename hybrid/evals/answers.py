"""`hybrid eval answers`: the product end to end on real questions, against each model alone.

Every question of a question-answer set (`hybrid.qa`) goes through the real graph, in
process, with the configured models, in each mode:

- `always-small` and `always-large`: the route forced to one tier (every answer delivered);
- `product`: the product as configured (router, verifiers, escalation, review);
- `candidate`: the product with the router and verifier artefacts given on the command line;
- `tuned`: for `--folds K`, each question answered by artefacts tuned (`hybrid.tuning`) on the
  other folds' questions only; folds are grouped (one article's questions share a fold).

Knowledge: a SQuAD/XQuAD file's articles (or a plain file's contexts) are ingested into a
throw-away data directory, and each question is asked with retrieval; GSM8K is closed book. A
question left waiting for a reviewer is unanswered: it scores 0.

Model answers are recorded by (model, prompt) (`hybrid.models.replay`), so a second run, another
mode over the same prompts, or a re-calibration never runs a model again. Latency is reported
as the graph's own time plus each model call's time when it was recorded.

The `tuned` mode (`--folds K`): folds are grouped (all questions of an article share a fold); for
each fold, `hybrid.tuning.tune` learns a router and both verifiers and calibrates their thresholds
from the always-small and always-large answers to the other folds' questions only, and the real
graph answers the fold's questions with those artefacts.

Figures per mode: mean F1 and exact match (numeric match for GSM8K), the share answered correctly
without a person, the share sent to review, wrong answers delivered automatically (a share of
delivered answers), cost from the configured prices, the share of questions that called the
large model, latency p50/p95. Every mean and share has a 95 % bootstrap interval, resampled by
group. The oracle sends each question to the cheapest tier whose answer is as good as the large
model's; the saving of a mode is the share of always-large's cost it avoids.
"""

from __future__ import annotations

import contextlib
import json
import random
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hybrid.evals.stats import percentile
from hybrid.qa import QAItem, QASet, load_qa, score
from hybrid.tuning.pairs import pairs_from_outcomes

Log = Callable[[str], None]
BOOTSTRAP_SAMPLES = 1000
SINGLE_MODES = ("always-small", "always-large")


@dataclass
class Outcome:
    """What one mode did with one question."""

    id: str
    group: str
    mode: str
    question: str
    status: str
    """answered, pending_review, rejected, or error (the question could not be asked)."""
    tier: str | None
    """The tier whose answer was delivered (small, large, cache), None when none was."""
    answer: str | None
    f1: float
    exact: float
    correct: bool
    large_called: bool
    cost: float
    latency_ms: float
    need_large: float | None = None
    drafts: list[dict[str, Any]] = field(default_factory=list)
    verifications: list[dict[str, Any]] = field(default_factory=list)
    passages: list[str] = field(default_factory=list)
    retrieval_confidence: float | None = None
    versions: dict[str, Any] = field(default_factory=dict)

    @property
    def delivered(self) -> bool:
        """Answered automatically (no person wrote or approved it)."""
        return self.status == "answered" and self.tier in ("small", "large", "cache")


@dataclass(frozen=True)
class Mode:
    """One way of running the product: per-run overrides and the environment it needs."""

    name: str
    overrides: Mapping[str, Any] = field(default_factory=dict)
    environment: Mapping[str, str] = field(default_factory=dict)


@contextlib.contextmanager
def _environment(values: Mapping[str, str]) -> Iterator[None]:
    from hybrid.evals.servers import environment

    with environment(dict(values)):
        yield


def _recorded_latency(answer: Any) -> float:
    """The graph's own time, with each model call counted at the time its answer took when made."""
    total = sum((answer.timings_ms or {}).values())
    for draft in answer.drafts:
        recorded = (draft.get("model_meta") or {}).get("generation_ms")
        if isinstance(recorded, int | float):
            total += float(recorded) - draft["latency_ms"]
    return round(max(total, 0.0), 2)


def _scored_draft(draft: Mapping[str, Any], item: QAItem) -> dict[str, Any]:
    """A draft as recorded, with its own score: what a tier wrote, whatever was delivered (a
    fallback's answer, or none while a reviewer decides) is what its labels must say."""
    kept = ("tier", "model", "text", "error", "finish_reason", "model_meta", "cost")
    scored = score(None if draft.get("error") else draft.get("text"), item)
    return {k: draft.get(k) for k in kept} | {"f1": scored.f1, "correct": scored.correct}


def ask_item(item: QAItem, mode: Mode) -> Outcome:
    """Ask one question in one mode and score the answer."""
    from hybrid import api
    from hybrid.errors import HybridError

    try:
        answer = api.ask(
            item.question, thread_id=f"eval-{mode.name}-{uuid.uuid4().hex[:12]}", **mode.overrides
        )
    except HybridError as exc:
        return Outcome(
            item.id, item.group, mode.name, "error", None, str(exc), 0.0, 0.0, False, False, 0.0, 0.0
        )
    tier = answer.tier if answer.status == "answered" else None
    if answer.answered_by and answer.answered_by.startswith("cache:"):
        tier = "cache"
    scored = score(answer.answer if answer.status == "answered" else None, item)
    route = answer.route or {}
    return Outcome(
        id=item.id,
        group=item.group,
        mode=mode.name,
        question=item.question,
        status=answer.status,
        tier=tier,
        answer=answer.answer,
        f1=scored.f1,
        exact=scored.exact,
        correct=scored.correct,
        large_called=any(d["tier"] == "large" for d in answer.drafts),
        cost=answer.total_cost,
        latency_ms=_recorded_latency(answer),
        need_large=(route.get("signals") or {}).get("need_large"),
        drafts=[_scored_draft(d, item) for d in answer.drafts],
        verifications=[
            {k: v.get(k) for k in ("tier", "score", "threshold", "passed", "calibrated")}
            for v in answer.verifications
        ],
        passages=[hit["text"] for hit in (answer.retrieval or {}).get("hits") or []],
        retrieval_confidence=(answer.retrieval or {}).get("confidence"),
        versions=dict(route.get("versions") or {}),
    )


def run_mode(
    items: Sequence[QAItem], mode: Mode, progress: Callable[[int], None] = lambda _n: None
) -> list[Outcome]:
    """Every question in one mode."""
    outcomes = []
    with _environment(mode.environment):
        for item in items:
            outcomes.append(ask_item(item, mode))
            progress(1)
    return outcomes


# ---------------------------------------------------------------------------------------------
# The tuned mode: tune on some groups, answer the others
# ---------------------------------------------------------------------------------------------


def fold_of(groups: Sequence[str], k: int, seed: int = 0) -> np.ndarray:
    """Grouped fold assignment (the verifier's and router's tuning uses the same helper)."""
    from hybrid.verification.training import grouped_folds

    return grouped_folds(np.asarray(groups), k, seed)


def tuned_outcomes(
    items: Sequence[QAItem],
    small: Sequence[Outcome],
    large: Sequence[Outcome],
    *,
    folds: int,
    base: Mapping[str, Any],
    options: Mapping[str, Any],
    data_dir: Path,
    progress: Callable[[int], None] = lambda _n: None,
    log: Log = lambda _m: None,
) -> list[Outcome]:
    """Every question answered by artefacts tuned without its fold."""
    from hybrid.settings import resolve_settings
    from hybrid.tuning.tune import tune

    settings = resolve_settings()
    pairs = pairs_from_outcomes([asdict(o) for o in small], [asdict(o) for o in large])
    by_id = {pair.id: pair for pair in pairs}
    assignment = fold_of([item.group for item in items], folds)
    outcomes: list[Outcome] = []
    for fold in np.unique(assignment):
        held_out = [item for item, f in zip(items, assignment, strict=True) if f == fold]
        training = [
            by_id[item.id]
            for item, f in zip(items, assignment, strict=True)
            if f != fold and item.id in by_id
        ]
        log(f"fold {fold + 1}/{folds}: tuning on {len(training)} pairs, answering {len(held_out)} questions")
        folder = Path(tempfile.mkdtemp(prefix=f"fold{fold}-", dir=data_dir))
        report = tune(
            training,
            folder,
            models={"small": settings.small_spec, "large": settings.large_spec},
            description=f"fold {fold + 1} of {folds}",
            folds=5,
            cache_dir=data_dir / "embedding-cache",
            log=log,
            **options,
        )
        expected = report.choice.expected["quality_vs_large"]
        log(f"fold {fold + 1}: plan {report.choice.plan}, expected F1 vs always-large {expected}")
        mode = Mode(
            "tuned",
            dict(base),
            {
                "HYBRID_ROUTER_PATH": str(folder / "router"),
                "HYBRID_VERIFIER_PATH": str(folder / "verifier-small"),
                "HYBRID_LARGE_VERIFIER_PATH": str(folder / "verifier-large"),
            },
        )
        outcomes += run_mode(held_out, mode, progress)
    return outcomes


# ---------------------------------------------------------------------------------------------
# Figures
# ---------------------------------------------------------------------------------------------


def _interval(
    values: np.ndarray, groups: np.ndarray, statistic: Callable[[np.ndarray], float]
) -> list[float]:
    """95 % bootstrap interval of `statistic`, resampling whole groups."""
    names = np.unique(groups)
    members = [np.flatnonzero(groups == name) for name in names]
    rng = np.random.default_rng(0)
    draws = []
    for _ in range(BOOTSTRAP_SAMPLES):
        picked = rng.integers(0, len(names), len(names))
        index = np.concatenate([members[i] for i in picked])
        value = statistic(values[index])
        if np.isfinite(value):
            draws.append(value)
    if not draws:
        return [float("nan"), float("nan")]
    return [round(float(np.percentile(draws, 2.5)), 4), round(float(np.percentile(draws, 97.5)), 4)]


def _figure(
    values: Sequence[float], groups: np.ndarray, statistic: Callable[[np.ndarray], float] = np.mean
) -> dict:
    array = np.asarray(values, dtype=float)
    value = float(statistic(array)) if len(array) else float("nan")
    return {
        "value": round(value, 4) if np.isfinite(value) else None,
        "ci95": _interval(array, groups, statistic),
    }


def _share_of_delivered(rows: np.ndarray) -> float:
    """Wrong among delivered: 1 delivered and wrong, 0 delivered and right, NaN not delivered."""
    delivered = rows[~np.isnan(rows)]
    return float(delivered.mean()) if len(delivered) else float("nan")


def figures(outcomes: Sequence[Outcome]) -> dict[str, Any]:
    """The figures of one mode."""
    groups = np.array([o.group for o in outcomes])
    latencies = [o.latency_ms for o in outcomes if o.status != "error"]
    return {
        "questions": len(outcomes),
        "f1": _figure([o.f1 for o in outcomes], groups),
        "exact": _figure([o.exact for o in outcomes], groups),
        "correct_without_person": _figure([float(o.delivered and o.correct) for o in outcomes], groups),
        "review_share": _figure([float(o.status == "pending_review") for o in outcomes], groups),
        "wrong_delivered_share": _figure(
            [(float(not o.correct) if o.delivered else float("nan")) for o in outcomes],
            groups,
            _share_of_delivered,
        ),
        "large_share": _figure([float(o.large_called) for o in outcomes], groups),
        "cost": _figure([o.cost for o in outcomes], groups, np.sum),
        "cost_per_question": _figure([o.cost for o in outcomes], groups),
        "errors": sum(o.status == "error" for o in outcomes),
        "latency_ms": {
            "p50": round(percentile(latencies, 50), 1),
            "p95": round(percentile(latencies, 95), 1),
        },
    }


def oracle(small: Sequence[Outcome], large: Sequence[Outcome]) -> list[Outcome]:
    """Each question to the cheapest tier whose answer is as good as the large model's."""
    chosen = []
    for s, big in zip(small, large, strict=True):
        cheaper, dearer = (s, big) if s.cost <= big.cost else (big, s)
        chosen.append(cheaper if cheaper.f1 >= dearer.f1 else dearer)
    return [Outcome(**{**asdict(o), "mode": "oracle"}) for o in chosen]


def savings(report: dict[str, Any]) -> None:
    """Add each mode's saving against always-large, and its share of the oracle's saving."""
    large_cost = report["modes"]["always-large"]["cost"]["value"] or 0.0
    oracle_saving = 1 - report["modes"]["oracle"]["cost"]["value"] / large_cost if large_cost else None
    for name, mode in report["modes"].items():
        saving = 1 - mode["cost"]["value"] / large_cost if large_cost else None
        mode["saving"] = round(saving, 4) if saving is not None else None
        if oracle_saving and saving is not None and name not in SINGLE_MODES:
            mode["share_of_oracle_saving"] = round(saving / oracle_saving, 4)
        quality = report["modes"]["always-large"]["f1"]["value"]
        if quality:
            mode["f1_vs_large"] = round((mode["f1"]["value"] or 0.0) / quality, 4)


# ---------------------------------------------------------------------------------------------
# The run
# ---------------------------------------------------------------------------------------------


def default_record(data_dir: Path) -> Path:
    """Where model answers are recorded between runs."""
    return data_dir / "evals" / "answers.sqlite"


@contextlib.contextmanager
def workspace(qa: QASet, keep: Path | None = None) -> Iterator[dict[str, str]]:
    """A throw-away data directory with the set's knowledge ingested; yields its environment."""
    from hybrid import api

    with contextlib.ExitStack() as stack:
        folder = keep or Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="hybrid-eval-")))
        env = {"HYBRID_DATA_DIR": str(folder / "data"), "HYBRID_CACHE": "off", "HYBRID_SHADOW_RATE": "0"}
        with _environment(env):
            api.reset()
            if not qa.closed_book:
                if qa.format == "squad":
                    sources = [qa.path]
                else:
                    sources = [folder / "contexts.jsonl"]
                    contexts = dict.fromkeys(item.context for item in qa.items if item.context)
                    sources[0].write_text("".join(json.dumps({"text": c}) + "\n" for c in contexts))
                report = api.ingest(sources)
                if not report.ok:
                    raise RuntimeError(f"could not ingest the question set's knowledge: {report.failed}")
            try:
                yield env
            finally:
                api.reset()


class _Progress:
    """A bar on a terminal; a line per mode elsewhere."""

    def __init__(self, total: int, log: Log) -> None:
        self.log, self.bar = log, None
        if sys.stderr.isatty():
            from tqdm import tqdm

            self.bar = tqdm(total=total, unit="answer", file=sys.stderr, dynamic_ncols=True, leave=False)

    def mode(self, name: str, count: int) -> Callable[[int], None]:
        if self.bar is not None:
            self.bar.set_description(name)
            return self.bar.update
        self.log(f"{name}: {count} questions ...")
        return lambda _n: None

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def evaluate_answers(
    qa_path: Path,
    *,
    limit: int | None = None,
    modes: Sequence[Mode] = (),
    folds: int = 0,
    tune_options: Mapping[str, Any] | None = None,
    record: Path | None = None,
    seed: int = 0,
    log: Log = lambda _m: None,
) -> dict[str, Any]:
    """Run every mode over the set; the figures per mode, the oracle, and the savings."""
    from hybrid.models.replay import recording
    from hybrid.settings import resolve_settings

    settings = resolve_settings()
    qa = load_qa(qa_path, limit=limit)
    items = list(qa.items)
    random.Random(seed).shuffle(items)
    retrieval = "never" if qa.closed_book else "always"
    base = {"retrieval": retrieval}
    plan = [
        Mode("always-small", {**base, "force_route": "small"}),
        Mode("always-large", {**base, "force_route": "large"}),
        Mode("product", base),
        *[Mode(m.name, {**base, **m.overrides}, m.environment) for m in modes],
    ]
    record = record or default_record(settings.data_dir)
    outcomes: dict[str, list[Outcome]] = {}
    started = time.perf_counter()
    with recording(record), workspace(qa) as env:
        progress = _Progress(len(items) * (len(plan) + (1 if folds else 0)), log)
        for mode in plan:
            outcomes[mode.name] = run_mode(items, mode, progress.mode(mode.name, len(items)))
        if folds:
            outcomes["tuned"] = tuned_outcomes(
                items,
                outcomes["always-small"],
                outcomes["always-large"],
                folds=folds,
                base=base,
                options=dict(tune_options or {}),
                data_dir=Path(env["HYBRID_DATA_DIR"]),
                progress=progress.mode("tuned", len(items)),
                log=log,
            )
        progress.close()
    by_id = {name: {o.id: o for o in rows} for name, rows in outcomes.items()}
    ordered = {
        name: [by_id[name][item.id] for item in qa.items if item.id in by_id[name]] for name in outcomes
    }
    ordered["oracle"] = oracle(ordered["always-small"], ordered["always-large"])
    report: dict[str, Any] = {
        "qa": str(qa_path),
        "format": qa.format,
        "questions": len(items),
        "models": {"small": settings.small_specs, "large": settings.large_specs},
        "prices": {spec: price.model_dump() for spec, price in settings.prices.items()},
        "record": str(record),
        "seconds": round(time.perf_counter() - started, 1),
        "modes": {name: figures(rows) for name, rows in ordered.items()},
    }
    savings(report)
    report["outcomes"] = {name: [asdict(o) for o in rows] for name, rows in ordered.items()}
    return report


def format_report(report: Mapping[str, Any]) -> str:
    """The figures as a table for people."""

    def cell(figure: Mapping[str, Any], pct: bool = True, digits: int = 3) -> str:
        value, (low, high) = figure["value"], figure["ci95"]
        if value is None:
            return "n/a"
        if pct:
            return f"{value:.1%} ({low:.0%}-{high:.0%})"
        return f"{value:.{digits}f} ({low:.{digits}f}-{high:.{digits}f})"

    lines = [
        f"{report['questions']} questions from {report['qa']} ({report['format']}); small: "
        f"{', '.join(report['models']['small'])}; large: {', '.join(report['models']['large'])}",
        "",
        f"{'mode':<14}{'F1':>22}{'right, no person':>22}{'review':>20}{'wrong delivered':>22}"
        f"{'large share':>20}{'saving':>9}{'p50 ms':>9}",
    ]
    for name, mode in report["modes"].items():
        saving = "" if mode.get("saving") is None else f"{mode['saving']:.1%}"
        lines.append(
            f"{name:<14}{cell(mode['f1'], False):>22}{cell(mode['correct_without_person']):>22}"
            f"{cell(mode['review_share']):>20}{cell(mode['wrong_delivered_share']):>22}"
            f"{cell(mode['large_share']):>20}{saving:>9}{mode['latency_ms']['p50']:>9.0f}"
        )
    for name, mode in report["modes"].items():
        if "share_of_oracle_saving" in mode and name != "oracle":
            lines.append(
                f"{name}: F1 {mode.get('f1_vs_large', 0):.1%} of always-large's, saving {mode['saving']:.1%} "
                f"of its cost = {mode['share_of_oracle_saving']:.1%} of the oracle's saving "
                f"({report['modes']['oracle']['saving']:.1%})"
            )
    return "\n".join(lines)


def plot(report: Mapping[str, Any], folder: Path) -> Path:
    """Quality against cost: each mode, the single models and the oracle."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    folder.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(7, 5))
    large_cost = report["modes"]["always-large"]["cost"]["value"] or 1.0
    for name, mode in report["modes"].items():
        x, y = mode["cost"]["value"] / large_cost, mode["f1"]["value"] or 0.0
        low, high = mode["f1"]["ci95"]
        marker = "s" if name in SINGLE_MODES else "*" if name == "oracle" else "o"
        ax.errorbar([x], [y], yerr=[[y - low], [high - y]], fmt=marker, capsize=3, label=name)
    ax.plot(
        [report["modes"]["always-small"]["cost"]["value"] / large_cost, 1.0],
        [report["modes"]["always-small"]["f1"]["value"], report["modes"]["always-large"]["f1"]["value"]],
        ":",
        color="grey",
        label="random mix of the two",
    )
    ax.set_xlabel("cost, share of always-large's")
    ax.set_ylabel("mean F1 (a pending review scores 0)")
    ax.set_title(f"{Path(report['qa']).name}: {report['questions']} questions")
    ax.legend(fontsize=8)
    ax.grid(alpha=0.3)
    path = folder / "answers-frontier.png"
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def pairs_for_qa(
    qa_path: Path, *, limit: int | None = None, record: Path | None = None, log: Log = lambda _m: None
) -> list[Any]:
    """Labelled pairs from a question-answer set: each question answered by always-small and
    always-large (recorded answers are replayed), labelled by its reference answers."""
    from hybrid.models.replay import recording
    from hybrid.settings import resolve_settings

    settings = resolve_settings()
    qa = load_qa(qa_path, limit=limit)
    base = {"retrieval": "never" if qa.closed_book else "always"}
    with recording(record or default_record(settings.data_dir)), workspace(qa):
        progress = _Progress(2 * len(qa.items), log)
        small = run_mode(
            qa.items,
            Mode("always-small", {**base, "force_route": "small"}),
            progress.mode("small", len(qa.items)),
        )
        large = run_mode(
            qa.items,
            Mode("always-large", {**base, "force_route": "large"}),
            progress.mode("large", len(qa.items)),
        )
        progress.close()
    return pairs_from_outcomes([asdict(o) for o in small], [asdict(o) for o in large])
