"""`hybrid eval load`: the OpenAI-compatible server under concurrent load, on the embedded models.

A real `hybrid serve` process on 127.0.0.1 (its own data directory, the cache off so every request
runs the models) is driven over HTTP at each concurrency level, while `/health` is probed every
100 ms. Per level: requests per second, latency percentiles, errors, the graph's own overhead per
request (the server's time minus the models' time and minus the time the request waited for a run
slot, as each response reports them), that waiting time, and `/health` latency.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from hybrid.evals.stats import percentile

QUESTIONS = [
    "What is the capital of France?",
    "Who wrote Hamlet?",
    "What is the largest planet in the solar system?",
    "What language is spoken in Brazil?",
    "What is the boiling point of water in Celsius?",
    "Who painted the Mona Lisa?",
    "What is the chemical symbol for gold?",
    "How many continents are there?",
    "What is the capital of Japan?",
    "Which ocean is the largest?",
    "What gas do plants absorb from the air?",
    "Who was the first person to walk on the Moon?",
]


def load_question(n: int) -> str:
    """Request `n`'s question: distinct text every time, so nothing is served from memory (the
    question's embedding is computed for every request, as it is for new traffic)."""
    return f"Question {n + 1}: {QUESTIONS[n % len(QUESTIONS)]}"


@contextlib.contextmanager
def _server(folder: Path) -> Iterator[str]:
    from hybrid.evals.servers import environment, free_port, running

    port = free_port()
    with environment({"HYBRID_DATA_DIR": str(folder / "data"), "HYBRID_CACHE": "off"}):
        command = [sys.executable, "-m", "hybrid.cli", "serve", "--port", str(port)]
        with running(command, f"http://127.0.0.1:{port}/health", folder / "serve.log"):
            yield f"http://127.0.0.1:{port}"


async def _level(
    url: str, concurrency: int, requests: int, first: int = 0, overrides: dict[str, Any] | None = None
) -> dict[str, Any]:
    import httpx

    latencies: list[float] = []
    overheads: list[float] = []
    queued: list[float] = []
    steps: dict[str, list[float]] = {}
    health: list[float] = []
    errors: list[str] = []
    queue: asyncio.Queue[int] = asyncio.Queue()
    for n in range(first, first + requests):
        queue.put_nowait(n)
    running = True

    async def worker(client: httpx.AsyncClient) -> None:
        while not queue.empty():
            n = queue.get_nowait()
            body: dict[str, Any] = {
                "model": "hybrid",
                "messages": [{"role": "user", "content": load_question(n)}],
            }
            if overrides:
                body["hybrid"] = {"overrides": overrides}
            began = time.perf_counter()
            try:
                response = await client.post(f"{url}/v1/chat/completions", json=body, timeout=300)
                elapsed = (time.perf_counter() - began) * 1000
                if response.status_code not in (200, 202):
                    errors.append(f"HTTP {response.status_code}: {response.text[:200]}")
                    continue
                latencies.append(elapsed)
                timings = response.json()["hybrid"]["timings_ms"]
                overheads.append(timings["overhead"])
                queued.append(timings["queued"])
                for node, spent in timings.get("nodes", {}).items():
                    steps.setdefault(node, []).append(spent)
            except httpx.HTTPError as exc:
                errors.append(f"{type(exc).__name__}: {exc}")

    async def probe(client: httpx.AsyncClient) -> None:
        while running:
            began = time.perf_counter()
            try:
                await client.get(f"{url}/health", timeout=5)
                health.append((time.perf_counter() - began) * 1000)
            except httpx.HTTPError:
                health.append(5000.0)
            await asyncio.sleep(0.1)

    async with httpx.AsyncClient(limits=httpx.Limits(max_connections=concurrency + 4)) as client:
        # The first request of a client pays for its own set-up: not the server's time.
        await client.get(f"{url}/health", timeout=30)
        prober = asyncio.create_task(probe(client))
        started = time.perf_counter()
        await asyncio.gather(*(worker(client) for _ in range(concurrency)))
        wall = time.perf_counter() - started
        running = False
        await prober
    return {
        "concurrency": concurrency,
        "requests": requests,
        "errors": len(errors),
        "error_samples": errors[:3],
        "rps": round(len(latencies) / wall, 3) if wall else 0.0,
        "latency_ms": {
            q: round(percentile(latencies, p), 2) for q, p in (("p50", 50), ("p95", 95), ("p99", 99))
        },
        "overhead_ms": {
            "p50": round(percentile(overheads, 50), 2),
            "p95": round(percentile(overheads, 95), 2),
        },
        "queued_ms": {"p50": round(percentile(queued, 50), 2), "p95": round(percentile(queued, 95), 2)},
        # Where the time goes, per graph step (answer_small and escalate include their models' time).
        "steps_ms_p50": {node: round(percentile(spent, 50), 2) for node, spent in steps.items()},
        "health_ms": {
            "p50": round(percentile(health, 50), 2),
            "p95": round(percentile(health, 95), 2),
            "max": round(max(health, default=0), 2),
        },
    }


def _shadow_counts(url: str) -> dict[str, float]:
    import re

    import httpx

    text = httpx.get(f"{url}/metrics", timeout=10).text
    return {m[0]: float(m[1]) for m in re.findall(r'hybrid_shadow_runs_total\{outcome="(\w+)"\} (\S+)', text)}


def _shadow_comparison(
    url: str, levels: list[int], requests: int | None, rate: float, *, first: int, log: Any
) -> dict:
    """Each level in rounds alternating shadow rate 0 and `rate` (a per-request setting), so both see
    the same machine; the user's p50 latency at each, and what the shadow runs did."""
    rounds = 2
    out: dict[str, Any] = {"rate": rate, "levels": []}
    asked = first
    for level in levels:
        count = requests or max(2 * level, 8)
        results: dict[str, list[dict[str, Any]]] = {"off": [], "on": []}
        for _ in range(rounds):
            for name, value in (("off", 0.0), ("on", rate)):
                log(f"  shadow {name} at concurrency {level}: {count} requests ...")
                results[name].append(asyncio.run(_level(url, level, count, asked, {"shadow_rate": value})))
                asked += count
        p50 = {
            name: statistics.median(r["latency_ms"]["p50"] for r in runs) for name, runs in results.items()
        }
        out["levels"].append(
            {
                "concurrency": level,
                "p50_ms_off": round(p50["off"], 2),
                "p50_ms_on": round(p50["on"], 2),
                "ratio": round(p50["on"] / p50["off"], 4) if p50["off"] else None,
                "errors": sum(r["errors"] for runs in results.values() for r in runs),
            }
        )
    out["shadow_runs"] = _shadow_counts(url)
    return out


def evaluate_load(
    concurrency: list[int],
    requests_per_level: int | None = None,
    log: Callable[[str], None] = lambda _m: None,
    *,
    shadow_rate: float | None = None,
) -> dict[str, Any]:
    """Run each concurrency level against a fresh server; return the figures per level. With
    `shadow_rate`, also the user's p50 with shadow runs off and on, in alternating rounds."""
    import httpx

    with tempfile.TemporaryDirectory(prefix="hybrid-load-") as folder, _server(Path(folder)) as url:
        log(f"server up at {url}; warming up the models ...")
        # Both tiers once, and the router: loading a model is a one-time cost, not load behaviour.
        for question, route in zip(QUESTIONS[:3], ("small", "large", None), strict=True):
            body: dict[str, Any] = {"model": "hybrid", "messages": [{"role": "user", "content": question}]}
            if route:
                body["hybrid"] = {"overrides": {"force_route": route}}
            httpx.post(f"{url}/v1/chat/completions", json=body, timeout=300).raise_for_status()
        levels = []
        asked = 0
        for level in concurrency:
            requests = requests_per_level or max(2 * level, 8)
            log(f"  concurrency {level}: {requests} requests ...")
            levels.append(asyncio.run(_level(url, level, requests, first=asked)))
            asked += requests
        shadow = None
        if shadow_rate:
            shadow = _shadow_comparison(
                url, concurrency, requests_per_level, shadow_rate, first=asked, log=log
            )
    overhead = [lvl["overhead_ms"]["p50"] for lvl in levels]
    return {
        "shadow": shadow,
        "levels": levels,
        "errors_total": sum(lvl["errors"] for lvl in levels),
        "overhead_ms_p50": round(statistics.median(overhead), 2) if overhead else 0.0,
        "health_ms_max": max((lvl["health_ms"]["max"] for lvl in levels), default=0.0),
    }


def format_table(report: dict[str, Any]) -> str:
    """The figures for people."""
    header = (
        "conc",
        "reqs",
        "errors",
        "rps",
        "p50 ms",
        "p95 ms",
        "p99 ms",
        "overhead p50",
        "queued p50",
        "health p95",
        "health max",
    )
    widths = (5, 6, 8, 8, 9, 9, 9, 14, 12, 12, 12)
    lines = ["".join(f"{name:>{width}}" for name, width in zip(header, widths, strict=True))]
    for lvl in report["levels"]:
        lat, over, queued, health = lvl["latency_ms"], lvl["overhead_ms"], lvl["queued_ms"], lvl["health_ms"]
        lines.append(
            f"{lvl['concurrency']:>5}{lvl['requests']:>6}{lvl['errors']:>8}{lvl['rps']:>8.2f}{lat['p50']:>9.0f}"
            f"{lat['p95']:>9.0f}{lat['p99']:>9.0f}{over['p50']:>14.1f}{queued['p50']:>12.1f}{health['p95']:>12.1f}{health['max']:>12.1f}"
        )
    for lvl in report["levels"]:
        steps = ", ".join(f"{node} {spent:.1f}" for node, spent in lvl.get("steps_ms_p50", {}).items())
        lines.append(f"steps p50 ms at {lvl['concurrency']} (models included): {steps or '-'}")
    shadow = report.get("shadow")
    if shadow:
        for lvl in shadow["levels"]:
            lines.append(
                f"shadow rate {shadow['rate']:g} at concurrency {lvl['concurrency']}: user p50 "
                f"{lvl['p50_ms_on']:.0f} ms against {lvl['p50_ms_off']:.0f} ms with it off "
                f"(ratio {lvl['ratio']})"
            )
        lines.append(f"shadow runs: {shadow['shadow_runs']}")
    return "\n".join(lines)
