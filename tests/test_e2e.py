"""End to end on the real embedded models (SmolLM2-135M and Gemma-3-270M via llama.cpp), through
the installed `hybrid` command and a real `langgraph dev` server."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")


def hybrid(
    *args: str, env: dict[str, str] | None = None, timeout: float = 300
) -> subprocess.CompletedProcess:
    return subprocess.run(
        [HYBRID, *args],
        env={**os.environ, **(env or {})},
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_a_simple_question_is_answered_by_the_small_model() -> None:
    result = hybrid("ask", "What is the capital of France?", "--json")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "answered"
    assert "Paris" in answer["answer"]
    assert answer["answered_by"] == "llamacpp:smollm2-135m-instruct"
    assert answer["route"]["route"] == "small"
    assert [v["passed"] for v in answer["verifications"]] == [True]
    assert answer["usage"]["llamacpp:smollm2-135m-instruct"]["output_tokens"] > 0
    assert answer["timings_ms"]["answer_small"] > 0


def test_the_plain_output_explains_the_route() -> None:
    result = hybrid("ask", "What is the capital of France?")
    assert result.returncode == 0, result.stderr
    answer, route = result.stdout.strip().splitlines()
    assert "Paris" in answer
    assert route.startswith("route: small model llamacpp:smollm2-135m-instruct answered, verifier")


def test_configuration_that_rejects_small_answers_escalates_to_gemma() -> None:
    result = hybrid("ask", "Who wrote Hamlet?", "--json", env={"HYBRID_SMALL_ACCEPT_THRESHOLD": "1.01"})

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert [d["model"] for d in answer["drafts"]] == [
        "llamacpp:smollm2-135m-instruct",
        "llamacpp:gemma-3-270m",
    ]
    assert answer["status"] == "answered"
    assert answer["answered_by"] == "llamacpp:gemma-3-270m"
    assert "Shakespeare" in answer["answer"]
    assert "escalated to the large model" in answer["explanation"]


def test_a_prompt_too_long_for_the_models_is_never_truncated() -> None:
    question = "Summarise this: " + "The quick brown fox jumps over the lazy dog. " * 60
    result = hybrid("ask", question, "--json", env={"HYBRID_N_CTX": "256"})

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["status"] == "pending_review"
    assert all("context window of 256 tokens" in d["error"] for d in answer["drafts"])


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture
def dev_server(isolated: Path) -> Iterator[str]:
    """`hybrid dev` on a free port, with its own data directory."""
    port = _free_port()
    log = isolated.parent / "dev.log"
    with log.open("w") as out:
        process = subprocess.Popen(
            [HYBRID, "dev", "--port", str(port)], env=dict(os.environ), stdout=out, stderr=subprocess.STDOUT
        )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if httpx.get(f"{url}/ok", timeout=2).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"langgraph dev did not start:\n{log.read_text()[-3000:]}")
            time.sleep(0.5)
        yield url
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


def test_langgraph_dev_runs_to_a_review_and_resumes(dev_server: str) -> None:
    from langgraph_sdk import get_sync_client
    from langgraph_sdk.schema import Command

    client = get_sync_client(url=dev_server)
    thread = client.threads.create()["thread_id"]

    client.runs.wait(
        thread,
        "hybrid",
        input={"question": "What is the capital of France?"},
        context={"force_route": "human"},
    )
    state = client.threads.get_state(thread)
    assert state["next"] == ["human_review"]
    request = state["interrupts"][0]["value"]
    assert request["why"] == "route forced to human review"
    assert request["drafts"][0]["model"] == "llamacpp:smollm2-135m-instruct"

    final = client.runs.wait(
        thread, "hybrid", command=Command(resume={"action": "approve", "reviewer": "sdk"})
    )
    assert final["status"] == "answered"
    assert final["answered_by"] == "llamacpp:smollm2-135m-instruct"
    assert final["review"]["reviewer"] == "sdk"
    assert "Paris" in final["answer"]
    assert client.threads.get_state(thread)["next"] == []
