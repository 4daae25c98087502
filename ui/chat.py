"""Chat: ask, watch the draft being written and verified, and see why the answer went where it went.

The open conversation is in the URL (`?thread=…`), with this conversation's overrides, so a
reload or a shared link reopens it; the sidebar lists recent conversations from the database.
"""

from __future__ import annotations

from typing import Any

import streamlit as st

from hybrid import api
from hybrid.errors import ConversationNotFound, Forbidden, HybridError
from ui.components import api_key, render_answer, render_readiness_banner
from ui.streaming import LiveAnswer

POLL_SECONDS = 3
STATUS_ICONS = {
    "small": ":material/bolt:",
    "large": ":material/psychology:",
    "human": ":material/person:",
    "cache": ":material/cached:",
    "rejected": ":material/block:",
    "pending": ":material/hourglass_top:",
    "unreachable": ":material/cloud_off:",
}
OVERRIDE_KEYS = ("profile", "route", "retrieval")

state = st.session_state
state.setdefault("turns", {})  # thread id → its answers, loaded once per session
state.setdefault("overrides_of", {})  # thread id → the sidebar's overrides for it
state.setdefault("shown_live", {})  # trace id → what the live view showed while it was answered
choices = api.run_choices()


def open_conversation(thread_id: str | None) -> None:
    """Switch conversations, keeping each one's overrides (a callback: runs before the widgets)."""
    current = st.query_params.get("thread")
    if current:
        state.overrides_of[current] = {key: state[key] for key in OVERRIDE_KEYS if key in state}
    # Set, not cleared: the widgets are bound to the URL and would take the old values back from it.
    defaults = {
        "profile": choices.profile,
        "route": choices.force_route or "auto",
        "retrieval": choices.retrieval != "never",
    }
    state.update(defaults | state.overrides_of.get(thread_id or "", {}))
    if thread_id:
        st.query_params["thread"] = thread_id
    else:
        st.query_params.pop("thread", None)


def rate(thread_id: str, trace_id: str, key: str) -> None:
    """Record a thumbs up (1) or down (0) given with `st.feedback`."""
    value = state[key]
    if value is None:
        return
    try:
        api.rate(thread_id, trace_id, "up" if value == 1 else "down", key=api_key())
    except HybridError as exc:
        st.toast(str(exc), icon=":material/error:")
    else:
        st.toast("Thanks, your rating is recorded.", icon=":material/thumb_up:")


def sidebar() -> dict[str, Any]:
    """Conversations to reopen and this conversation's overrides; returns the overrides to pass."""
    thread = st.query_params.get("thread")
    with st.sidebar:
        st.button(
            "New conversation",
            icon=":material/add:",
            on_click=open_conversation,
            args=(None,),
            width="stretch",
        )
        with st.expander("This conversation", icon=":material/tune:", expanded=True):
            profiles = list(choices.profiles)
            profile = st.selectbox(
                "Model profile",
                profiles,
                index=profiles.index(choices.profile),
                key="profile",
                bind="query-params",
                help="Which small and large models answer: "
                + "; ".join(f"{n}: {p['small'][0]} / {p['large'][0]}" for n, p in choices.profiles.items()),
            )
            routes = ["auto", *choices.routes]
            route = st.selectbox(
                "Route",
                routes,
                index=routes.index(choices.force_route or "auto"),
                key="route",
                bind="query-params",  # the URL holds raw values: no format_func
                help="auto: the router decides. small, large or human: force that route.",
            )
            default_retrieval = choices.retrieval != "never"
            retrieval = st.toggle(
                "Use the knowledge base",
                value=default_retrieval,
                key="retrieval",
                bind="query-params",
                help="Off: never search it. On: the configured mode "
                f"({choices.retrieval if default_retrieval else 'auto'}).",
            )
        st.subheader("Conversations")
        for conversation in api.conversations(limit=30, key=api_key()):
            title = conversation.title if len(conversation.title) <= 40 else conversation.title[:39] + "…"
            st.button(
                title,
                key=f"open-{conversation.thread_id}",
                icon=STATUS_ICONS[conversation.status],
                on_click=open_conversation,
                args=(conversation.thread_id,),
                type="secondary" if conversation.thread_id == thread else "tertiary",
                help=f"{conversation.turns} turn(s), last {conversation.updated_at:%Y-%m-%d %H:%M} UTC",
            )
    return {
        "profile": profile if profile != choices.profile else None,
        "force_route": None if route == (choices.force_route or "auto") else route,
        "retrieval": None if retrieval == default_retrieval else ("auto" if retrieval else "never"),
    }


@st.fragment(run_every=POLL_SECONDS)
def watch_review(thread_id: str, trace_id: str | None) -> None:
    """While the latest answer waits for a reviewer, look again every few seconds."""
    latest = api.answer_for(thread_id, key=api_key())
    if latest.status != "pending_review" or latest.trace_id != trace_id:
        state.turns.pop(thread_id, None)  # reload the conversation with its verdict
        st.rerun()
    st.caption(
        f":material/hourglass_top: A reviewer has this question (Review page). "
        f"This page looks again every {POLL_SECONDS} seconds."
    )


def history(thread_id: str) -> list[api.Answer]:
    """The conversation's answers so far, shown as chat turns."""
    if thread_id not in state.turns:
        state.turns[thread_id] = api.conversation(thread_id, key=api_key())
    answers = state.turns[thread_id]
    ratings = api.ratings(thread_id, key=api_key())
    for answer in answers:
        with st.chat_message("user"):
            st.markdown(answer.question)
        with st.chat_message("assistant"):
            render_answer(answer, shown=state.shown_live.get(answer.trace_id))
            if answer.status == "answered" and answer.trace_id:
                key = f"rate-{answer.trace_id}"
                st.feedback(
                    "thumbs",
                    key=key,
                    default={"down": 0, "up": 1}.get(ratings.get(answer.trace_id, "")),
                    on_change=rate,
                    args=(thread_id, answer.trace_id, key),
                )
    return answers


def ask(question: str, thread_id: str | None, overrides: dict[str, Any]) -> None:
    """Stream one answer into the page, then reload the page with it in the history."""
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        live, placeholder = LiveAnswer(), st.empty()
        with placeholder.container():
            live.render()
        try:
            for event in api.stream(question, thread_id=thread_id, key=api_key(), **overrides):
                live.feed(event)
                with placeholder.container():
                    live.render()
        except HybridError as exc:
            placeholder.empty()
            st.error(str(exc))
            return
    answer = live.answer
    assert answer is not None  # api.stream always ends with the answer
    state.shown_live[answer.trace_id] = live.shown
    state.turns.setdefault(answer.thread_id, []).append(answer)
    if thread_id != answer.thread_id:
        st.query_params["thread"] = answer.thread_id
    st.rerun()


overrides = sidebar()
st.title("Hybrid AI")
render_readiness_banner(overrides)
thread = st.query_params.get("thread")
answers: list[api.Answer] = []
if thread:
    try:
        answers = history(thread)
    except (ConversationNotFound, Forbidden):
        st.warning(f"There is no conversation {thread} for you here; starting a new one.")
        st.query_params.pop("thread", None)
        thread = None
if not answers:
    st.caption(
        "Ask anything. A small model answers first and a verifier checks it; a large model or a "
        "person steps in when it falls short. Every answer says which, and why."
    )
waiting = bool(answers) and answers[-1].status == "pending_review"
if waiting and thread:
    watch_review(thread, answers[-1].trace_id)
question = st.chat_input(
    "A reviewer has the last question; wait for the verdict or start a new conversation"
    if waiting
    else "Ask a question",
    disabled=waiting,
)
if question:
    ask(question, thread, {k: v for k, v in overrides.items() if v is not None})
