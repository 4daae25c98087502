"""Hybrid AI in the browser: chat, the review queue, the knowledge base and a dashboard.

Run with `hybrid ui`. One page per file next to this one; every page talks only to the Python
API façade (`hybrid.api`): none builds a model or reads an environment variable itself. When API
keys are configured (`HYBRID_API_KEYS`, or a policy file's tenants), the app asks for one first,
and every page shows and changes only what that key may see.
"""

from __future__ import annotations

import streamlit as st

from hybrid import api
from hybrid.errors import HybridError

st.set_page_config(page_title="Hybrid AI", page_icon=":material/alt_route:")
state = st.session_state


def sign_in() -> None:
    """Check the key typed in (a callback: the pages are drawn after it)."""
    key = state.get("key_input", "").strip()
    try:
        who = api.caller(key)
    except HybridError as exc:
        state.sign_in_error = str(exc)
        return
    state.api_key, state.signed_in_as = key, who.describe()
    state.pop("sign_in_error", None)


def sign_out() -> None:
    for name in ("api_key", "signed_in_as", "key_input"):
        state.pop(name, None)


signed_in = "api_key" in state or not api.keys_required()
# Navigation first, even before signing in, so the page asked for (`/review`) is the one shown after.
page = st.navigation(
    [
        st.Page("chat.py", title="Chat", icon=":material/chat:", default=True),
        st.Page("review.py", title="Review", icon=":material/rate_review:"),
        st.Page("knowledge.py", title="Knowledge", icon=":material/library_books:"),
        st.Page("dashboard.py", title="Dashboard", icon=":material/monitoring:"),
    ],
    position="sidebar" if signed_in else "hidden",
)
if not signed_in:
    st.title("Hybrid AI")
    with st.form("sign-in"):
        st.text_input("API key", type="password", key="key_input", placeholder="hy-…")
        st.form_submit_button("Sign in", icon=":material/key:", on_click=sign_in, type="primary")
    if "sign_in_error" in state:
        st.error(state.sign_in_error)
    st.caption("This service needs an API key: your tenant's, or an admin's.")
    st.stop()
if "api_key" in state:
    with st.sidebar:
        st.caption(f":material/key: Signed in as {state.signed_in_as}")
        st.button("Sign out", icon=":material/logout:", on_click=sign_out, key="sign-out")
page.run()
