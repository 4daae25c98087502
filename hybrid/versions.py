"""Live figures per router/verifier version, from what traffic recorded: the audit log (route,
drafts, cost, review), users' and reviewers' feedback, and the labels of shadow pairs.

Per version, over the turns it decided:

- quality: a turn answered without a person counts 1 when its answer is known right and 0 when
  known wrong (a user's thumbs, a reviewer's verdict, or the shadow pair's reference or judge
  label for the tier that answered); a turn sent to a reviewer counts 0; unlabelled answered
  turns are left out;
- large share: turns that called the large model;
- review share: turns sent to a reviewer;
- cost per answered question.

`compare` gives the difference between two versions with a 95 % bootstrap interval (turns
resampled within each version) and calls it significant when the interval leaves out 0.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any

import numpy as np
import sqlalchemy as sa

from hybrid import registry, traffic
from hybrid.database import database_for, feedback, shadow_pairs
from hybrid.qa import QAItem, score
from hybrid.settings import Settings

SAMPLES = 1000
METRICS = ("quality", "large_share", "review_share", "cost_per_answered")


def _delivered_label(
    turn: traffic.Turn, ratings: Sequence[Mapping[str, Any]], pair: Mapping[str, Any] | None
) -> float | None:
    """1 right, 0 wrong, None unknown: the delivered answer of an automatically answered turn."""
    for rating in reversed(ratings):
        if rating["source"] == "user":
            return 1.0 if rating["rating"] == "up" else 0.0
    if pair is None or turn.outcome not in ("small", "large"):
        return None
    draft = pair.get(turn.outcome) or {}
    if pair.get("reference"):
        item = QAItem(
            id="", question=pair["question"], answers=tuple(pair["reference"]), kind="extractive", group=""
        )
        return float(score(draft.get("text") or "", item).correct)
    judged = ((pair.get("labels") or {}).get("judge") or {}).get(turn.outcome)
    return {"right": 1.0, "wrong": 0.0}.get(judged)


def per_turn(settings: Settings, *, since: datetime | None = None) -> dict[str, dict[str, list[float]]]:
    """Each version's per-turn values of every metric (NaN where a turn says nothing)."""
    turns = traffic.turns(settings, since=since)
    traces = [t.trace_id for t in turns]
    with database_for(settings).engine.connect() as connection:
        ratings: dict[str, list[dict[str, Any]]] = {}
        for row in connection.execute(
            sa.select(feedback).where(feedback.c.trace_id.in_(traces)).order_by(feedback.c.id)
        ):
            ratings.setdefault(row.trace_id, []).append(dict(row._mapping))
        pairs = {
            row.trace_id: dict(row._mapping)
            for row in connection.execute(sa.select(shadow_pairs).where(shadow_pairs.c.trace_id.in_(traces)))
        }
    out: dict[str, dict[str, list[float]]] = {}
    for turn in turns:
        values = out.setdefault(turn.version or "unknown", {m: [] for m in METRICS})
        sent_to_review = turn.reviewed or turn.outcome in ("human", "pending", "rejected")
        automatic = turn.outcome in ("small", "large", "cache") and not turn.reviewed
        label = (
            _delivered_label(turn, ratings.get(turn.trace_id, []), pairs.get(turn.trace_id))
            if automatic
            else None
        )
        values["quality"].append(0.0 if sent_to_review else (np.nan if label is None else label))
        values["large_share"].append(float(any(c.tier == "large" for c in turn.calls)))
        values["review_share"].append(float(sent_to_review))
        values["cost_per_answered"].append(
            turn.total_cost if automatic and turn.total_cost is not None else np.nan
        )
    return out


def _summary(values: Sequence[float]) -> dict[str, Any]:
    array = np.asarray(values, dtype=float)
    known = array[~np.isnan(array)]
    return {"value": round(float(known.mean()), 6) if len(known) else None, "n": len(known)}


def _difference(a: Sequence[float], b: Sequence[float]) -> dict[str, Any]:
    x, y = (np.asarray(v, dtype=float) for v in (a, b))
    x, y = x[~np.isnan(x)], y[~np.isnan(y)]
    if len(x) < 2 or len(y) < 2:
        return {"value": None, "ci95": [None, None], "significant": False, "note": "too few turns"}
    rng = np.random.default_rng(0)
    draws = [rng.choice(y, len(y)).mean() - rng.choice(x, len(x)).mean() for _ in range(SAMPLES)]
    low, high = (float(np.percentile(draws, q)) for q in (2.5, 97.5))
    return {
        "value": round(float(y.mean() - x.mean()), 6),
        "ci95": [round(low, 6), round(high, 6)],
        "significant": bool(low > 0 or high < 0),
    }


def compare(settings: Settings, versions: Sequence[str], *, since: datetime | None = None) -> dict[str, Any]:
    """Every version's live figures, and B minus A for the two compared (default: current, canary)."""
    values = per_turn(settings, since=since)
    state = registry.state(settings, fresh=True)
    chosen = list(versions)
    if not chosen:
        chosen = [state.current] + ([state.canary[0]] if state.canary else [])
    report: dict[str, Any] = {
        "current": state.current,
        "canary": {"version": state.canary[0], "share": state.canary[1]} if state.canary else None,
        "versions": {
            v: {"turns": len(m["quality"]), **{k: _summary(m[k]) for k in METRICS}} for v, m in values.items()
        },
    }
    if len(chosen) >= 2:
        a, b = chosen[0], chosen[1]
        empty = {m: [] for m in METRICS}
        va, vb = values.get(a, empty), values.get(b, empty)
        report["difference"] = {"a": a, "b": b, **{m: _difference(va[m], vb[m]) for m in METRICS}}
    return report


def format_comparison(report: Mapping[str, Any]) -> str:
    def cell(figure: Mapping[str, Any], pct: bool) -> str:
        if figure["value"] is None:
            return "n/a"
        return f"{figure['value']:.1%}" if pct else f"{figure['value']:.6f}"

    lines = [f"{'version':<12}{'turns':>7}{'quality':>10}{'large':>9}{'review':>9}{'cost/answer':>14}"]
    for version, figures in report["versions"].items():
        mark = (
            " *"
            if version == report["current"]
            else (" c" if (report["canary"] or {}).get("version") == version else "")
        )
        lines.append(
            f"{version + mark:<12}{figures['turns']:>7}{cell(figures['quality'], True):>10}"
            f"{cell(figures['large_share'], True):>9}{cell(figures['review_share'], True):>9}"
            f"{cell(figures['cost_per_answered'], False):>14}"
        )
    difference = report.get("difference")
    if difference:
        lines.append(f"\n{difference['b']} minus {difference['a']}:")
        for metric in METRICS:
            d = difference[metric]
            if d["value"] is None:
                lines.append(f"  {metric:<18} {d.get('note', 'n/a')}")
                continue
            verdict = "significant" if d["significant"] else "not significant"
            low, high = d["ci95"]
            lines.append(f"  {metric:<18} {d['value']:+.4f} (95 % CI {low:+.4f} to {high:+.4f}): {verdict}")
    lines.append("(* current, c canary)")
    return "\n".join(lines)
