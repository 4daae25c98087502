"""`hybrid eval soak`: a local cluster under steady mixed traffic for a long time, watched for leaks.

Traffic through HAProxy, in a fixed rotation: questions, questions about the knowledge base,
streams, follow-ups in an existing conversation, review cases opened and resolved, and feedback.
Every sample interval (a minute by default) each replica's resident memory and open file
descriptors (its /metrics), its PostgreSQL connections (`pg_stat_activity`, by the application
name each replica's connections carry) and the latency of the requests of that interval are
recorded. After the warm-up, the figures:

- memory growth per replica, from the first sample after the warm-up to the last;
- file descriptors and database connections, first to last, and their range;
- p50 latency of the first third of the measured time against the last third (drift);
- errors: every request that did not end answered or pending (refused, lost, hung).
"""

from __future__ import annotations

import collections
import threading
import time
from typing import Any

import httpx

from hybrid.cluster.plan import ClusterConfig, Plan
from hybrid.evals.cluster_load import (
    Load,
    Log,
    Outcome,
    check_conversations,
    classify,
    cluster_settings,
    count,
    outcome_rows,
    percentile,
    settle_unclear,
    temporary_cluster,
)

DEADLINE_S = 120.0
ROTATION = {3: "follow-up", 7: "follow-up", 13: "follow-up", 9: "review", 17: "review", 19: "feedback"}
TARGETS = {"rss_growth_mb": 50.0, "fds_growth": 5, "connections_growth": 2, "p50_drift": 0.20, "errors": 0}


class MixedTraffic:
    """The soak's own kinds, through `Load`'s extension hook: follow-ups, reviews, feedback.

    Rotation per twenty requests: 3 follow-ups, 2 reviews, 1 feedback; the other fourteen are
    `Load`'s own mix (questions, knowledge questions, streams)."""

    def __init__(self, url: str, recorder: Any) -> None:
        self.url = url
        self.recorder = recorder
        self.answered: collections.deque[str] = collections.deque(maxlen=50)
        # Conversations whose last turn went to a reviewer: the server refuses a new turn there
        # until the review is resolved, as it should, so the traffic does not ask one.
        self.retired: set[str] = set()
        self.lock = threading.Lock()

    def remember(self) -> None:
        with self.recorder.lock:
            recent = [o.thread_id for o in self.recorder.outcomes[-20:] if o.outcome == "answered"]
        with self.lock:
            self.answered.extend(t for t in recent if t and t not in self.answered and t not in self.retired)

    def retire(self, thread: str) -> None:
        with self.lock:
            self.retired.add(thread)
            if thread in self.answered:
                self.answered.remove(thread)

    def thread(self) -> str | None:
        self.remember()
        with self.lock:
            return self.answered[-1] if self.answered else None

    def __call__(self, client: httpx.Client, outcome: Outcome) -> bool:
        kind = ROTATION.get(outcome.n % 20)
        if kind is None:
            return False
        outcome.kind = kind
        try:
            if kind == "follow-up":
                self.follow_up(client, outcome)
            elif kind == "review":
                self.review(client, outcome)
            else:
                self.feedback(client, outcome)
        except httpx.TimeoutException:
            outcome.outcome, outcome.detail = "hung", f"no response within {DEADLINE_S:.0f}s"
        except httpx.HTTPError as exc:
            outcome.outcome, outcome.detail = "unclear", f"{type(exc).__name__}: {exc}"[:200]
        outcome.done = time.monotonic()
        outcome.latency_s = outcome.done - outcome.sent
        return True

    def follow_up(self, client: httpx.Client, outcome: Outcome) -> None:
        thread = self.thread()
        body: dict[str, Any] = {
            "model": "hybrid",
            "messages": [{"role": "user", "content": f"And why is that? (ref {outcome.tag})"}],
            "max_tokens": 32,
            "user": outcome.tag,
        }
        if thread:
            body["hybrid"] = {"thread_id": thread}
        classify(outcome, client.post(f"{self.url}/v1/chat/completions", json=body), stream=False)
        if thread and outcome.outcome != "answered":
            self.retire(thread)

    def review(self, client: httpx.Client, outcome: Outcome) -> None:
        body = {
            "model": "hybrid",
            "messages": [
                {"role": "user", "content": f"Please have a person check this (ref {outcome.tag})."}
            ],
            "hybrid": {"overrides": {"force_route": "human"}},
            "user": outcome.tag,
        }
        opened = client.post(f"{self.url}/v1/chat/completions", json=body)
        classify(outcome, opened, stream=False)
        if outcome.outcome != "pending" or not outcome.thread_id:
            return
        verdict = {"action": "edit", "answer": "Checked.", "reviewer": "soak"}
        resolved = client.post(f"{self.url}/v1/hybrid/reviews/{outcome.thread_id}", json=verdict)
        classify(outcome, resolved, stream=False)

    def feedback(self, client: httpx.Client, outcome: Outcome) -> None:
        thread = self.thread()
        if thread is None:  # nothing answered yet to rate
            outcome.outcome = "answered"
            return
        rating = "up" if outcome.n % 40 < 20 else "down"
        response = client.post(f"{self.url}/v1/hybrid/feedback", json={"thread_id": thread, "rating": rating})
        outcome.status = response.status_code
        if response.status_code == 200:
            outcome.outcome = "answered"
        else:
            outcome.outcome, outcome.detail = "refused", f"{response.status_code}: {response.text[:200]}"


def _metric(text: str, name: str) -> float | None:
    from prometheus_client.parser import text_string_to_metric_families

    total, found = 0.0, False
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            if sample.name == name:
                total, found = total + sample.value, True
    return total if found else None


def sample(plan: Plan, outcomes: list[Outcome], since: float, at: float) -> dict[str, Any]:
    """One sample: each replica's memory, descriptors and connections; the interval's latency."""
    import psycopg

    with psycopg.connect(plan.database_url, connect_timeout=10) as connection:
        rows = connection.execute(
            "SELECT application_name, count(*) FROM pg_stat_activity "
            "WHERE application_name LIKE 'hybrid-replica-%' GROUP BY 1"
        ).fetchall()
    connections = {name.removeprefix("hybrid-"): n for name, n in rows}
    replicas = {}
    for part in plan.of_kind("replica"):
        try:
            text = httpx.get(f"http://127.0.0.1:{part.port}/metrics", timeout=10).text
        except httpx.HTTPError:
            text = ""
        rss = _metric(text, "process_resident_memory_bytes")
        replicas[part.name] = {
            "rss_mb": round(rss / 2**20, 1) if rss is not None else None,
            "fds": _metric(text, "process_open_fds"),
            "db_connections": connections.get(part.name, 0),
        }
    window = [o for o in outcomes if o.done is not None and since <= o.done < at]
    latencies = [o.latency_s for o in window if o.outcome in ("answered", "pending") and o.latency_s]
    return {
        "t_s": None,
        "requests": len(window),
        "errors": sum(o.outcome not in ("answered", "pending") for o in window),
        "p50_s": percentile(latencies, 0.5),
        "replicas": replicas,
    }


def evaluate_soak(
    minutes: float,
    *,
    warmup_minutes: float = 5.0,
    sample_seconds: float = 60.0,
    replicas: int = 2,
    concurrency: int = 3,
    log: Log = lambda _m: None,
) -> dict[str, Any]:
    """Run the soak: `warmup_minutes`, then `minutes` measured; return the samples and figures."""
    config = ClusterConfig(replicas=replicas, port=0, prometheus_port=0)
    samples: list[dict[str, Any]] = []
    with temporary_cluster(config, cluster_settings(), log) as plan:
        load = Load(plan.url, concurrency=concurrency, deadline_s=DEADLINE_S)
        load.extra = MixedTraffic(plan.url, load.recorder)
        began = time.monotonic()
        measured_from = began + warmup_minutes * 60
        end = measured_from + minutes * 60
        load.start()
        log(f"soak: {concurrency} clients, {warmup_minutes:g} min warm-up, then {minutes:g} min measured")
        last = began
        while time.monotonic() < end:
            time.sleep(min(sample_seconds, max(0.0, end - time.monotonic())) or 0.1)
            now = time.monotonic()
            point = sample(plan, load.recorder.outcomes, last, now)
            point["t_s"] = round(now - began, 1)
            point["warmup"] = now <= measured_from + 1
            samples.append(point)
            last = now
            per = ", ".join(
                f"{n} {r['rss_mb']} MB/{r['fds'] or 0:.0f} fds/{r['db_connections']} conns"
                for n, r in point["replicas"].items()
            )
            summary = f"{point['requests']} requests, p50 {point['p50_s']:.2f}s, {point['errors']} errors"
            log(f"  {point['t_s']:>7.0f}s  {summary}; {per}")
        load.stop()
        outcomes = load.recorder.outcomes
        settle_unclear(plan, outcomes)
        check_conversations(plan.url, outcomes)
        restarts = {n: r.get("restarts", 0) for n, r in _state(plan).items()}
    return figures(
        samples, outcomes, measured_from - began, restarts, minutes=minutes, warmup_minutes=warmup_minutes
    )


def _state(plan: Plan) -> dict[str, Any]:
    from hybrid.cluster.control import read_state

    return read_state(plan.folder).get("parts", {})


def figures(
    samples: list[dict[str, Any]],
    outcomes: list[Outcome],
    measured_from_s: float,
    restarts: dict[str, int],
    *,
    minutes: float,
    warmup_minutes: float,
) -> dict[str, Any]:
    """The soak's figures from its samples (the first measured sample is the baseline)."""
    measured = [s for s in samples if not s["warmup"]] or samples[-1:]
    baseline = max((s for s in samples if s["warmup"]), key=lambda s: s["t_s"], default=measured[0])
    per_replica = {}
    for name in baseline["replicas"]:
        series = [s["replicas"][name] for s in [baseline, *measured]]
        rss = [r["rss_mb"] for r in series if r["rss_mb"] is not None]
        fds = [r["fds"] for r in series if r["fds"] is not None]
        conns = [r["db_connections"] for r in series]
        per_replica[name] = {
            "rss_mb_start": rss[0] if rss else None,
            "rss_mb_end": rss[-1] if rss else None,
            "rss_growth_mb": round(rss[-1] - rss[0], 1) if rss else None,
            "rss_mb_max": max(rss) if rss else None,
            "fds_start": fds[0] if fds else None,
            "fds_end": fds[-1] if fds else None,
            "fds_range": [min(fds), max(fds)] if fds else None,
            "connections_start": conns[0],
            "connections_end": conns[-1],
            "connections_range": [min(conns), max(conns)],
        }
    after = [o for o in outcomes if o.sent >= outcomes[0].sent + measured_from_s] if outcomes else []
    span = (max(o.sent for o in after) - min(o.sent for o in after)) if after else 0.0
    first = [o for o in after if o.sent <= min(x.sent for x in after) + span / 3] if after else []
    last = [o for o in after if o.sent >= max(x.sent for x in after) - span / 3] if after else []

    def p50(items: list[Outcome]) -> float:
        ok = [o.latency_s for o in items if o.outcome in ("answered", "pending") and o.latency_s]
        return percentile(ok, 0.5)

    p50_first, p50_last = p50(first), p50(last)
    totals = count(after)
    errors = totals["sent"] - totals["answered"] - totals["pending"]
    kinds = collections.Counter(o.kind for o in after)
    report = {
        "minutes": minutes,
        "warmup_minutes": warmup_minutes,
        "samples": samples,
        "replicas": per_replica,
        "requests": totals,
        "kinds": dict(kinds),
        "errors": errors,
        "error_samples": outcome_rows(after, limit=10),
        "p50_s_first_third": p50_first,
        "p50_s_last_third": p50_last,
        # Signed: a leak slows requests down (positive); a machine that got quieter speeds them up.
        "p50_drift": round((p50_last - p50_first) / p50_first, 3) if p50_first else None,
        "restarts": restarts,
    }
    report["targets"] = check(report, TARGETS)
    report["met"] = all(report["targets"].values())
    return report


def check(report: dict[str, Any], bounds: dict[str, float]) -> dict[str, bool]:
    """Each target against `bounds` (the full soak's, or a short run's looser ones)."""
    replicas = report["replicas"].values()
    return {
        "rss_growth": all((r["rss_growth_mb"] or 0) <= bounds["rss_growth_mb"] for r in replicas),
        "fds_flat": all(
            (r["fds_end"] or 0) - (r["fds_start"] or 0) <= bounds["fds_growth"] for r in replicas
        ),
        "connections_flat": all(
            r["connections_end"] - r["connections_start"] <= bounds["connections_growth"] for r in replicas
        ),
        "p50_drift": report["p50_drift"] is not None and abs(report["p50_drift"]) <= bounds["p50_drift"],
        "no_errors": report["errors"] <= bounds["errors"],
        "no_restarts": not any(report["restarts"].values()),
    }


def format_report(report: dict[str, Any]) -> str:
    """The figures for people."""
    lines = [f"{'t (s)':>8}{'reqs':>6}{'errors':>8}{'p50 s':>8}  per replica: RSS MB / fds / DB connections"]
    for s in report["samples"]:
        per = "  ".join(
            f"{r['rss_mb']}/{r['fds'] or 0:.0f}/{r['db_connections']}" for r in s["replicas"].values()
        )
        mark = " (warm-up)" if s["warmup"] else ""
        lines.append(f"{s['t_s']:>8.0f}{s['requests']:>6}{s['errors']:>8}{s['p50_s']:>8.2f}  {per}{mark}")
    lines.append("")
    for name, r in report["replicas"].items():
        lines.append(
            f"{name}: RSS {r['rss_mb_start']} -> {r['rss_mb_end']} MB ({r['rss_growth_mb']:+} MB, max "
            f"{r['rss_mb_max']}), fds {r['fds_start']:.0f} -> {r['fds_end']:.0f} (range {r['fds_range']}), "
            f"DB connections {r['connections_start']} -> {r['connections_end']} "
            f"(range {r['connections_range']})"
        )
    kinds = ", ".join(f"{k} {v}" for k, v in sorted(report["kinds"].items()))
    lines.append(
        f"after the warm-up: {report['requests']['sent']} requests ({kinds}), {report['errors']} errors; "
        f"p50 {report['p50_s_first_third']}s in the first third, {report['p50_s_last_third']}s in the "
        f"last (drift {report['p50_drift']})"
    )
    missed = [name for name, ok in report["targets"].items() if not ok]
    lines.append("targets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    return "\n".join(lines)
