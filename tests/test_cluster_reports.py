"""The bookkeeping of `hybrid eval chaos` and `soak`: what each response counts as, which fault a
request belongs to, and the figures a soak's samples give. Synthetic responses and samples; the
real runs are in tests/test_cluster_e2e.py."""

from __future__ import annotations

import json

import httpx
import pytest

from hybrid.evals.cluster_load import Outcome, classify, count

pytestmark = pytest.mark.unit


def response(status: int, body: object = None, text: str | None = None) -> httpx.Response:
    if text is None:
        return httpx.Response(status, json=body)
    return httpx.Response(status, text=text)


def completion(status: str = "answered") -> dict:
    return {
        "choices": [{"message": {"content": "Paris."}}],
        "hybrid": {"thread_id": "t1", "status": status},
    }


def sse(*chunks: object, done: bool = True) -> str:
    lines = [f"data: {json.dumps(c)}\n\n" for c in chunks]
    return "".join(lines) + ("data: [DONE]\n\n" if done else "")


def error(message: str, kind: str = "server_error") -> dict:
    return {"error": {"message": message, "type": kind}}


ANSWERED_CHUNK = {
    "choices": [{"delta": {"content": "Paris."}}],
    "hybrid": {"status": "answered", "thread_id": "t"},
}
CASES = [
    (response(200, completion()), False, "answered"),
    (response(202, completion("pending_review")), False, "pending"),
    (response(503, error("the database cannot be reached right now")), False, "refused"),
    (response(429, error("at capacity", "rate_limit_error")), False, "refused"),
    # HAProxy's own page: no clear error for the client; the audit log decides later.
    (response(502, text="<html><body><h1>502 Bad Gateway</h1></body></html>"), False, "unclear"),
    (response(200, text=sse(ANSWERED_CHUNK)), True, "answered"),
    (response(200, text=sse({"choices": [{"delta": {"content": "Par"}}]}, done=False)), True, "unclear"),
    (response(200, text=sse(error("model failed"))), True, "refused"),
]


@pytest.mark.parametrize(("given", "stream", "outcome"), CASES)
def test_each_response_counts_as_one_outcome(given: httpx.Response, stream: bool, outcome: str) -> None:
    result = Outcome(n=1, kind="ask", tag="c1", sent=0.0)
    classify(result, given, stream)
    assert result.outcome == outcome


def test_a_fault_owns_the_requests_in_flight_when_it_began_and_5xx_outside_every_fault_are_counted() -> None:
    from hybrid.evals.chaos import FaultRun, _report

    run = FaultRun("replica", "kill -9 one replica", started=100.0, ended=100.1, recovered=110.0)
    outcomes = [
        Outcome(
            n=1, kind="ask", tag="c1", sent=90.0, done=105.0, status=200, outcome="answered"
        ),  # in flight
        Outcome(n=2, kind="ask", tag="c2", sent=101.0, done=130.0, status=200, outcome="answered"),
        Outcome(n=3, kind="ask", tag="c3", sent=50.0, done=51.0, status=503, outcome="refused"),  # outside
        Outcome(
            n=4, kind="ask", tag="c4", sent=115.0, done=116.0, status=502, outcome="lost"
        ),  # in the window
        Outcome(n=5, kind="ask", tag="c5", sent=200.0, done=260.0, outcome="hung"),
    ]
    report = _report([run], outcomes, {"replica-1": 1}, {"replicas": 2, "concurrency": 1, "seconds": 300})

    fault = report["faults"][0]
    assert (fault["sent"], fault["answered"], fault["lost"]) == (3, 2, 1)
    assert fault["recovery_s"] == 9.9
    assert report["errors_5xx_outside_faults"] == 1
    assert report["totals"] == count(outcomes)
    assert report["targets"] == {
        "lost": False,
        "hung": False,
        "recovery_within_15s": True,
        "no_5xx_outside_faults": False,
        "review_cases_resolved_elsewhere": False,
    }


def test_soak_figures_measure_from_the_end_of_the_warm_up() -> None:
    from hybrid.evals.soak import TARGETS, check, figures

    def point(t: float, rss: float, fds: int, conns: int, warmup: bool) -> dict:
        replica = {"rss_mb": rss, "fds": fds, "db_connections": conns}
        return {
            "t_s": t,
            "requests": 10,
            "errors": 0,
            "p50_s": 1.0,
            "warmup": warmup,
            "replicas": {"replica-1": replica},
        }

    samples = [point(60, 400, 30, 2, True), point(120, 420, 31, 3, True), point(180, 430, 31, 3, False),
               point(240, 480, 32, 3, False)]  # fmt: skip
    # Requests every 5 s for 300 s; from 255 s on they take 1.5 s instead of 1.
    outcomes = [
        Outcome(n=n, kind="ask", tag=f"c{n}", sent=n, done=n + 1.0, outcome="answered", latency_s=1.0)
        for n in range(0, 300, 5)
    ]
    for late in outcomes[51:]:
        late.latency_s = 1.5
    report = figures(samples, outcomes, 120.0, {"replica-1": 0}, minutes=2, warmup_minutes=2)

    replica = report["replicas"]["replica-1"]
    assert (replica["rss_mb_start"], replica["rss_mb_end"], replica["rss_growth_mb"]) == (420, 480, 60)
    assert (replica["fds_start"], replica["fds_end"], replica["connections_range"]) == (31, 32, [3, 3])
    assert report["p50_drift"] == 0.5  # 1.0 s in the first third, 1.5 s in the last
    assert report["errors"] == 0
    assert check(report, TARGETS) == {
        "rss_growth": False,  # 60 MB > 50
        "fds_flat": True,
        "connections_flat": True,
        "p50_drift": False,
        "no_errors": True,
        "no_restarts": True,
    }
