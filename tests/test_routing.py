"""The pure edge functions that map recorded decisions to the next node."""

from __future__ import annotations

from typing import Any

import pytest

from graphs import edges

pytestmark = pytest.mark.unit


def state(
    route: str = "small", *, forced: bool = False, allowed=("small", "large"), needs_kb=False, **kw: Any
):
    values: dict[str, Any] = {
        "route": {"route": route, "forced": forced, "allowed_tiers": list(allowed), "needs_kb": needs_kb},
        "drafts": [],
        "verifications": [],
    }
    for tier, passed, text, error in kw.get("turns", []):
        values["drafts"].append({"tier": tier, "text": text, "error": error})
        values["verifications"].append({"tier": tier, "passed": passed})
    values["review"] = kw.get("review")
    values["review_round"] = kw.get("review_round", 0)
    return values


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (state("small", needs_kb=True), "retrieve"),
        (state("small"), "answer_small"),
        (state("large"), "escalate"),
        (state("human"), "answer_small"),
        (state("human", allowed=()), "human_review"),
        (state("large", allowed=("small",)), "human_review"),
    ],
)
def test_after_classify(values: dict, expected: str) -> None:
    assert edges.after_classify(values) == expected


@pytest.mark.parametrize(
    ("values", "expected"),
    [
        (state(turns=[("small", True, "Paris", None)]), "accept"),
        (state(turns=[("small", False, "dunno", None)]), "escalate"),
        (state(turns=[("small", False, "dunno", None)], allowed=("small",)), "human_review"),
        (state(turns=[("small", False, "x", None), ("large", False, "y", None)]), "human_review"),
        (state(turns=[("small", False, "x", None), ("large", True, "y", None)]), "accept"),
        (state("small", forced=True, turns=[("small", False, "dunno", None)]), "accept"),
        (state("small", forced=True, turns=[("small", False, "", "boom")]), "escalate"),
        (state("human", forced=True, turns=[("small", True, "Paris", None)]), "human_review"),
        (state("human", forced=True, review_round=1, turns=[("large", True, "Paris", None)]), "accept"),
    ],
)
def test_after_verify(values: dict, expected: str) -> None:
    assert edges.after_verify(values) == expected


def test_after_review() -> None:
    assert edges.after_review(state(review={"action": "approve"})) == "accept"
    assert edges.after_review(state(review={"action": "edit"})) == "accept"
    assert edges.after_review(state(review={"action": "reject"})) == "__end__"
