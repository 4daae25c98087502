"""`hybrid serve` for real: the embedded models over HTTP, and replicas sharing real stores."""

from __future__ import annotations

import os
import re
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import openai
import pytest

from tests.conftest import REPO
from tests.servers import free_port, serving

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")
QUESTION = "What is the capital of France?"


def start_replica(port: int, log: Path) -> object:
    return serving([HYBRID, "serve", "--port", str(port)], f"http://127.0.0.1:{port}/health", log)


@pytest.fixture
def server(isolated: Path) -> Iterator[str]:
    port = free_port()
    with start_replica(port, isolated.parent / "serve.log"):
        yield f"http://127.0.0.1:{port}"


def test_real_models_answer_the_official_clients_over_http(server: str) -> None:
    from langchain_openai import ChatOpenAI

    client = openai.OpenAI(base_url=f"{server}/v1", api_key="unused")
    completion = client.chat.completions.create(
        model="hybrid", messages=[{"role": "user", "content": QUESTION}]
    )
    assert "Paris" in (completion.choices[0].message.content or "")
    assert completion.model_extra["hybrid"]["answered_by"] == "llamacpp:smollm2-135m-instruct"

    streamed = "".join(
        chunk.choices[0].delta.content or ""
        for chunk in client.chat.completions.create(
            model="hybrid", messages=[{"role": "user", "content": QUESTION}], stream=True
        )
        if chunk.choices
    )
    assert "Paris" in streamed

    reply = ChatOpenAI(model="hybrid", base_url=f"{server}/v1", api_key="unused").invoke("Who wrote Hamlet?")
    assert "Shakespeare" in reply.text


def sample(url: str, name: str) -> float:
    """One sample from the server's `/metrics`."""
    found = re.search(rf"^{re.escape(name)} (\S+)$", httpx.get(f"{url}/metrics", timeout=30).text, re.M)
    return float(found.group(1)) if found else 0.0


def test_health_answers_while_the_models_are_busy(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # The test hook paces the embedded models: an answer of 100 tokens keeps the server busy for at
    # least 20 s on any machine, and /health must answer all that time.
    monkeypatch.setenv("HYBRID_TEST_MIN_TOKEN_INTERVAL_S", "0.2")
    port = free_port()
    url = f"http://127.0.0.1:{port}"
    with start_replica(port, isolated.parent / "serve.log"):
        answers: list[httpx.Response] = []
        body = {
            "model": "hybrid",
            "messages": [{"role": "user", "content": "List the numbers from 1 to 200."}],
        }
        busy = threading.Thread(
            target=lambda: answers.append(
                httpx.post(f"{url}/v1/chat/completions", json=body | {"max_tokens": 100}, timeout=600)
            )
        )
        busy.start()
        answered_while_busy = 0
        while busy.is_alive():
            assert httpx.get(f"{url}/health", timeout=5).json() == {"status": "ok"}
            answered_while_busy += busy.is_alive()  # the run had not ended when health answered
            time.sleep(0.2)  # the pace of the checks, not a wait for a state
        busy.join()
    assert answers[0].status_code == 200, answers[0].text
    assert answered_while_busy >= 3  # 20 s at least, one check at most every 5.2 s


def test_one_run_at_a_time_and_a_caller_who_hung_up_while_waiting_gets_no_run(
    isolated: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("HYBRID_MAX_ACTIVE_RUNS", "1")
    # The test hook paces the embedded models: the holder's 100 tokens keep the only run slot for at
    # least 10 s on any machine, while the caller who hangs up waits 0.3 s.
    monkeypatch.setenv("HYBRID_TEST_MIN_TOKEN_INTERVAL_S", "0.1")
    port = free_port()
    url = f"http://127.0.0.1:{port}"

    def ask(question: str, timeout: float, max_tokens: int = 32) -> httpx.Response:
        body = {"model": "hybrid", "messages": [{"role": "user", "content": question}]}
        body |= {"max_tokens": max_tokens, "hybrid": {"overrides": {"force_route": "large"}}}
        return httpx.post(f"{url}/v1/chat/completions", json=body, timeout=timeout)

    with start_replica(port, isolated.parent / "serve.log"):
        assert ask("Who wrote Hamlet?", 300).status_code == 200  # loads the model
        admitted = sample(url, "hybrid_queue_seconds_count")
        answers: list[tuple[httpx.Response, float]] = []

        def hold_the_slot() -> None:
            # Greedy decoding counts on to the token limit: 100 paced tokens, whatever the model.
            answers.append((ask("List the numbers from 1 to 200.", 300, max_tokens=100), time.perf_counter()))

        holder = threading.Thread(target=hold_the_slot)
        holder.start()
        deadline = time.monotonic() + 120
        while sample(url, "hybrid_queue_seconds_count") == admitted:  # until the holder has the slot
            assert time.monotonic() < deadline, "the holder never got the run slot"
            time.sleep(0.05)
        with pytest.raises(httpx.TimeoutException):  # hangs up while the holder has the only slot
            ask("Who painted the Mona Lisa?", 0.3)
        hung_up = time.perf_counter()
        holder.join()
        [(answer, answered)] = answers
        assert answer.status_code == 200
        assert answered > hung_up, "the holder must outlast the caller who hung up, or nobody waited"
        metrics = httpx.get(f"{url}/metrics", timeout=10).text
        assert "hybrid_requests_abandoned_total 1.0" in metrics
        assert 'hybrid_requests_total{route="large",status="answered"} 2.0' in metrics  # no third run


def test_replicas_share_reviews_and_knowledge_through_real_stores(
    isolated: Path, postgres: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hybrid import api

    chroma_port = free_port()
    chroma = [
        str(Path(sys.executable).parent / "chroma"),
        "run",
        "--path",
        str(isolated.parent / "chroma-server"),
    ]
    chroma += ["--host", "127.0.0.1", "--port", str(chroma_port)]
    with serving(chroma, f"http://127.0.0.1:{chroma_port}/api/v2/heartbeat", isolated.parent / "chroma.log"):
        monkeypatch.setenv("HYBRID_CHROMA_URL", f"http://127.0.0.1:{chroma_port}")
        assert api.ingest([REPO / "data" / "knowledge"]).ok  # one shared knowledge base
        api.reset()
        ports = free_port(), free_port()
        replicas = []
        for name, port in zip("ab", ports, strict=True):
            monkeypatch.setenv(
                "HYBRID_DATA_DIR", str(isolated.parent / f"replica-{name}")
            )  # nothing shared locally
            replicas.append(start_replica(port, isolated.parent / f"replica-{name}.log"))
        with replicas[0], replicas[1]:
            a, b = (f"http://127.0.0.1:{port}" for port in ports)
            ask = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}

            pending = httpx.post(
                f"{a}/v1/chat/completions",
                json=ask | {"hybrid": {"overrides": {"force_route": "human"}}},
                timeout=120,
            )
            assert pending.status_code == 202
            thread = pending.json()["hybrid"]["thread_id"]

            listed = httpx.get(f"{b}/v1/hybrid/reviews", timeout=30).json()["data"]
            assert [case["thread_id"] for case in listed] == [thread]
            resolved = httpx.post(
                f"{b}/v1/hybrid/reviews/{thread}",
                json={"action": "edit", "answer": "Paris.", "reviewer": "ana"},
                timeout=60,
            )
            assert resolved.status_code == 200
            polled = httpx.get(f"{a}/v1/hybrid/threads/{thread}", timeout=30)
            assert (polled.status_code, polled.json()["choices"][0]["message"]["content"]) == (200, "Paris.")

            knowledge = ask | {
                "messages": [{"role": "user", "content": "How do I resolve a pending review case?"}],
                "hybrid": {"overrides": {"retrieval": "always", "small_accept_threshold": 0.0}},
            }
            sources = [
                {
                    Path(s["source"]).name
                    for s in httpx.post(f"{r}/v1/chat/completions", json=knowledge, timeout=120).json()[
                        "hybrid"
                    ]["sources"]
                }
                for r in (a, b)
            ]
            assert sources[0] == sources[1]
            assert "human-review.md" in sources[0]
    assert not os.path.exists(isolated.parent / "replica-a" / "hybrid.sqlite")  # state went to PostgreSQL


def test_the_load_benchmark_reports_every_level(isolated: Path) -> None:
    import json
    import subprocess

    result = subprocess.run(
        [HYBRID, "eval", "load", "--concurrency", "1,2", "--requests", "4", "--json"],
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env=dict(os.environ),
    )

    assert result.returncode == 0, result.stderr[-2000:]
    report = json.loads(result.stdout)
    assert [level["concurrency"] for level in report["levels"]] == [1, 2]
    assert report["errors_total"] == 0
    for level in report["levels"]:
        assert level["requests"] == 4
        assert level["rps"] > 0
        assert 0 < level["latency_ms"]["p50"] <= level["latency_ms"]["p99"]
        assert level["overhead_ms"]["p50"] >= 0
        assert level["health_ms"]["max"] > 0
        steps = level["steps_ms_p50"]  # each request's own step times, as its response reports them
        assert {"classify", "verify"} <= set(steps)
        assert 0 < steps["classify"] < level["latency_ms"]["p50"]
