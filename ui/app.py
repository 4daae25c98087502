"""The Streamlit chat: ask, see the answer and why it went where it went.

Run with `hybrid ui`. The page only talks to the Python API façade: it builds no model and reads
no environment variable itself.
"""

from __future__ import annotations

import streamlit as st

from hybrid import api
from hybrid.errors import HybridError

ROUTE_BADGES = {
    "small": ("small model", "green"),
    "large": ("large model", "blue"),
    "human": ("human", "orange"),
}


def _badge(answer: api.Answer) -> str:
    if answer.status == "pending_review":
        return ":orange-badge[waiting for review]"
    if answer.status == "rejected":
        return ":red-badge[rejected]"
    label, color = ROUTE_BADGES[answer.tier or "small"]
    return f":{color}-badge[{label}]"


def render_answer(answer: api.Answer) -> None:
    """One assistant turn: the answer, its route badge and the one-line reason."""
    if answer.status == "answered":
        st.markdown(answer.answer or "")
    elif answer.status == "pending_review":
        st.markdown(f"Waiting for a reviewer (case `{answer.thread_id}`).")
    else:
        st.markdown("A reviewer declined to answer this question.")
    verifier = f" · verifier {answer.verifications[-1]['score']:.2f}" if answer.verifications else ""
    st.caption(f"{_badge(answer)}{verifier} · {answer.explanation}")


def main() -> None:
    """Render the chat page."""
    st.set_page_config(page_title="Hybrid AI", page_icon=":material/alt_route:")
    st.title("Hybrid AI")
    state = st.session_state
    state.setdefault("turns", [])
    state.setdefault("thread_id", None)

    for question, answer in state.turns:
        with st.chat_message("user"):
            st.markdown(question)
        with st.chat_message("assistant"):
            render_answer(answer)

    question = st.chat_input("Ask a question")
    if not question:
        return
    with st.chat_message("user"):
        st.markdown(question)
    with st.chat_message("assistant"):
        try:
            with st.spinner("Thinking…"):
                answer = api.ask(question, thread_id=state.thread_id)
        except HybridError as exc:
            st.error(str(exc))
            return
        state.thread_id = answer.thread_id
        state.turns.append((question, answer))
        render_answer(answer)


main()
