"""`hybrid eval chaos`: faults under steady load on a real local cluster, and what each cost.

A throw-away cluster (HAProxy, replicas, PostgreSQL, a Chroma server, a llama.cpp server per
tier, Prometheus) takes steady traffic through HAProxy while the faults happen one after another:

- `replica`: `kill -9` one replica (the supervisor starts it again);
- `postgres`: PostgreSQL restarts (fast shutdown, then started again);
- `chroma`: the Chroma server restarts;
- `model`: the small tier's model server is killed and kept down for 20 s;
- `reviews`: the review queue fills with cases that pass their deadline, and the fallback
  resolves them (as `hybrid review expire` run by cron on two hosts at once, and the replicas'
  own expiry).

Before each fault a review case is opened on one replica; after it, it is resolved through
another. Per fault: requests sent in its window (from the fault's start until every replica is
healthy again, plus a settling time) and what became of them (see `cluster_load`), seconds from
the fault's end until every replica is healthy again, and whether the case was resolved. Over
the whole run: 5xx responses outside every fault's window.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from hybrid.cluster.plan import ClusterConfig, Plan
from hybrid.evals.cluster_load import (
    Load,
    Log,
    check_conversations,
    cluster_settings,
    count,
    outcome_rows,
    settle_unclear,
    temporary_cluster,
    wait_all_healthy,
)

FAULTS = ("replica", "postgres", "chroma", "model", "reviews")
RECOVERY_TARGET_S = 15.0
SETTLE_S = 10.0
MODEL_DOWN_S = 20.0
DEADLINE_S = 120.0  # a request with no response by then is hung
# The cluster's review deadline: the `reviews` fault waits it out; the other faults resolve their
# case well within it.
REVIEW_TIMEOUT_S = 90.0
REVIEW_FLOOD = 20


@dataclass
class FaultRun:
    name: str
    description: str
    started: float = 0.0
    ended: float = 0.0  # the fault is over (the part is back)
    recovered: float = 0.0  # every replica healthy again
    case_resolved: bool | None = None
    case_detail: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _ask_replica(replica_url: str, body: dict[str, Any]) -> httpx.Response:
    return httpx.post(f"{replica_url}/v1/chat/completions", json=body, timeout=DEADLINE_S)


def _open_case(replica_url: str, note: str) -> str | None:
    body = {
        "model": "hybrid",
        "messages": [{"role": "user", "content": f"Is this answer right? ({note})"}],
        "hybrid": {"overrides": {"force_route": "human"}},
    }
    try:
        response = _ask_replica(replica_url, body)
    except httpx.HTTPError:
        return None
    return response.json()["hybrid"]["thread_id"] if response.status_code == 202 else None


def _resolve_case(replica_url: str, balancer: str, thread: str | None) -> tuple[bool, str]:
    if thread is None:
        return False, "the case could not be opened before the fault"
    try:
        resolved = httpx.post(
            f"{replica_url}/v1/hybrid/reviews/{thread}",
            json={"action": "edit", "answer": "Yes.", "reviewer": "chaos"},
            timeout=DEADLINE_S,
        )
        if resolved.status_code != 200:
            return False, f"resolving: HTTP {resolved.status_code} {resolved.text[:200]}"
        polled = httpx.get(f"{balancer}/v1/hybrid/threads/{thread}", timeout=60)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    content = polled.json()["choices"][0]["message"]["content"] if polled.status_code == 200 else ""
    return polled.status_code == 200 and content == "Yes.", f"polled: HTTP {polled.status_code} {content!r}"


def _expired_case(replica_url: str, thread: str | None) -> tuple[bool, str]:
    """A case the deadline fallback resolved reads as such through another replica."""
    if thread is None:
        return False, "the case could not be opened before the fault"
    try:
        polled = httpx.get(f"{replica_url}/v1/hybrid/threads/{thread}", timeout=60)
    except httpx.HTTPError as exc:
        return False, f"{type(exc).__name__}: {exc}"
    status = polled.json().get("hybrid", {}).get("status") if polled.status_code == 200 else None
    return status == "rejected", f"polled: HTTP {polled.status_code}, status {status} (the deadline fallback)"


def _wait(check: Callable[[], bool], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            raise RuntimeError(f"{what} did not happen within {timeout:.0f}s")
        time.sleep(0.1)


def _healthy(plan: Plan, name: str) -> bool:
    from hybrid.cluster.supervisor import probe

    return probe(plan.part(name), timeout=1)[0]


def _bounce(plan: Plan, name: str, signum: int) -> float:
    """Signal a part to stop, let the supervisor start it again; returns when it is healthy."""
    from hybrid.cluster import control

    pid = control.signal_part(plan.folder, name, signum)
    control.wait_exited(pid)
    _wait(lambda: _healthy(plan, name), 300, f"{name} coming back")
    return time.monotonic()


def _fault_replica(plan: Plan, run: FaultRun) -> None:
    from hybrid.cluster import control

    pid = control.signal_part(plan.folder, "replica-1", signal.SIGKILL)
    control.wait_exited(pid)
    run.ended = time.monotonic()  # an instant fault; the supervisor restarts it


def _fault_postgres(plan: Plan, run: FaultRun) -> None:
    run.ended = _bounce(plan, "postgres", signal.SIGINT)


def _fault_chroma(plan: Plan, run: FaultRun) -> None:
    run.ended = _bounce(plan, "chroma", signal.SIGTERM)


def _fault_model(plan: Plan, run: FaultRun) -> None:
    from hybrid.cluster import control

    control.hold(plan.folder, "model-small")
    try:
        pid = control.signal_part(plan.folder, "model-small", signal.SIGKILL)
        control.wait_exited(pid)
        time.sleep(MODEL_DOWN_S)  # the fault's own length
    finally:
        control.release(plan.folder, "model-small")
    _wait(lambda: _healthy(plan, "model-small"), 300, "model-small coming back")
    run.ended = time.monotonic()


def _fault_reviews(plan: Plan, run: FaultRun) -> None:
    """Fill the queue, let every case pass its deadline, and let the fallback resolve them: the
    replicas' own expiry and two `hybrid review expire` at once (cron on two hosts) race for them."""
    import psycopg

    threads = []
    for index in range(REVIEW_FLOOD):
        replica = plan.of_kind("replica")[index % len(plan.of_kind("replica"))]
        threads.append(_open_case(f"http://127.0.0.1:{replica.port}", f"flood {index}"))
    opened = [t for t in threads if t]
    time.sleep(REVIEW_TIMEOUT_S + 1)  # the deadline is the fault: wait it out
    env = {**plan.part("replica-1").env, "HYBRID_DATA_DIR": str(plan.folder / "expirer")}
    cron = [
        subprocess.Popen(
            [sys.executable, "-m", "hybrid.cli", "review", "expire", "--json"],
            env={**os.environ, **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(2)
    ]
    results = [process.communicate(timeout=300) for process in cron]

    def all_resolved() -> bool:
        with psycopg.connect(plan.database_url) as connection:
            rows = connection.execute(
                "SELECT count(*) FROM hybrid_reviews WHERE thread_id = ANY(%s) AND status = 'resolved'",
                (opened,),
            ).fetchone()
        return rows is not None and rows[0] == len(opened)

    _wait(all_resolved, 300, "every overdue case resolved")
    run.ended = time.monotonic()
    resolved_by_cron = sum(len(json.loads(out or "[]")) for out, _err in results)
    with psycopg.connect(plan.database_url) as connection:
        expirations = connection.execute(
            "SELECT count(*), count(DISTINCT case_id) FROM hybrid_audit "
            "WHERE event = 'review_expired' AND thread_id = ANY(%s)",
            (opened,),
        ).fetchone()
    polled = [httpx.get(f"{plan.url}/v1/hybrid/threads/{t}", timeout=60) for t in opened]
    run.extra = {
        "cases_opened": len(opened),
        "cases_resolved_by_cron": resolved_by_cron,
        "expiry_events": expirations[0] if expirations else None,
        "distinct_cases_expired": expirations[1] if expirations else None,
        "threads_answering_200": sum(p.status_code == 200 for p in polled),
        "cron_exit_codes": [p.returncode for p in cron],
    }


DESCRIPTIONS = {
    "replica": ("kill -9 one replica", _fault_replica),
    "postgres": ("restart PostgreSQL", _fault_postgres),
    "chroma": ("restart the Chroma server", _fault_chroma),
    "model": (f"kill the small tier's model server for {MODEL_DOWN_S:.0f} s", _fault_model),
    "reviews": (f"fill the review queue past its deadline ({REVIEW_FLOOD} cases)", _fault_reviews),
}


def evaluate_chaos(
    faults: list[str] | None = None,
    *,
    replicas: int = 2,
    concurrency: int = 3,
    baseline_s: float = 20.0,
    folder: Path | None = None,
    keep_logs: Path | None = None,
    log: Log = lambda _m: None,
) -> dict[str, Any]:
    """Run the faults in turn under load; return the figures per fault and the totals."""
    faults = list(faults or FAULTS)
    unknown = set(faults) - set(FAULTS)
    if unknown:
        raise ValueError(f"unknown fault(s) {sorted(unknown)}; choose from {', '.join(FAULTS)}")
    config = ClusterConfig(replicas=replicas, port=0, prometheus_port=0)
    settings = cluster_settings(HYBRID_REVIEW_TIMEOUT_S=str(REVIEW_TIMEOUT_S))
    runs: list[FaultRun] = []
    with temporary_cluster(config, settings, log, folder, keep_logs) as plan:
        load = Load(plan.url, concurrency=concurrency, deadline_s=DEADLINE_S)
        began = time.monotonic()
        load.start()
        log(f"steady load: {concurrency} clients through HAProxy; {baseline_s:.0f}s before the first fault")
        time.sleep(baseline_s)
        replica_urls = [f"http://127.0.0.1:{p.port}" for p in plan.of_kind("replica")]
        for name in faults:
            description, inject = DESCRIPTIONS[name]
            run = FaultRun(name, description)
            thread = _open_case(replica_urls[0], f"before {name}")
            log(f"fault: {description} ...")
            run.started = time.monotonic()
            inject(plan, run)
            run.recovered = run.ended + wait_all_healthy(plan)
            fault_s, recovery_s = run.ended - run.started, run.recovered - run.ended
            log(f"  over after {fault_s:.1f}s; every replica healthy {recovery_s:.1f}s later")
            time.sleep(SETTLE_S)
            if name == "reviews":  # the case opened before passed its deadline too: the fallback has it
                run.case_resolved, run.case_detail = _expired_case(replica_urls[-1], thread)
            else:
                run.case_resolved, run.case_detail = _resolve_case(replica_urls[-1], plan.url, thread)
            runs.append(run)
        log("stopping the load; waiting for the requests in flight ...")
        load.stop()
        outcomes = load.recorder.outcomes
        settle_unclear(plan, outcomes)
        check_conversations(plan.url, outcomes)
        restarts = _restarts(plan)
    setup = {"replicas": replicas, "concurrency": concurrency, "seconds": round(time.monotonic() - began, 1)}
    return _report(runs, outcomes, restarts, setup)


def _restarts(plan: Plan) -> dict[str, int]:
    from hybrid.cluster.control import read_state

    return {name: record.get("restarts", 0) for name, record in read_state(plan.folder)["parts"].items()}


def _report(
    runs: list[FaultRun], outcomes: list[Any], restarts: dict[str, int], setup: dict[str, Any]
) -> dict[str, Any]:
    windows = [(r.started, r.recovered + RECOVERY_TARGET_S) for r in runs]

    def in_window(o: Any) -> bool:
        return any(start <= o.sent <= end or (o.done and start <= o.done <= end) for start, end in windows)

    faults = []
    for run in runs:
        # Every request the fault could touch: in flight when it began, or sent until it settled.
        settled = run.recovered + SETTLE_S
        mine = [o for o in outcomes if o.sent <= settled and (o.done or o.sent) >= run.started]
        faults.append(
            {
                "fault": run.name,
                "description": run.description,
                **count(mine),
                "errors_5xx": sum((o.status or 0) >= 500 for o in mine),
                "fault_s": round(run.ended - run.started, 1),
                "recovery_s": round(run.recovered - run.ended, 1),
                "review_case_resolved_elsewhere": run.case_resolved,
                "review_case_detail": run.case_detail,
                "not_answered": outcome_rows(mine),
                **run.extra,
            }
        )
    outside = [o for o in outcomes if not in_window(o)]
    totals = count(outcomes)
    report = {
        **setup,
        "faults": faults,
        "totals": totals,
        "errors_5xx_outside_faults": sum((o.status or 0) >= 500 for o in outside),
        "requests_outside_faults": len(outside),
        "restarts": restarts,
        "not_answered": outcome_rows(outcomes, limit=30),
    }
    report["targets"] = {
        "lost": totals["lost"] == 0,
        "hung": totals["hung"] == 0,
        "recovery_within_15s": all(f["recovery_s"] <= RECOVERY_TARGET_S for f in faults),
        "no_5xx_outside_faults": report["errors_5xx_outside_faults"] == 0,
        "review_cases_resolved_elsewhere": all(f["review_case_resolved_elsewhere"] for f in faults),
    }
    report["met"] = all(report["targets"].values())
    return report


_COLUMNS = (
    ("sent", "sent"), ("answered", "answ"), ("refused", "refus"), ("pending", "pend"),
    ("audited", "audit"), ("lost", "lost"), ("hung", "hung"), ("errors_5xx", "5xx"),
)  # fmt: skip


def format_report(report: dict[str, Any]) -> str:
    """The figures for people."""
    header = f"{'fault':<52}" + "".join(f"{short:>6}" for _key, short in _COLUMNS)
    lines = [header + f"{'fault s':>9}{'recov s':>9}  review case"]
    for f in report["faults"]:
        case = "resolved elsewhere" if f["review_case_resolved_elsewhere"] else "NOT resolved"
        counts = "".join(f"{f[key]:>6}" for key, _short in _COLUMNS)
        lines.append(
            f"{f['description'][:51]:<52}{counts}{f['fault_s']:>9.1f}{f['recovery_s']:>9.1f}  {case}"
        )
    t = report["totals"]
    setup = f"{report['seconds']:.0f}s, {report['replicas']} replicas, {report['concurrency']} clients"
    lines.append(
        f"\nwhole run ({setup}): {t['sent']} sent, {t['answered']} answered, {t['refused']} refused, "
        f"{t['pending']} pending, {t['audited']} audited, {t['lost']} lost, {t['hung']} hung; 5xx outside "
        f"the faults: {report['errors_5xx_outside_faults']} of {report['requests_outside_faults']}"
    )
    for f in report["faults"]:
        for row in f["not_answered"][:3]:
            lines.append(f"  {f['fault']}: {row['outcome']} {row['kind']} {row['detail'][:120]}")
    missed = [name for name, ok in report["targets"].items() if not ok]
    lines.append("targets: " + ("all met" if not missed else "missed: " + ", ".join(missed)))
    return "\n".join(lines)
