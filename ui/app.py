"""Hybrid AI in the browser: chat, the review queue, the knowledge base and a dashboard.

Run with `hybrid ui`. One page per file next to this one; every page talks only to the Python
API façade (`hybrid.api`): none builds a model or reads an environment variable itself.
"""

from __future__ import annotations

import streamlit as st

st.set_page_config(page_title="Hybrid AI", page_icon=":material/alt_route:")
page = st.navigation(
    [
        st.Page("chat.py", title="Chat", icon=":material/chat:", default=True),
        st.Page("review.py", title="Review", icon=":material/rate_review:"),
        st.Page("knowledge.py", title="Knowledge", icon=":material/library_books:"),
        st.Page("dashboard.py", title="Dashboard", icon=":material/monitoring:"),
    ]
)
page.run()
