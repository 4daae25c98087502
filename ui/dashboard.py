"""Dashboard: what the recorded traffic says about routes, reviews, latency, tokens and cost."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pandas as pd
import streamlit as st

from hybrid import api
from ui import charts
from ui.components import api_key, money, seconds

RANGES = {
    "Last hour": timedelta(hours=1),
    "Last 24 hours": timedelta(days=1),
    "Last 7 days": timedelta(days=7),
    "Last 30 days": timedelta(days=30),
    "All time": None,
}

st.set_page_config(layout="wide")
st.title("Dashboard")
choice = st.segmented_control(
    "Time range", list(RANGES), default="Last 7 days", required=True, key="range", bind="query-params"
)
window = RANGES[choice or "Last 7 days"]
now = datetime.now(UTC)
turns = api.traffic(since=now - window if window else None, key=api_key())
if not turns:
    st.info("No questions recorded in this range yet: ask some on the Chat page.", icon=":material/info:")
    st.stop()

summary = api.traffic_summary(turns)
# Bars as fine as the recorded span needs, not the range asked for: a quiet week is one bar otherwise.
bucket = charts.bucket_for(now - turns[0].at)
top, bottom = st.columns(3), st.columns(3)
top[0].metric("Questions", summary.turns, border=True)
top[1].metric("Answered by the small model", f"{summary.outcomes['small'] / summary.turns:.0%}", border=True)
top[2].metric("Escalated to the large model", f"{summary.escalation_rate:.0%}", border=True)
bottom[0].metric(
    "Sent to a reviewer",
    f"{summary.review_rate:.0%}",
    help=f"{summary.outcomes['pending']} still pending",
    border=True,
)
bottom[1].metric(
    "Cost",
    money(summary.total_cost),
    help=f"Every model call and the verifier, at configured prices; "
    f"{summary.input_tokens + summary.output_tokens} tokens",
    border=True,
)
bottom[2].metric(
    "Saved",
    money(summary.saved),
    delta=f"{summary.saved / summary.large_only_cost:.0%} of large-only" if summary.large_only_cost else None,
    help=f"Against sending every answered question to the large model ({money(summary.large_only_cost)})",
    border=True,
)

left, right = st.columns(2)
left.altair_chart(charts.route_mix(turns, bucket), width="stretch")
right.altair_chart(charts.rates(turns, bucket), width="stretch")
left, right = st.columns(2)
left.altair_chart(charts.cost(turns), width="stretch")
if (chart := charts.tokens(turns)) is not None:
    right.altair_chart(chart, width="stretch")
left, right = st.columns(2)
if (chart := charts.latency(turns)) is not None:
    left.altair_chart(chart, width="stretch")
if (chart := charts.verifier_scores(turns)) is not None:
    right.altair_chart(chart)


def _cell(figure: dict, pct: bool = True) -> str:
    if figure["value"] is None:
        return "–"
    return f"{figure['value']:.1%}" if pct else money(figure["value"])


def versions_section() -> None:
    """Live figures per router and verifier version: they sum every tenant's traffic, so only
    an admin key (or the operator, without keys) sees them."""
    st.subheader("Router and verifier versions")
    versions = api.compare_versions([], since=now - window if window else None, key=api_key())
    canary = versions["canary"]
    st.caption(
        f"Serving: **{versions['current']}**"
        + (f"; canary **{canary['version']}** for {canary['share']:.0%} of conversations" if canary else "")
        + ". Quality counts a turn sent to review as 0 and leaves unlabelled answers out "
        "(`hybrid tune compare`)."
    )
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "version": name,
                    "turns": figures["turns"],
                    "quality": _cell(figures["quality"]),
                    "labelled": figures["quality"]["n"],
                    "large share": _cell(figures["large_share"]),
                    "review share": _cell(figures["review_share"]),
                    "cost per answer": _cell(figures["cost_per_answered"], pct=False),
                }
                for name, figures in versions["versions"].items()
            ]
        ),
        hide_index=True,
        width="stretch",
    )


if api.caller(api_key()).admin:
    versions_section()

with st.expander(f"Recent questions ({len(turns)})", icon=":material/list:"):
    st.dataframe(
        pd.DataFrame(
            [
                {
                    "at": t.at,
                    "question": t.question,
                    "outcome": t.outcome,
                    "answered by": t.answered_by,
                    "escalated": t.escalated,
                    "reviewed": t.reviewed,
                    "latency": seconds(t.latency_ms) if t.latency_ms is not None else "",
                    "cost": t.total_cost,
                    "saved": t.saved,
                }
                for t in reversed(turns)
            ]
        ),
        hide_index=True,
    )
