"""The dashboard's charts, built with Altair from recorded turns (`api.traffic`).

Each function takes turns and returns a chart (or None when there is nothing to draw), so the
charts can be checked without a browser.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import timedelta

import altair as alt
import pandas as pd

from hybrid import api

# Outcome colours match the chat's route badges (small green, large blue, human orange, cache violet).
OUTCOME_COLORS = {
    "small": "#21c354",
    "large": "#1c83e1",
    "human": "#ff8c00",
    "cache": "#803df5",
    "rejected": "#ff4b4b",
    "pending": "#a3a8b8",
    "unreachable": "#7d353b",
}
_outcome_scale = alt.Scale(
    domain=list(api.TRAFFIC_OUTCOMES), range=[OUTCOME_COLORS[o] for o in api.TRAFFIC_OUTCOMES]
)


def bucket_for(span: timedelta) -> tuple[str, str]:
    """A pandas frequency that cuts `span` into readable bars, and how to label a bar."""
    if span <= timedelta(hours=2):
        return "5min", "%H:%M"
    if span <= timedelta(days=2):
        return "1h", "%b %d %H:00"
    return "1D", "%b %d"


def _short(spec: str) -> str:
    """A model spec without its provider, for axis labels (`llamacpp:gemma-3-270m` → `gemma-3-270m`)."""
    return spec.split(":", 1)[-1]


def turns_frame(turns: Sequence[api.TrafficTurn], bucket: tuple[str, str]) -> pd.DataFrame:
    """One row per turn, with its time bucket (a time, and its label as an ordered category)."""
    frame = pd.DataFrame(
        [
            {
                "at": t.at,
                "outcome": t.outcome,
                "escalated": t.escalated,
                "reviewed": t.reviewed,
                "total_cost": t.total_cost or 0.0,
                "large_only_cost": t.large_only_cost,
            }
            for t in turns
        ]
    )
    freq, label = bucket
    frame["at"] = pd.to_datetime(frame["at"], utc=True)
    frame["bucket"] = frame["at"].dt.floor(freq)
    frame["period"] = frame["bucket"].dt.strftime(label + " UTC")
    return frame


def _periods(frame: pd.DataFrame) -> list[str]:
    return list(dict.fromkeys(frame.sort_values("bucket")["period"]))


def route_mix(turns: Sequence[api.TrafficTurn], bucket: tuple[str, str]) -> alt.Chart:
    """Stacked bars: how many questions each route answered, per period."""
    frame = turns_frame(turns, bucket)
    counts = frame.groupby(["bucket", "period", "outcome"]).size().reset_index(name="questions")
    return (
        alt.Chart(counts, title="Route mix")
        .mark_bar()
        .encode(
            x=alt.X("period:O", title=None, sort=_periods(frame), axis=alt.Axis(labelAngle=0)),
            y=alt.Y("questions:Q", title="questions", stack="zero"),
            color=alt.Color("outcome:N", scale=_outcome_scale, title="answered by"),
            order=alt.Order("outcome:N"),
            tooltip=["period:O", "outcome:N", "questions:Q"],
        )
    )


def rates(turns: Sequence[api.TrafficTurn], bucket: tuple[str, str]) -> alt.Chart:
    """Lines: share of questions escalated to the large model, and sent to a reviewer, per period."""
    frame = turns_frame(turns, bucket)
    per_bucket = frame.groupby(["bucket", "period"])[["escalated", "reviewed"]].mean().reset_index()
    long = per_bucket.melt(["bucket", "period"], var_name="rate", value_name="share")
    long["rate"] = long["rate"].map({"escalated": "escalation", "reviewed": "human review"})
    return (
        alt.Chart(long, title="Escalation and review rates")
        .mark_line(point=True)
        .encode(
            x=alt.X("period:O", title=None, sort=_periods(frame), axis=alt.Axis(labelAngle=0)),
            y=alt.Y(
                "share:Q",
                title="share of questions",
                axis=alt.Axis(format="%"),
                scale=alt.Scale(domain=[0, 1]),
            ),
            color=alt.Color(
                "rate:N", scale=alt.Scale(domain=["escalation", "human review"], range=["#1c83e1", "#ff8c00"])
            ),
            tooltip=["period:O", "rate:N", alt.Tooltip("share:Q", format=".0%")],
        )
    )


def latency(turns: Sequence[api.TrafficTurn]) -> alt.Chart | None:
    """Grouped bars: p50 and p95 latency of each model's successful calls."""
    rows = [
        {"model": f"{_short(m.model)} ({m.tier})", "calls": m.calls, "percentile": name, "ms": value}
        for m in api.latency_by_model(turns)
        for name, value in (("p50", m.p50_ms), ("p95", m.p95_ms))
    ]
    if not rows:
        return None
    return (
        alt.Chart(pd.DataFrame(rows), title="Latency per model")
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title=None, axis=alt.Axis(labelLimit=320)),
            x=alt.X("ms:Q", title="milliseconds"),
            yOffset="percentile:N",
            color=alt.Color("percentile:N", scale=alt.Scale(range=["#7defa1", "#0068c9"])),
            tooltip=["model:N", "calls:Q", "percentile:N", alt.Tooltip("ms:Q", format=".0f")],
        )
    )


def cost(turns: Sequence[api.TrafficTurn]) -> alt.Chart:
    """Cumulative lines: what the answers cost against what the large model alone would have cost."""
    frame = turns_frame(turns, ("1min", "%H:%M")).sort_values("at")
    span = frame["at"].iloc[-1] - frame["at"].iloc[0]
    # Vega's default labels are 12-hour and repeat within a minute; say what the span needs.
    label = "%H:%M:%S" if span <= timedelta(minutes=10) else "%H:%M" if span <= timedelta(days=2) else "%b %d"
    answered = frame[frame["large_only_cost"].notna()]
    long = pd.DataFrame(
        {
            "at": list(frame["at"]) + list(answered["at"]),
            "series": ["actual cost"] * len(frame) + ["large model only"] * len(answered),
            "cost": list(frame["total_cost"].cumsum()) + list(answered["large_only_cost"].cumsum()),
        }
    )
    return (
        alt.Chart(long, title="Cost against sending everything to the large model")
        .mark_line(point=True, interpolate="step-after")
        .encode(
            x=alt.X("at:T", title=None, axis=alt.Axis(format=label, labelAngle=0)),
            y=alt.Y("cost:Q", title="cumulative cost ($)"),
            color=alt.Color(
                "series:N",
                scale=alt.Scale(domain=["actual cost", "large model only"], range=["#21c354", "#1c83e1"]),
            ),
            tooltip=["at:T", "series:N", alt.Tooltip("cost:Q", format=".6f")],
        )
    )


def tokens(turns: Sequence[api.TrafficTurn]) -> alt.Chart | None:
    """Stacked bars: input and output tokens per model."""
    rows: dict[tuple[str, str], int] = {}
    for turn in turns:
        for call in turn.calls:
            for kind, count in (("input", call.input_tokens), ("output", call.output_tokens)):
                name = f"{_short(call.model)} ({call.tier})"
                rows[(name, kind)] = rows.get((name, kind), 0) + count
    if not rows:
        return None
    frame = pd.DataFrame([{"model": m, "tokens": kind, "count": n} for (m, kind), n in rows.items()])
    return (
        alt.Chart(frame, title="Tokens per model")
        .mark_bar()
        .encode(
            y=alt.Y("model:N", title=None, axis=alt.Axis(labelLimit=320)),
            x=alt.X("count:Q", title="tokens"),
            color=alt.Color("tokens:N", scale=alt.Scale(range=["#a3a8b8", "#0068c9"])),
            tooltip=["model:N", "tokens:N", "count:Q"],
        )
    )


def verifier_scores(turns: Sequence[api.TrafficTurn]) -> alt.Chart | None:
    """Histogram of verifier scores, stacked by outcome (passed or failed), one panel per tier."""
    rows = [
        {"score": c.score, "outcome": "passed" if c.passed else "failed", "tier": f"{c.tier} model"}
        for t in turns
        for c in t.checks
    ]
    if not rows:
        return None
    return (
        alt.Chart(pd.DataFrame(rows), title="Verifier scores")
        .mark_bar()
        .encode(
            x=alt.X("score:Q", bin=alt.Bin(extent=[0, 1], step=0.1), title="score"),
            y=alt.Y("count():Q", title="answers"),
            color=alt.Color(
                "outcome:N", scale=alt.Scale(domain=["passed", "failed"], range=["#21c354", "#ff4b4b"])
            ),
            column=alt.Column("tier:N", title=None),
            tooltip=["tier:N", "outcome:N", "count():Q"],
        )
        .properties(width=170, height=200)
        .configure_legend(orient="bottom")
    )
