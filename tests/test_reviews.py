"""The review queue: no case lost, each resolved exactly once, deadlines, audit, feedback.

The behaviours run on SQLite and on a real PostgreSQL server (`database` fixture)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from hybrid import api, audit
from hybrid.errors import ReviewError
from hybrid.feedback import labelled_examples
from hybrid.settings import resolve_settings
from tests.conftest import REPO
from tests.fakes import FakeModels


@pytest.fixture(
    params=[
        pytest.param("sqlite", marks=pytest.mark.integration),
        pytest.param("postgres", marks=pytest.mark.e2e),  # a PostgreSQL server: the e2e tier
    ]
)
def database(request: pytest.FixtureRequest) -> str:
    """Run the test against the default SQLite database and against PostgreSQL. Each run carries
    its tier from here, so the tests that take this fixture carry none of their own."""
    if request.param == "postgres":
        request.getfixturevalue("postgres")
    return request.param


def pending_case(fakes: FakeModels, question: str = "What is 17 * 23?") -> api.Answer:
    """A case both models failed: small says 381, large says 17."""
    fakes.set("small", "381")
    fakes.set("large", "17")
    answer = api.ask(question, route_threshold=1.0)
    assert answer.status == "pending_review"
    return answer


def events(kind: str, thread_id: str | None = None) -> list[dict]:
    return [e for e in audit.events(resolve_settings(), thread_id=thread_id) if e["event"] == kind]


def test_two_reviewers_at_once_resolve_a_case_exactly_once(fakes: FakeModels, database: str) -> None:
    fakes.set("small", "I think it is Lyon.")
    calls = {"large": 0}
    refused = threading.Event()

    def held_large(messages):
        calls["large"] += 1
        refused.wait(timeout=60)  # the first resolution stays in flight until the second is refused
        return "Paris is the capital of France."

    fakes.set("large", held_large)
    pending = api.ask("What is the capital of France?", force_route="human")
    barrier = threading.Barrier(2)
    outcomes: dict[str, object] = {}

    def review(name: str) -> None:
        barrier.wait()
        try:
            outcomes[name] = api.resume(pending.thread_id, {"action": "escalate", "reviewer": name})
        except ReviewError as exc:
            outcomes[name] = exc
            refused.set()

    threads = [threading.Thread(target=review, args=(name,)) for name in ("ana", "bo")]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    winners = [name for name, result in outcomes.items() if isinstance(result, api.Answer)]
    losers = [result for result in outcomes.values() if isinstance(result, ReviewError)]
    assert len(winners) == 1
    assert len(losers) == 1
    assert f"by {winners[0]}" in str(losers[0])
    assert calls["large"] == 1  # the resumed graph ran once
    assert len(events("review_resolved", pending.thread_id)) == 1
    final = api.answer_for(pending.thread_id)
    assert final.answer == "Paris is the capital of France."
    assert final.review is not None
    assert final.review["reviewer"] == winners[0]


@pytest.mark.integration
def test_a_killed_process_loses_no_pending_case(isolated: Path) -> None:
    """kill -9 a process that has opened cases and is in the middle of another; all are there after."""
    api.ingest([REPO / "data" / "knowledge"])
    api.reset()  # release the embedded store for the child
    script = (
        "import time\n"
        "from hybrid import api\n"
        "from hybrid.models import register_provider\n"
        "from tests.fakes import FakeModels\n"
        "fakes = FakeModels()\n"
        "register_provider('fake', fakes.build)\n"
        "fakes.set('small', 'A draft about port 2025.')\n"
        "fakes.set('large', lambda m: print('in the large model', flush=True) or time.sleep(600) or 'x')\n"
        "for i in range(3):\n"
        "    api.ask(f'Case {i}: which port does hybrid dev use?', force_route='human', retrieval='always')\n"
        "print('opened', flush=True)\n"
        "api.ask('What is 17 * 23?')\n"  # hangs in the large model: killed mid-question
    )
    env = {**os.environ, "HYBRID_SMALL_MODEL": "fake:small", "HYBRID_LARGE_MODEL": "fake:large"}
    child = subprocess.Popen(
        [sys.executable, "-c", script], cwd=REPO, env=env, stdout=subprocess.PIPE, text=True
    )
    assert child.stdout is not None
    assert child.stdout.readline().strip() == "opened"
    assert child.stdout.readline().strip() == "in the large model"  # mid-question, now
    child.send_signal(signal.SIGKILL)
    child.wait(timeout=30)

    pending = api.pending_reviews()

    assert [p.request["question"] for p in pending] == [
        f"Case {i}: which port does hybrid dev use?" for i in range(3)
    ]
    for case in pending:
        assert case.request["drafts"][0]["text"] == "A draft about port 2025."
        assert case.request["why"] == "route forced to human review"
        assert case.request["verifications"][0]["reasons"]
        assert any(Path(h["source"]).name == "interfaces.md" for h in case.request["hits"])
    for case in pending:
        assert api.resume(case.thread_id, {"action": "approve", "reviewer": "ana"}).status == "answered"
    assert api.pending_reviews() == []


def test_reviewer_escalation_goes_to_the_large_model_and_back_to_review_if_it_fails(
    fakes: FakeModels, database: str
) -> None:
    fakes.set("small", "I think it is Lyon.")
    fakes.set("large", "I don't know.")
    pending = api.ask("What is the capital of France?", force_route="human")
    assert pending.pending_review is not None
    assert pending.pending_review["actions"] == ["approve", "edit", "reject", "escalate"]

    again = api.resume(pending.thread_id, {"action": "escalate", "reviewer": "ana"})

    assert again.status == "pending_review"
    assert again.pending_review is not None
    assert again.pending_review["case_id"].endswith(":1:1")  # second round of the same turn
    assert again.pending_review["actions"] == ["approve", "edit", "reject"]  # large already tried
    assert [d["tier"] for d in again.pending_review["drafts"]] == ["small", "large"]
    final = api.resume(pending.thread_id, {"action": "edit", "answer": "Paris.", "reviewer": "bo"})
    assert final.answer == "Paris."
    assert api.pending_reviews() == []


def test_overdue_cases_are_resolved_by_the_fallback_and_audited(
    fakes: FakeModels, database: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_REVIEW_TIMEOUT_S", "60")
    first = pending_case(fakes)
    later = datetime.now(UTC) + timedelta(seconds=30)
    assert api.expire_reviews(now=later) == []  # not overdue yet

    expired = api.expire_reviews(now=later + timedelta(seconds=60))

    assert [a.thread_id for a in expired] == [first.thread_id]
    assert expired[0].status == "rejected"
    assert expired[0].review is not None
    assert expired[0].review["reason"] == "No reviewer answered in time."
    assert expired[0].review["reviewer"] == "system:deadline"
    assert len(events("review_expired", first.thread_id)) == 1
    assert api.pending_reviews() == []


@pytest.mark.integration
def test_overdue_cases_can_fall_back_to_the_large_model(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_REVIEW_FALLBACK", "escalate")
    fakes.set("small", "I think it is Lyon.")
    fakes.set("large", "Paris is the capital of France.")
    pending = api.ask("What is the capital of France?", force_route="small", small_accept_threshold=1.01)
    pending = api.ask("What is the capital of Italy?", force_route="human")

    expired = api.expire_reviews(now=datetime.now(UTC) + timedelta(days=2))

    assert [a.thread_id for a in expired] == [pending.thread_id]
    assert expired[0].answered_by == "fake:large"


def test_the_asker_finds_the_outcome_on_the_thread(fakes: FakeModels, database: str) -> None:
    pending = pending_case(fakes)
    assert api.answer_for(pending.thread_id).status == "pending_review"
    api.resume(pending.thread_id, {"action": "edit", "answer": "391", "reviewer": "ana"})
    assert api.answer_for(pending.thread_id).answer == "391"


def test_every_decision_is_in_the_audit_log_and_exports(fakes: FakeModels, database: str) -> None:
    fakes.set("small", "The capital of France is Paris.")
    answered = api.ask("What is the capital of France?")
    pending = pending_case(fakes)
    api.resume(pending.thread_id, {"action": "edit", "answer": "391", "reviewer": "ana"})

    answered_event = events("answered", answered.thread_id)[0]
    assert answered_event["trace_id"] == answered.trace_id
    assert answered_event["data"]["answered_by"] == "fake:small"
    assert answered_event["data"]["route"]["reasons"]
    assert answered_event["data"]["verifications"][0]["score"] == 1.0
    assert answered_event["data"]["drafts"][0]["model_version"] == "fake:small"
    kinds = [e["event"] for e in audit.events(resolve_settings(), thread_id=pending.thread_id)]
    assert kinds == ["review_requested", "review_resolved", "answered"]
    resolved = events("review_resolved", pending.thread_id)[0]
    assert (resolved["actor"], resolved["data"]["answer"]) == ("ana", "391")

    lines = [json.loads(line) for line in "".join(api.audit_export()).splitlines()]
    assert {line["event"] for line in lines} == {"answered", "review_requested", "review_resolved"}
    csv_text = "".join(api.audit_export(fmt="csv"))
    assert csv_text.splitlines()[0] == "id,at,event,trace_id,thread_id,case_id,actor,data"
    assert len(csv_text.splitlines()) == len(lines) + 1
    future = datetime.now(UTC) + timedelta(hours=1)
    assert "".join(api.audit_export(since=future)) == ""


def test_feedback_and_verdicts_become_labelled_examples(fakes: FakeModels, database: str) -> None:
    fakes.set("small", "The capital of France is Paris.")
    good = api.ask("What is the capital of France?")
    api.feedback(good.thread_id, "up")
    fakes.set("small", "The capital of Spain is Lisbon.")
    bad = api.ask("What is the capital of Spain?")
    api.feedback(bad.thread_id, "down", comment="wrong city")
    pending = pending_case(fakes)
    api.resume(pending.thread_id, {"action": "reject", "reviewer": "ana"})

    examples = labelled_examples(resolve_settings())

    assert [(e["query"], e["label"], e["source"]) for e in examples] == [
        ("What is the capital of France?", 1, "user"),
        ("What is the capital of Spain?", 0, "user"),
        ("What is 17 * 23?", 0, "reviewer"),
    ]
    with pytest.raises(ReviewError, match="no answer to rate"):
        api.feedback(pending_case(fakes, "What is 18 * 23?").thread_id, "up")


@pytest.mark.integration
def test_a_failed_resolution_gives_the_case_back(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> None:
    fakes.set("small", "Lyon.")
    fakes.set("large", RuntimeError("unused"))
    pending = api.ask("What is the capital of France?", force_route="human")
    original = api._graph

    class Exploding:
        def __init__(self, graph):
            self.graph = graph

        def __getattr__(self, name):
            return getattr(self.graph, name)

        def invoke(self, *args, **kwargs):
            raise ConnectionError("database went away")

    monkeypatch.setattr(api, "_graph", lambda settings: Exploding(original(settings)))
    with pytest.raises(ConnectionError):
        api.resume(pending.thread_id, {"action": "approve", "reviewer": "ana"})
    monkeypatch.setattr(api, "_graph", original)

    assert [p.thread_id for p in api.pending_reviews()] == [pending.thread_id]
    assert api.resume(pending.thread_id, {"action": "approve", "reviewer": "bo"}).status == "answered"


@pytest.mark.integration
def test_a_claim_abandoned_by_a_dead_process_expires(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid import reviews

    pending = pending_case(fakes)
    settings = resolve_settings()
    case = reviews.latest_case(settings, pending.thread_id)
    assert case is not None
    reviews.claim(settings, case.case_id, reviewer="ghost", decision={"action": "approve"})  # then "dies"

    with pytest.raises(ReviewError, match=r"being resolved .* by ghost"):
        api.resume(pending.thread_id, {"action": "edit", "answer": "391", "reviewer": "ana"})
    assert api.pending_reviews()[0].claimed_by == "ghost"

    monkeypatch.setenv("HYBRID_REVIEW_CLAIM_LEASE_S", "0.001")
    time.sleep(0.01)  # longer than the 1 ms lease on any machine: the claim has lapsed
    assert (
        api.resume(pending.thread_id, {"action": "edit", "answer": "391", "reviewer": "ana"}).answer == "391"
    )
