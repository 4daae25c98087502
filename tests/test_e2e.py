"""End to end on the real embedded models (SmolLM2-135M and Gemma-3-270M via llama.cpp), through
the installed `hybrid` command and a real `langgraph dev` server."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.servers import free_port, serving

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


@pytest.fixture
def dev_server(isolated: Path) -> Iterator[str]:
    """`hybrid dev` on a free port, with its own data directory."""
    url = f"http://127.0.0.1:{free_port()}"
    port = url.rsplit(":", 1)[1]
    with serving([HYBRID, "dev", "--port", port], f"{url}/ok", isolated.parent / "dev.log"):
        yield url


def test_the_openai_provider_talks_to_a_real_openai_compatible_server(isolated: Path) -> None:
    from hybrid.models.llamacpp import resolve_gguf

    port = str(free_port())
    command = [
        sys.executable, "-m", "llama_cpp.server", "--model", str(resolve_gguf("smollm2-135m-instruct")),
        "--model_alias", "smollm2", "--host", "127.0.0.1", "--port", port, "--n_ctx", "2048",
    ]  # fmt: skip
    with serving(command, f"http://127.0.0.1:{port}/v1/models", isolated.parent / "llama-server.log"):
        result = hybrid(
            "ask",
            "What is the capital of France?",
            "--json",
            env={
                "HYBRID_SMALL_MODEL": "openai:smollm2",
                "HYBRID_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            },
        )

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["answered_by"] == "openai:smollm2"
    assert "Paris" in answer["answer"]
    assert answer["usage"]["openai:smollm2"]["input_tokens"] > 0


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

    # The shared review queue saw the case, knows it lives in the server, and records one verdict.
    from hybrid import api, audit, reviews
    from hybrid.settings import resolve_settings

    case = reviews.latest_case(resolve_settings(), thread)
    assert case is not None
    assert (case.origin, case.status, case.reviewer) == ("langgraph-api", "resolved", "sdk")
    assert api.pending_reviews() == []
    client.runs.wait(thread, "hybrid", command=Command(resume={"action": "reject", "reviewer": "late"}))
    resolved = [
        e for e in audit.events(resolve_settings(), thread_id=thread) if e["event"] == "review_resolved"
    ]
    assert [e["actor"] for e in resolved] == ["sdk"]
    assert client.threads.get_state(thread)["values"]["answer"] == final["answer"]


def test_langgraph_dev_serves_the_ingestion_graph(dev_server: str, tmp_path: Path) -> None:
    from langgraph_sdk import get_sync_client

    docs = tmp_path / "docs"
    docs.mkdir()
    (docs / "okapi.md").write_text("# Okapi\n\nThe okapi is a giraffid of the Congo rainforest.")
    (docs / "bad.txt").write_bytes(b"\xff\xfe\x00")
    client = get_sync_client(url=dev_server)
    thread = client.threads.create()["thread_id"]

    result = client.runs.wait(thread, "ingest", input={"paths": [str(docs)]})

    report = result["report"]
    assert report["chunks_added"] == 1
    assert list(report["failed"]) == [str(docs / "bad.txt")]
    assert report["ok"] is False

    answer = client.runs.wait(
        client.threads.create()["thread_id"],
        "hybrid",
        input={"question": "Where does the okapi live?"},
        context={"retrieval": "always"},
    )
    assert Path(answer["retrieval"]["hits"][0]["source"]).name == "okapi.md"


def test_the_embedded_model_streams_what_it_answers_with_token_log_probabilities() -> None:
    from langchain_core.messages import HumanMessage

    from hybrid.models import get_chat_model
    from hybrid.settings import resolve_settings

    settings = resolve_settings()
    model = get_chat_model(settings.tier_specs("small")[0], settings)
    question = [HumanMessage("What is the capital of France?")]

    answer = model.invoke(question, temperature=0.0, max_tokens=24)
    streamed = "".join(chunk.text for chunk in model.stream(question, temperature=0.0, max_tokens=24))

    assert streamed.strip() == answer.text.strip() != ""
    meta = answer.response_metadata
    assert meta["mean_token_logprob"] < 0
    assert 0 < meta["min_token_prob"] <= 1
    assert answer.usage_metadata["output_tokens"] <= 24


def test_the_pacing_test_hook_spaces_the_embedded_models_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from langchain_core.messages import HumanMessage

    from hybrid.models import get_chat_model
    from hybrid.settings import resolve_settings

    monkeypatch.setenv("HYBRID_TEST_MIN_TOKEN_INTERVAL_S", "0.2")
    settings = resolve_settings()
    model = get_chat_model(settings.tier_specs("small")[0], settings)
    question = [HumanMessage("List the numbers from 1 to 50.")]

    started = time.monotonic()
    chunks = list(model.stream(question, temperature=0.0, max_tokens=8))
    took = time.monotonic() - started

    tokens = sum(chunk.usage_metadata["output_tokens"] for chunk in chunks if chunk.usage_metadata)
    assert tokens == 8  # greedy decoding counts on to the token limit
    assert took >= 7 * 0.2  # a lower bound a machine of any speed meets: 8 tokens, 7 intervals
