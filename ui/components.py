"""Pieces the pages share: how an answer, its route, its sources and its cost are shown.

Pure helpers (labels, formatting) are separate from the functions that draw, so the wording can
be tested without running Streamlit.
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Any

import streamlit as st

from hybrid import api
from ui.streaming import shown_marker

# Route → (label, badge colour, icon). Colours are reused by the dashboard's charts.
ROUTES: dict[str, tuple[str, str, str]] = {
    "small": ("small model", "green", ":material/bolt:"),
    "large": ("large model", "blue", ":material/psychology:"),
    "human": ("human", "orange", ":material/person:"),
    "cache": ("cache", "violet", ":material/cached:"),
}


def api_key() -> str | None:
    """The key this browser session signed in with (None when no keys are configured): every page
    passes it to the façade, which shows a tenant only its own data."""
    return st.session_state.get("api_key")


def route_of(answer: api.Answer) -> str | None:
    """Who decided the final answer: small, large, human or cache (None while pending or if rejected).

    Matches `hybrid.traffic`'s outcomes, so the chat's badges and the dashboard's colours agree.
    """
    if answer.status != "answered":
        return None
    if answer.review is not None:  # a reviewer approved, wrote or escalated: a person decided
        return "human"
    if (answer.answered_by or "").startswith("cache:"):
        return "cache"
    return answer.tier or "small"


def badge(answer: api.Answer) -> str:
    """The route badge, as Streamlit Markdown."""
    if answer.status == "pending_review":
        return ":orange-badge[:material/hourglass_top: waiting for review]"
    if answer.status == "rejected":
        return ":red-badge[:material/block: rejected]"
    if answer.status == "unreachable":
        return ":red-badge[:material/cloud_off: no model could be reached]"
    label, color, icon = ROUTES[route_of(answer) or "small"]
    return f":{color}-badge[{icon} {label}]"


def verifier_line(answer: api.Answer) -> str:
    """The final verification's score against its threshold, as a badge: `verifier 0.95 ≥ 0.60`."""
    if route_of(answer) == "cache":  # only verified answers are cached
        return ":gray-badge[verified when first answered]"
    if (answer.review or {}).get("action") == "edit":  # earlier checks judged the models, not this
        return ":gray-badge[the reviewer's own answer]"
    if not answer.verifications:
        return ":gray-badge[not verified]"
    last = answer.verifications[-1]
    sign, color = ("≥", "green") if last["passed"] else ("<", "red")
    return f":{color}-badge[verifier {last['score']:.2f} {sign} {last['threshold']:.2f}]"


def readiness_lines(readiness: api.Readiness) -> list[str]:
    """One warning per tier that cannot answer (and for a database that does not answer): the
    models, where they were looked for, why, and the fix, as the doctor words them."""
    lines = []
    for tier in readiness.tiers:
        if tier.can_answer:
            continue
        models = "; ".join(f"`{m.spec}` ({m.found})" for m in tier.models)
        fixes = "; ".join(dict.fromkeys(m.fix for m in tier.models if m.fix))
        what = "cannot be reached" if all(m.unreachable for m in tier.models) else "cannot answer now"
        lines.append(
            f"**The {tier.tier} tier {what}**: {models}."
            + (f" Fix: {fixes}." if fixes else "")
            + " Run `hybrid doctor` to check the whole configuration."
        )
    database = readiness.database
    if database.status == "failed":
        lines.append(
            f"**The database does not answer**: {database.name}: {database.found}. Fix: {database.fix}."
        )
    return lines


def render_readiness_banner(overrides: dict[str, Any]) -> None:
    """A banner for each tier that cannot answer with the conversation's settings (cheap: cached probes)."""
    try:
        readiness = api.readiness(profile=overrides.get("profile"))
    except Exception as exc:  # the page still works; the question will say what is wrong
        st.warning(f"Could not check the models: {type(exc).__name__}: {exc}", icon=":material/help:")
        return
    for line in readiness_lines(readiness):
        st.error(line, icon=":material/cloud_off:")


def money(value: float) -> str:
    """A cost with three significant digits, never in scientific notation (small models cost
    fractions of a cent)."""
    if value == 0:
        return "$0"
    sign = "-" if value < 0 else ""
    digits = max(2, 2 - math.floor(math.log10(abs(value))))
    return f"{sign}${abs(value):.{digits}f}"


def plain(text: str, limit: int = 600) -> str:
    """A passage shown as running text: Markdown escaped, lines joined, cut at `limit` characters."""
    flat = " ".join(text.split())
    flat = flat[:limit] + ("…" if len(flat) > limit else "")
    return re.sub(r"([\\`*_{}\[\]()#+\-!|<>~$])", r"\\\1", flat)


def seconds(ms: float) -> str:
    return f"{ms / 1000:.1f} s" if ms >= 1000 else f"{ms:.0f} ms"


def usage_line(answer: api.Answer) -> str:
    """Latency, tokens and estimated cost of an answer (with the saving against the large model)."""
    tokens = sum(u["input_tokens"] + u["output_tokens"] for u in answer.usage.values())
    parts = [
        f":material/timer: {seconds(sum(answer.timings_ms.values()))}",
        f":material/token: {tokens} tokens",
        f":material/payments: cost {money(answer.total_cost)}",
    ]
    if answer.large_only_cost and answer.saved >= 0:
        parts.append(f"saved {money(answer.saved)} against the large model alone")
    elif answer.large_only_cost:
        parts.append(f"{money(-answer.saved)} more than the large model alone")
    return " · ".join(parts)


def replaced_drafts(answer: api.Answer) -> list[tuple[dict[str, Any], dict[str, Any] | None]]:
    """Drafts that are not the final answer, each with its verification (if it got one)."""
    final = max(
        (
            i
            for i, d in enumerate(answer.drafts)
            if answer.status == "answered" and d["model"] == answer.answered_by
        ),
        default=None,
    )
    return [
        (draft, answer.verifications[i] if i < len(answer.verifications) else None)
        for i, draft in enumerate(answer.drafts)
        if i != final
    ]


def problem(check: dict[str, Any] | None, draft: dict[str, Any]) -> str:
    """Why a draft was not good enough, in a few words."""
    if draft.get("error"):
        return f"the model failed: {draft['error']}"
    if check is None:
        return "not verified"
    reason = check["reasons"][1] if len(check["reasons"]) > 1 else "low score"
    return f"failed verification ({check['score']:.2f} < {check['threshold']:.2f}): {reason}"


def render_sources(hits: list[dict[str, Any]], *, expanded: bool = False) -> None:
    """The passages an answer was given, each with its file and score."""
    if not hits:
        return
    with st.expander(f"Sources ({len(hits)})", icon=":material/description:", expanded=expanded):
        for hit in hits:
            meta = hit.get("metadata") or {}
            where = Path(hit["source"]).name + (f" · {meta['section']}" if meta.get("section") else "")
            st.markdown(f"**{where}** · similarity {hit['similarity']:.2f}")
            st.caption(plain(hit["text"]))
            st.caption(f"`{hit['source']}`")


def render_answer(answer: api.Answer, shown: list[str] | None = None) -> None:
    """One assistant turn: the answer, its route badge and reason, score, sources, latency and cost.

    `shown`: what the live view showed while this answer was made (`ui.streaming.LiveAnswer.shown`),
    kept hidden beside the badges; in a line of its own it would add a gap to the message."""
    if answer.status == "answered":
        st.markdown(answer.answer or "")
    elif answer.status == "pending_review":
        why = (answer.pending_review or {}).get("why", "")
        st.markdown(f"Waiting for a reviewer ({why})." if why else "Waiting for a reviewer.")
    elif answer.status == "unreachable":
        st.markdown("No model could be reached, so this question was not answered (see `hybrid doctor`).")
    else:
        reason = (answer.review or {}).get("reason")
        st.markdown("A reviewer declined to answer this question." + (f" Reason: {reason}" if reason else ""))
    if shown is None:
        st.markdown(f"{badge(answer)} {verifier_line(answer)}")
    else:
        st.markdown(f"{badge(answer)} {verifier_line(answer)}{shown_marker(shown)}", unsafe_allow_html=True)
    st.caption(answer.explanation)
    st.caption(usage_line(answer))
    kind = "Replaced draft" if answer.status == "answered" else "Draft"
    for draft, check in replaced_drafts(answer):
        label = f"{kind} of the {draft['tier']} model ({draft['model']})"
        with st.expander(label, icon=":material/history:"):
            st.caption(problem(check, draft))
            if draft["text"]:
                st.markdown(f"~~{draft['text']}~~" if answer.status == "answered" else draft["text"])
    render_sources((answer.retrieval or {}).get("hits") or [])
