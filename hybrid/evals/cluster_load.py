"""Steady traffic against a real local cluster, and what became of every request.

Shared by `hybrid eval chaos` and `hybrid eval soak`: a throw-away cluster (`hybrid cluster up`
in a temporary folder), workers that keep sending a mix of requests through HAProxy, each
request tagged (`ref c123` in its question) so that its fate can be looked up afterwards in the
audit log and the review queue, and one outcome per request:

- answered: a 200 with the answer (a stream: its final chunk, then `[DONE]`);
- pending: a 202, the question parked for a reviewer;
- refused: an error in OpenAI's shape (a status and a message saying what to do);
- unclear: no clear answer (connection reset, a balancer's own 502/504, a stream cut short); it
  becomes `audited` if the audit log or the review queue has the request, else `lost`;
- hung: no response within the client's deadline.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hybrid.cluster.plan import ClusterConfig, Plan

Log = Callable[[str], None]
KNOWLEDGE = Path(__file__).resolve().parent.parent.parent / "data" / "knowledge"

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "What is the largest planet in the solar system?",
    "What language is spoken in Brazil?",
    "What is the boiling point of water in Celsius?",
    "Who painted the Mona Lisa?",
    "What is the chemical symbol for gold?",
    "How many continents are there?",
    "Explain briefly why the sky is blue.",
    "What is 17 times 23?",
]
KNOWLEDGE_QUESTIONS = [
    "How do I resolve a pending review case?",
    "Which settings choose the small and the large model?",
    "How does the router decide between the small and the large model?",
]


@dataclass
class Outcome:
    """One request and what became of it."""

    n: int
    kind: str
    tag: str
    sent: float  # time.monotonic()
    done: float | None = None
    status: int | None = None
    outcome: str = "unclear"
    detail: str = ""
    thread_id: str | None = None
    answer: str | None = None
    latency_s: float | None = None


@dataclass
class Recorder:
    """Every request sent, thread-safe."""

    outcomes: list[Outcome] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def add(self, outcome: Outcome) -> None:
        with self.lock:
            self.outcomes.append(outcome)

    def between(self, start: float, end: float) -> list[Outcome]:
        with self.lock:
            return [o for o in self.outcomes if start <= o.sent <= end]


def _sse(text: str) -> tuple[dict[str, Any] | None, str, dict[str, Any] | None, bool]:
    """(final hybrid field, content, error, done) of a server-sent-events body."""
    final, content, error, done = None, "", None, False
    for line in text.splitlines():
        if not line.startswith("data: "):
            continue
        data = line[6:]
        if data == "[DONE]":
            done = True
            continue
        chunk = json.loads(data)
        if "error" in chunk:
            error = chunk["error"]
            continue
        for choice in chunk.get("choices", []):
            content += (choice.get("delta") or {}).get("content") or ""
        if chunk.get("hybrid", {}).get("status"):
            final = chunk["hybrid"]
    return final, content, error, done


def classify(outcome: Outcome, response: httpx.Response, stream: bool) -> None:
    """Set the outcome of a request from its response."""
    outcome.status = response.status_code
    if stream and response.status_code == 200:
        try:
            final, content, error, done = _sse(response.text)
        except ValueError as exc:
            outcome.outcome, outcome.detail = "unclear", f"unreadable stream: {exc}"
            return
        if error is not None:
            outcome.outcome, outcome.detail = "refused", str(error.get("message"))[:200]
        elif final is None or not done:
            outcome.outcome, outcome.detail = "unclear", "stream ended without its final chunk"
        else:
            outcome.thread_id, outcome.answer = final.get("thread_id"), content
            outcome.outcome = "pending" if final["status"] == "pending_review" else "answered"
        return
    try:
        body = response.json()
    except ValueError:
        body = None
    if response.status_code in (200, 202) and isinstance(body, dict) and "hybrid" in body:
        outcome.thread_id = body["hybrid"]["thread_id"]
        outcome.answer = body["choices"][0]["message"]["content"]
        outcome.outcome = "pending" if body["hybrid"]["status"] == "pending_review" else "answered"
    elif isinstance(body, dict) and isinstance(body.get("error"), dict) and body["error"].get("message"):
        outcome.outcome, outcome.detail = (
            "refused",
            f"{response.status_code}: {body['error']['message'][:200]}",
        )
    else:
        outcome.outcome, outcome.detail = "unclear", f"{response.status_code}: {response.text[:200]}"


class Load:
    """Workers that keep sending a mix of requests to `url` until stopped.

    Mix per ten requests: six plain questions, two about the knowledge base (retrieval on), two
    streamed; `extra` adds kinds of the caller's (the soak's follow-ups, reviews, feedback)."""

    def __init__(
        self,
        url: str,
        *,
        concurrency: int,
        deadline_s: float,
        max_tokens: int = 32,
        headers: dict[str, str] | None = None,
        extra: Callable[[httpx.Client, Outcome], bool] | None = None,
        seed: int = 0,
    ) -> None:
        self.url, self.concurrency, self.deadline_s, self.max_tokens = (
            url,
            concurrency,
            deadline_s,
            max_tokens,
        )
        self.headers = headers or {}
        self.extra = extra
        self.recorder = Recorder()
        self.stopping = threading.Event()
        self.counter = 0
        self.counter_lock = threading.Lock()
        self.random = random.Random(seed)
        self.threads: list[threading.Thread] = []

    def next_number(self) -> int:
        with self.counter_lock:
            self.counter += 1
            return self.counter

    def body(self, n: int, tag: str) -> tuple[str, dict[str, Any]]:
        kind = "ask" if n % 10 < 6 else "knowledge" if n % 10 < 8 else "stream"
        if kind == "knowledge":
            question = KNOWLEDGE_QUESTIONS[n % len(KNOWLEDGE_QUESTIONS)]
        else:
            question = QUESTIONS[n % len(QUESTIONS)]
        body: dict[str, Any] = {
            "model": "hybrid",
            "messages": [{"role": "user", "content": f"{question} (ref {tag})"}],
            "max_tokens": self.max_tokens,
            "user": tag,
        }
        if kind == "knowledge":
            body["hybrid"] = {"overrides": {"retrieval": "always"}}
        if kind == "stream":
            body["stream"] = True
        return kind, body

    def send(self, client: httpx.Client, kind: str, body: dict[str, Any], tag: str, n: int) -> Outcome:
        outcome = Outcome(n=n, kind=kind, tag=tag, sent=time.monotonic())
        try:
            response = client.post(f"{self.url}/v1/chat/completions", json=body, headers=self.headers)
            classify(outcome, response, bool(body.get("stream")))
        except httpx.TimeoutException:
            outcome.outcome, outcome.detail = "hung", f"no response within {self.deadline_s:.0f}s"
        except httpx.HTTPError as exc:
            outcome.outcome, outcome.detail = "unclear", f"{type(exc).__name__}: {exc}"[:200]
        outcome.done = time.monotonic()
        outcome.latency_s = outcome.done - outcome.sent
        self.recorder.add(outcome)
        return outcome

    def worker(self) -> None:
        with httpx.Client(timeout=self.deadline_s) as client:
            while not self.stopping.is_set():
                n = self.next_number()
                tag = f"c{n}"
                placeholder = Outcome(n=n, kind="extra", tag=tag, sent=time.monotonic())
                if self.extra is not None and self.extra(client, placeholder):
                    self.recorder.add(placeholder)
                    continue
                kind, body = self.body(n, tag)
                self.send(client, kind, body, tag, n)

    def start(self) -> None:
        for index in range(self.concurrency):
            thread = threading.Thread(target=self.worker, name=f"load-{index}", daemon=True)
            thread.start()
            self.threads.append(thread)

    def stop(self) -> None:
        """Stop sending; wait for the requests in flight (each ends by its deadline)."""
        self.stopping.set()
        for thread in self.threads:
            thread.join(self.deadline_s + 30)


def settle_unclear(plan: Plan, outcomes: list[Outcome]) -> None:
    """Unclear requests the audit log or the review queue knows are `audited`; the rest are `lost`."""
    import re

    import psycopg

    unclear = [o for o in outcomes if o.outcome == "unclear"]
    if not unclear:
        return
    known: set[str] = set()
    with psycopg.connect(plan.database_url, connect_timeout=10) as connection:
        for (text,) in connection.execute(
            "SELECT data->>'question' FROM hybrid_audit WHERE event = 'answered' "
            "UNION ALL SELECT question FROM hybrid_reviews"
        ):
            known.update(re.findall(r"\(ref (c\d+)\)", text or ""))
    for outcome in unclear:
        outcome.outcome = "audited" if outcome.tag in known else "lost"


def check_conversations(url: str, outcomes: list[Outcome], headers: dict[str, str] | None = None) -> None:
    """An answered or pending request whose conversation no longer says so is `lost`."""
    with httpx.Client(timeout=60, headers=headers or {}) as client:
        for outcome in outcomes:
            if outcome.outcome not in ("answered", "pending") or not outcome.thread_id:
                continue
            try:
                response = client.get(f"{url}/v1/hybrid/threads/{outcome.thread_id}")
            except httpx.HTTPError as exc:
                outcome.detail = f"could not check: {exc}"
                continue
            if response.status_code not in (200, 202):
                outcome.outcome, outcome.detail = (
                    "lost",
                    f"thread {outcome.thread_id}: {response.status_code}",
                )


def count(outcomes: list[Outcome]) -> dict[str, int]:
    kinds = ("answered", "pending", "refused", "audited", "lost", "hung", "unclear")
    return {"sent": len(outcomes)} | {k: sum(o.outcome == k for o in outcomes) for k in kinds}


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return round(ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))], 3) if ordered else 0.0


@contextlib.contextmanager
def temporary_cluster(
    config: ClusterConfig,
    settings: dict[str, str],
    log: Log,
    folder: Path | None = None,
    keep_logs: Path | None = None,
) -> Iterator[Plan]:
    """A cluster in a temporary folder with `settings` (HYBRID_*) for its replicas, the sample
    knowledge base ingested and both model servers warm; stopped and deleted at the end (its
    logs copied to `keep_logs` first, if given)."""
    from hybrid.cluster import control
    from hybrid.evals.servers import environment

    scratch = None
    if folder is None:
        scratch = tempfile.TemporaryDirectory(prefix="hybrid-cluster-")
        folder = Path(scratch.name) / "cluster"
    try:
        with environment(settings):
            log(f"starting a cluster in {folder} ...")
            plan = control.up(config, folder, ingest=[KNOWLEDGE], log=log)
        try:
            warm_up(plan.url, log)
            yield plan
        finally:
            log("stopping the cluster ...")
            control.down(folder)
            if keep_logs is not None:
                import shutil

                shutil.copytree(folder / "logs", keep_logs, dirs_exist_ok=True)
                log(f"logs kept in {keep_logs}")
            control.down(folder, purge=True)
    finally:
        if scratch is not None:
            scratch.cleanup()


def warm_up(url: str, log: Log) -> None:
    """One question per tier through HAProxy: model loading is a one-time cost, not behaviour."""
    for route in ("small", "large"):
        body = {
            "model": "hybrid",
            "messages": [{"role": "user", "content": "What is the capital of Italy?"}],
            "max_tokens": 8,
            "hybrid": {"overrides": {"force_route": route}},
        }
        response = httpx.post(f"{url}/v1/chat/completions", json=body, timeout=600)
        log(f"warm-up ({route}): HTTP {response.status_code}")


def replica_health(plan: Plan) -> dict[str, bool]:
    """Each replica: answers its health check, HAProxy sends it traffic, and it reaches the
    database (its review queue answers)."""
    from hybrid.cluster.control import haproxy_view

    view = haproxy_view(plan)
    healthy = {}
    for part in plan.of_kind("replica"):
        ok = view.get(part.name) == "UP"
        if ok:
            try:
                ok = httpx.get(part.health, timeout=2).status_code == 200
                ok = (
                    ok
                    and httpx.get(f"http://127.0.0.1:{part.port}/v1/hybrid/reviews", timeout=5).status_code
                    == 200
                )
            except httpx.HTTPError:
                ok = False
        healthy[part.name] = ok
    return healthy


def wait_all_healthy(plan: Plan, timeout: float = 300) -> float:
    """Seconds until every replica is healthy (`replica_health`); `timeout` if never."""
    began = time.monotonic()
    while time.monotonic() - began < timeout:
        if all(replica_health(plan).values()):
            return time.monotonic() - began
        time.sleep(0.25)
    return timeout


def outcome_rows(outcomes: list[Outcome], limit: int = 8) -> list[dict[str, Any]]:
    """Requests that were not answered, for the report."""
    rows = [asdict(o) for o in outcomes if o.outcome not in ("answered", "pending")]
    for row in rows:
        row.pop("answer", None)
    return rows[:limit]


def cluster_settings(**extra: str) -> dict[str, str]:
    """Settings of an evaluation cluster: every request runs (no answer cache), short answers."""
    base = {
        "HYBRID_CACHE": "off",
        "HYBRID_LOG_LEVEL": "WARNING",
        "HYBRID_MODEL_TIMEOUT_S": "30",
        "HYBRID_REQUEST_DEADLINE_S": "60",
        "HYBRID_BREAKER_COOLDOWN_S": "5",
        "HYBRID_RETRY_BACKOFF_S": "0.2",
    }
    keep = {k: v for k, v in os.environ.items() if k == "HYBRID_ROUTER"}
    return base | keep | extra
