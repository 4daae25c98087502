"""`hybrid cluster` for real: HAProxy, replicas, PostgreSQL, a Chroma server, llama.cpp model
servers and Prometheus on loopback; a short chaos run and a short soak (the full ones are the
commands `hybrid eval chaos` and `hybrid eval soak`, whose figures are in docs/benchmarks-cluster.md).

Nothing here asserts a duration: recovery times and latencies are reported, not judged, since
they measure this machine as much as the product."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")


def hybrid(*args: str, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [HYBRID, *args], capture_output=True, text=True, timeout=timeout, check=False, env=dict(os.environ)
    )


def eventually(check: Any, timeout: float = 120, what: str = "") -> Any:
    """Poll `check` until it returns something true (a state to reach, not a time to wait)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"not reached within {timeout:.0f}s: {what}")
        time.sleep(0.5)


@pytest.fixture
def cluster(isolated: Path) -> Iterator[dict[str, Any]]:
    up = hybrid("cluster", "up", "--replicas", "2", "--port", "0", "--prometheus-port", "0",
                "--ingest", str(REPO / "data" / "knowledge"), "--json")  # fmt: skip
    try:
        assert up.returncode == 0, up.stderr[-3000:]
        yield json.loads(up.stdout)
    finally:
        hybrid("cluster", "down", "--purge")


def test_one_command_starts_every_part_and_keeps_it_running(cluster: dict[str, Any]) -> None:
    assert cluster["phase"] == "running"
    assert cluster["healthy"], cluster
    parts = {p["name"]: p for p in cluster["parts"]}
    assert set(parts) == {
        "postgres", "chroma", "model-small", "model-large", "replica-1", "replica-2", "haproxy", "prometheus",
    }  # fmt: skip
    assert all(parts[r]["haproxy"] == "UP" for r in ("replica-1", "replica-2"))

    # Through HAProxy, answered by the tiers' model servers (openai: specs), with the shared knowledge.
    body = {
        "model": "hybrid",
        "messages": [{"role": "user", "content": "How do I resolve a pending review case?"}],
    }
    body["hybrid"] = {"overrides": {"retrieval": "always", "force_route": "small"}}
    body["max_tokens"] = 16
    answer = httpx.post(f"{cluster['url']}/v1/chat/completions", json=body, timeout=300).json()
    assert answer["hybrid"]["answered_by"] in ("openai:smollm2-135m-instruct", "openai:gemma-3-270m")
    assert any(Path(s["source"]).name == "human-review.md" for s in answer["hybrid"]["sources"])
    assert answer["usage"]["completion_tokens"] <= 2 * 16  # the cap reaches the model servers (per draft)

    # Prometheus scrapes every replica.
    def scraped() -> bool:
        targets = httpx.get(f"{cluster['prometheus']}/api/v1/targets", timeout=10).json()["data"][
            "activeTargets"
        ]
        replicas = {f"127.0.0.1:{parts[r]['port']}" for r in ("replica-1", "replica-2")}
        return replicas <= {t["labels"]["instance"] for t in targets if t["health"] == "up"}

    eventually(scraped, what="Prometheus scraping both replicas")

    # A replica killed with -9 is started again and HAProxy sends it traffic again.
    os.kill(parts["replica-1"]["pid"], signal.SIGKILL)

    def back() -> dict[str, Any] | None:
        status = json.loads(hybrid("cluster", "status", "--json").stdout)
        replica = next(p for p in status["parts"] if p["name"] == "replica-1")
        return (
            status if status["healthy"] and replica["restarts"] == 1 and replica["haproxy"] == "UP" else None
        )

    status = eventually(back, timeout=300, what="replica-1 restarted and healthy")
    assert next(p for p in status["parts"] if p["name"] == "replica-1")["pid"] != parts["replica-1"]["pid"]

    down = hybrid("cluster", "down")
    assert down.returncode == 0, down.stderr
    for part in status["parts"]:  # every process is gone
        with pytest.raises(ProcessLookupError):
            os.kill(part["pid"], 0)
    stopped = hybrid("cluster", "status", "--json")
    assert stopped.returncode == 1
    assert json.loads(stopped.stdout)["phase"] == "stopped"


def test_a_short_chaos_run_loses_nothing() -> None:
    result = hybrid("eval", "chaos", "--faults", "replica,postgres", "--json", timeout=1500)
    report = json.loads(result.stdout)

    assert [f["fault"] for f in report["faults"]] == ["replica", "postgres"]
    assert report["totals"]["sent"] > 0
    assert report["totals"]["lost"] == 0, report["not_answered"]
    assert report["totals"]["hung"] == 0, report["not_answered"]
    assert report["errors_5xx_outside_faults"] == 0
    for fault in report["faults"]:
        assert fault["review_case_resolved_elsewhere"], fault["review_case_detail"]
        assert fault["recovery_s"] >= 0  # reported; judged by the full run, not by this machine's speed
    assert report["restarts"]["replica-1"] == 1
    assert report["restarts"]["postgres"] == 1


def test_a_short_soak_leaks_nothing() -> None:
    """Three minutes (one of warm-up), sampled every 20 s, with bounds looser than the full run's."""
    result = hybrid(
        "eval",
        "soak",
        "--minutes",
        "2",
        "--warmup-minutes",
        "1",
        "--sample-seconds",
        "20",
        "--json",
        timeout=1500,
    )
    report = json.loads(result.stdout)

    assert report["errors"] == 0, report["error_samples"]
    assert not any(report["restarts"].values())
    assert {"ask", "knowledge", "stream", "follow-up", "review", "feedback"} <= set(report["kinds"])
    assert len([s for s in report["samples"] if not s["warmup"]]) >= 5
    for replica in report["replicas"].values():
        assert replica["rss_growth_mb"] <= 150
        assert replica["fds_end"] - replica["fds_start"] <= 20
        assert replica["connections_end"] - replica["connections_start"] <= 4
    assert report["p50_s_last_third"] > 0
