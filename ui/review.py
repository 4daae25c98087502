"""Review: the cases waiting for a person, with everything needed to decide, and the verdicts.

Each verdict goes through `api.resume`, which resolves a case exactly once: if someone else got
there first, the page says who and when instead of acting twice.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from hybrid import api
from hybrid.errors import HybridError
from ui.components import api_key, problem, render_sources

state = st.session_state
state.setdefault("verdicts", [])  # (kind, message) of verdicts given in this session, newest first


def decide(case: api.PendingReview, action: str) -> None:
    """Resume a case with this page's verdict (a callback: the list below is drawn after it)."""
    key = case.case_id
    decision: dict[str, Any] = {"action": action, "reviewer": state.get("reviewer", "").strip()}
    if action == "edit":
        decision["answer"] = state.get(f"answer-{key}", "")
    if action == "reject":
        decision["reason"] = state.get(f"reason-{key}") or None
    question = case.request["question"]
    try:
        answer = api.resume(case.thread_id, decision, key=api_key())
    except HybridError as exc:
        state.verdicts.insert(0, ("error", f"Could not {action} “{question}”: {exc}"))
        return
    outcome = (
        f"answered: {answer.answer}"
        if answer.status == "answered"
        else "rejected"
        if answer.status == "rejected"
        else "back in the queue: the large model's answer failed verification too"
    )
    state.verdicts.insert(0, ("success", f"“{question}”: {action} → {outcome}"))


def show_drafts(request: dict[str, Any]) -> None:
    """Each model's answer with the verifier's score and reasons."""
    checks = request["verifications"]
    for index, draft in enumerate(request["drafts"]):
        check = checks[index] if index < len(checks) else None
        with st.container(border=True):
            verdict = f":red-badge[{problem(check, draft)}]" if not (check and check["passed"]) else ""
            st.markdown(f"**{draft['tier']} model** `{draft['model']}` {verdict}")
            if draft["text"]:
                st.markdown(draft["text"])
            if check:
                st.caption(" · ".join(check["reasons"]))


def show_case(case: api.PendingReview, reviewer: str) -> None:
    """One case: question, why it is here, drafts, sources, and the verdict buttons."""
    request = case.request
    key = case.case_id
    actions = request["actions"]
    with st.container(border=True, key=f"case-{case.thread_id}"):
        st.markdown(f"#### {request['question']}")
        st.caption(
            f"Why: {request['why']} · asked {case.created_at:%Y-%m-%d %H:%M} UTC · "
            f"due {case.deadline:%Y-%m-%d %H:%M} UTC · conversation `{case.thread_id}`"
        )
        if case.claimed_by:
            st.warning(f"{case.claimed_by} is resolving this case right now.")
        show_drafts(dict(request))
        render_sources(list(request["hits"]))
        st.caption("Router: " + "; ".join(request["route"]["reasons"][:2]))
        disabled = not reviewer
        buttons = st.columns(2)
        if "approve" in actions:
            buttons[0].button(
                "Approve the latest answer",
                key=f"approve-{key}",
                icon=":material/check:",
                on_click=decide,
                args=(case, "approve"),
                disabled=disabled,
                width="stretch",
            )
        if "escalate" in actions:
            buttons[1].button(
                "Escalate to the large model",
                key=f"escalate-{key}",
                icon=":material/trending_up:",
                on_click=decide,
                args=(case, "escalate"),
                disabled=disabled,
                width="stretch",
            )
        edit, reject = st.columns(2)
        with edit.form(f"edit-form-{key}", border=False):
            latest = next((d["text"] for d in reversed(request["drafts"]) if d["text"]), "")
            st.text_area("Your answer", value=latest, key=f"answer-{key}", height=100)
            st.form_submit_button(
                "Answer with this text",
                icon=":material/edit:",
                on_click=decide,
                args=(case, "edit"),
                disabled=disabled,
            )
        with reject.form(f"reject-form-{key}", border=False):
            st.text_input("Reason for rejecting", key=f"reason-{key}")
            st.form_submit_button(
                "Reject", icon=":material/block:", on_click=decide, args=(case, "reject"), disabled=disabled
            )


st.set_page_config(layout="wide")
st.title("Review queue")
reviewer = st.text_input(
    "Your name", key="reviewer", placeholder="who is deciding (recorded in the audit log)"
).strip()
for kind, message in state.verdicts[:5]:
    (st.error if kind == "error" else st.success)(message)
cases = api.pending_reviews(key=api_key())
heading, refresh = st.columns([4, 1])
heading.caption(f"{len(cases)} case(s) waiting, oldest first.")
refresh.button("Refresh", icon=":material/refresh:", width="stretch")
if cases and not reviewer:
    st.info("Enter your name to approve, edit, reject or escalate.")
if not cases:
    st.success("Nothing waiting for a reviewer.", icon=":material/done_all:")
for pending in cases:
    show_case(pending, reviewer)
