"""`hybrid eval judge`: how often the judge's labels agree with reference labels.

Both tiers' answers to a question-answer set are labelled by their reference answers (the
`correct` rule of `hybrid.qa`) and by the judge (`hybrid.tuning.judge`, asked twice with the
answers swapped). Per tier: the share the judge decided (both orders agreed), its accuracy and
Cohen's kappa on those, and how often the two orders disagreed (position bias).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

Log = Callable[[str], None]


def _kappa(truth: Sequence[bool], said: Sequence[bool]) -> float | None:
    n = len(truth)
    if not n:
        return None
    observed = sum(t == s for t, s in zip(truth, said, strict=True)) / n
    p_truth, p_said = sum(truth) / n, sum(said) / n
    expected = p_truth * p_said + (1 - p_truth) * (1 - p_said)
    return None if expected >= 1 else round((observed - expected) / (1 - expected), 4)


def evaluate_judge(
    pairs: Sequence[Any], *, record: Path | None = None, log: Log = lambda _m: None
) -> dict[str, Any]:
    from hybrid.evals.answers import default_record
    from hybrid.models.replay import recording
    from hybrid.settings import resolve_settings
    from hybrid.tuning.judge import judge_pair

    settings = resolve_settings()
    verdicts = []
    with recording(record or default_record(settings.data_dir)):
        for number, pair in enumerate(pairs, start=1):
            if number % 20 == 0:
                log(f"judged {number}/{len(pairs)} pairs")
            verdicts.append(
                judge_pair(pair.question, pair.passages, pair.small.text, pair.large.text, settings)
            )
    report: dict[str, Any] = {"pairs": len(pairs), "judge": settings.judge_model or settings.large_spec}
    for tier in ("small", "large"):
        truth = [p.small_good if tier == "small" else p.large_good for p in pairs]
        said = [getattr(v, tier) for v in verdicts]
        decided = [(t, s == "right") for t, s in zip(truth, said, strict=True) if s is not None]
        right = [t for t, _ in decided]
        judged = [s for _, s in decided]
        report[tier] = {
            "reference_good_share": round(sum(truth) / len(truth), 4) if truth else None,
            "decided_share": round(len(decided) / len(pairs), 4) if pairs else None,
            "accuracy": round(sum(t == s for t, s in decided) / len(decided), 4) if decided else None,
            "kappa": _kappa(right, judged),
            "position_disagreement": round(sum(s is None for s in said) / len(said), 4) if said else None,
        }
    return report


def format_judge(report: dict[str, Any]) -> str:
    lines = [f"judge {report['judge']} on {report['pairs']} pairs, against reference labels:"]
    for tier in ("small", "large"):
        r = report[tier]

        def pct(value: float | None) -> str:
            return "n/a" if value is None else f"{value:.1%}"

        lines.append(
            f"  {tier:<6} decided {pct(r['decided_share'])}, accuracy {pct(r['accuracy'])} "
            f"(kappa {r['kappa'] if r['kappa'] is not None else 'n/a'}), orders disagreed "
            f"{pct(r['position_disagreement'])}; reference says right for {pct(r['reference_good_share'])}"
        )
    return "\n".join(lines)
