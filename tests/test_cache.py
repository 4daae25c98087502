"""The answer cache: exact and near-duplicate reuse, and the cases where reuse would be wrong."""

from __future__ import annotations

from pathlib import Path

import pytest

from hybrid import api
from hybrid.cache import conflict
from tests.fakes import FakeModels


@pytest.fixture
def cached(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> FakeModels:
    monkeypatch.setenv("HYBRID_CACHE", "semantic")
    return fakes


@pytest.mark.integration
def test_the_same_question_is_answered_from_the_cache(cached: FakeModels) -> None:
    cached.set("small", "The capital of France is Paris.")
    first = api.ask("What is the capital of France?")
    calls = len(cached.calls("small"))

    again = api.ask("what is the capital of France")

    assert len(cached.calls("small")) == calls  # no model ran
    assert again.answer == first.answer
    assert again.answered_by == "cache:fake:small"
    assert again.drafts == []
    assert "served from the cache (exact match; first answered by fake:small)" in again.explanation
    assert again.timings_ms.keys() == {"classify", "accept"}


@pytest.mark.integration
def test_a_near_duplicate_is_served_and_says_how_near(cached: FakeModels) -> None:
    cached.set("small", "The capital of France is Paris.")
    api.ask("What is the capital of France?")

    again = api.ask("What's France's capital?")

    assert again.answered_by == "cache:fake:small"
    assert "near-duplicate 0.9" in again.explanation


@pytest.mark.integration
@pytest.mark.parametrize(
    ("first", "second", "why"),
    [
        (
            "How do I enable two-factor authentication?",
            "How do I disable two-factor authentication?",
            "disable",
        ),
        ("What is 17 * 23?", "What is 17 * 24?", "numbers"),
        ("Is Python faster than Java?", "Is Java faster than Python?", "order"),
    ],
)
def test_questions_that_differ_in_meaning_never_share_an_answer(
    cached: FakeModels, first: str, second: str, why: str
) -> None:
    assert why in (conflict(first, second) or "")
    cached.set("small", lambda messages: f"Answer to: {messages[-1].text}")
    cached.set("large", lambda messages: f"Answer to: {messages[-1].text}")
    api.ask(first, small_accept_threshold=0.0, large_accept_threshold=0.0)

    again = api.ask(second, small_accept_threshold=0.0, large_accept_threshold=0.0)

    assert again.answer == f"Answer to: {second}"
    assert not again.answered_by.startswith("cache:")


@pytest.mark.integration
def test_only_verified_answers_are_cached(cached: FakeModels) -> None:
    cached.set("small", "I don't know.")
    api.ask("What is the capital of France?", force_route="small")  # accepted unverified: not cached
    cached.set("small", "The capital of France is Paris.")
    again = api.ask("What is the capital of France?")
    assert again.answered_by == "fake:small"


@pytest.mark.integration
def test_the_conversation_context_is_part_of_the_key(cached: FakeModels) -> None:
    cached.set(
        "small", lambda m: "Berlin." if "Germany" in m[-1].text or "France" not in str(m) else "Paris."
    )
    one = api.ask("What is the capital of Spain?")
    api.ask("And what about Germany?", thread_id=one.thread_id)
    two = api.ask("What is the capital of France?")

    follow_up = api.ask("And what about Germany?", thread_id=two.thread_id)

    assert not follow_up.answered_by.startswith("cache:")  # same words, another conversation


@pytest.mark.integration
def test_ingestion_makes_cached_answers_stale(cached: FakeModels, tmp_path: Path) -> None:
    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "a.md").write_text("# Ports\n\nThe Acme gateway listens on port 8443.")
    api.ingest([docs])
    cached.set("small", "Port 8443.")
    api.ask("Which port does the Acme gateway listen on?")
    assert api.ask("Which port does the Acme gateway listen on?").answered_by == "cache:fake:small"

    (docs / "b.md").write_text("# Ports\n\nSince May the Acme gateway listens on port 9443.")
    api.ingest([docs])
    cached.set("small", "Port 9443.")

    fresh = api.ask("Which port does the Acme gateway listen on?")
    assert fresh.answered_by == "fake:small"
    assert fresh.answer == "Port 9443."


@pytest.mark.integration
def test_forced_routes_bypass_the_cache(cached: FakeModels) -> None:
    cached.set("small", "The capital of France is Paris.")
    cached.set("large", "Paris.")
    api.ask("What is the capital of France?")
    forced = api.ask("What is the capital of France?", force_route="large")
    assert forced.answered_by == "fake:large"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("a", "b", "why"),
    [
        ("Which would shift demand to the right?", "Which would shift demand to the left?", "left, right"),
        ("Why does it not work?", "Why doesn't it work?", None),
        ("What is the capital of France?", "What's the capital of France?", None),
        ("Can I cancel it?", "Can't I cancel it?", "not"),
        ("x " * 400 + "Option A: red", "x " * 400 + "Option A: blue and green and yellow", "long questions"),
    ],
)
def test_the_guard_tells_meaning_from_wording(a: str, b: str, why: str | None) -> None:
    reason = conflict(a, b)
    assert (reason is None) if why is None else (why in (reason or ""))


@pytest.mark.integration
def test_eval_cache_calibrates_on_distinct_questions(tmp_path: Path) -> None:
    import csv
    import json

    from click.testing import CliRunner

    from hybrid.cli import cli

    routellm = tmp_path / "routellm"
    (routellm / "gsm8k").mkdir(parents=True)
    (routellm / "mmlu" / "responses").mkdir(parents=True)
    questions = [f"How many apples does person {n} have after buying {n + 2} more?" for n in range(30)]
    with (routellm / "gsm8k" / "gsm8k_responses.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt"])
        writer.writeheader()
        writer.writerows({"prompt": q} for q in questions)
    with (routellm / "mmlu" / "responses" / "mmlu_x.csv").open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["prompt"])
        writer.writeheader()
        writer.writerow({"prompt": "What is the largest planet?\nA. Mars\nB. Jupiter"})

    result = CliRunner().invoke(cli, ["eval", "cache", "--routellm", str(routellm), "--json"])

    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["questions"] == 31
    assert 0.8 <= report["recommended_threshold"] <= 0.99
    row = report["at_recommended"]
    assert row["false_hit_rate"] <= report["target_false_hit_rate"] or report["recommended_threshold"] == 0.99
    assert all(r["false_hit_rate"] <= r["false_hit_rate_without_guard"] for r in report["thresholds"])
