"""Hybrid AI: answer every query with the cheapest model that can answer it well.

The public API lives in `hybrid.api` and is re-exported here on first use (importing `hybrid`
itself loads nothing heavy).
"""

from __future__ import annotations

from typing import Any

__all__ = [
    "Answer",
    "ReviewDecision",
    "answer_for",
    "ask",
    "ingest",
    "pending_reviews",
    "prepare",
    "resume",
    "search",
    "stream",
]


def __getattr__(name: str) -> Any:
    if name in __all__:
        from hybrid import api

        return getattr(api, name)
    raise AttributeError(f"module 'hybrid' has no attribute {name!r}")
