"""A short fuzzing run (schemathesis) against the real server over HTTP, with and without keys;
`hybrid eval fuzz` is the long one (figures in docs/benchmarks-cluster.md)."""

from __future__ import annotations

import pytest

pytestmark = pytest.mark.integration


def test_generated_requests_get_documented_answers_and_no_model_runs_without_a_key() -> None:
    from hybrid.evals.fuzz import evaluate_fuzz

    report = evaluate_fuzz(240)

    assert report["sent"] >= 216
    assert report["server_errors"] == 0, [p["server_error_samples"] for p in report["phases"]]
    assert report["check_failures"] == 0, [p["check_failure_samples"] for p in report["phases"]]
    assert report["model_calls_without_key"] == 0
    assert report["questions_without_key"] == 0
    assert report["healthy_after"]
    assert set(report["operations"]) == {
        "GET /health", "GET /ready", "GET /metrics", "GET /v1/models", "POST /v1/chat/completions",
        "GET /v1/hybrid/threads/{thread_id}", "GET /v1/hybrid/reviews", "POST /v1/hybrid/reviews/{thread_id}",
        "POST /v1/hybrid/feedback", "GET /v1/hybrid/conversations", "GET /v1/hybrid/audit",
        "GET /v1/hybrid/policy",
    }  # fmt: skip
    keyed = next(p for p in report["phases"] if p["phase"] == "valid key")
    assert keyed["model_calls"] > 0  # the same requests with the key do reach the models
    for phase in report["phases"]:
        if phase["phase"] != "valid key":
            # Without a valid key only /health, /ready and /metrics answer 200.
            assert set(phase["statuses"]) <= {"200", "400", "401"}
