"""`hybrid doctor`, readiness and dead configurations against real parts: the embedded models, a real
llama.cpp OpenAI-compatible server (running, stopped, asked for a model it does not serve), PostgreSQL
(running, and a URL that refuses connections), the Ollama profile with nothing listening, the `hybrid`
command's exit codes and `hybrid serve`'s answers."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from hybrid import api, doctor
from hybrid.errors import ModelsUnreachable
from hybrid.evals.servers import llama_server_command
from hybrid.settings import resolve_settings
from tests.servers import free_port, serving

pytestmark = pytest.mark.e2e

HYBRID = str(Path(sys.executable).parent / "hybrid")
QUESTION = "What is the capital of France?"


def hybrid(*args: str, **env: str) -> subprocess.CompletedProcess[str]:
    """The real `hybrid` command, in this test's environment plus `env`."""
    return subprocess.run(
        [HYBRID, *args], env={**os.environ, **env}, capture_output=True, text=True, timeout=600, check=False
    )


def check_named(checks: list[dict], prefix: str) -> dict:
    return next(c for c in checks if c["name"].startswith(prefix))


# --- The embedded models ----------------------------------------------------------------------------


def test_the_doctor_passes_on_the_embedded_models() -> None:
    result = hybrid("doctor")

    assert result.returncode == 0, result.stdout + result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].startswith("ok      model llamacpp:smollm2-135m-instruct (small tier): ")
    assert "loads in llama.cpp; prompted with its chat template" in lines[0]
    assert lines[1].startswith("ok      model llamacpp:gemma-3-270m (large tier): ")
    assert "prompted with completion prompts (it has no chat template)" in lines[1]
    assert any(line.startswith("ok      embedding model (MiniLM): ") for line in lines)
    assert any(line.startswith("ok      database (SQLite at ") for line in lines)
    assert lines[-1].endswith("Ready to answer.")

    report = json.loads(hybrid("doctor", "--json").stdout)
    assert report["ok"] is True
    assert {c["status"] for c in report["checks"] if c["required"]} <= {"ok", "skipped"}


# --- A real llama.cpp OpenAI-compatible server ------------------------------------------------------


@pytest.fixture
def llama_server(isolated: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[subprocess.Popen, str]]:
    """SmolLM2 served by llama-cpp-python's server as `smollm2`; HYBRID_OPENAI_BASE_URL points at it."""
    from hybrid.models.llamacpp import resolve_gguf

    port = free_port()
    command = llama_server_command(resolve_gguf("smollm2-135m-instruct"), "smollm2", port)
    base = f"http://127.0.0.1:{port}/v1"
    with serving(command, f"{base}/models", isolated.parent / "llama-server.log") as process:
        monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", base)
        monkeypatch.setenv("HYBRID_MODEL_TIMEOUT_S", "60")
        yield process, base


def test_a_running_server_that_lists_the_model_passes(llama_server, monkeypatch: pytest.MonkeyPatch) -> None:
    _, base = llama_server
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "openai:smollm2")

    [small, _large] = doctor.check_models(resolve_settings())
    assert (small.status, small.found) == ("ok", f"{base} accepts the key and lists smollm2")
    assert api.readiness().ready
    assert api.ask(QUESTION, force_route="small").answered_by == "openai:smollm2"


def test_a_model_the_server_does_not_serve_fails_the_doctor(
    llama_server, monkeypatch: pytest.MonkeyPatch
) -> None:
    _, base = llama_server
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "openai:qwen2.5-0.5b")

    [small, _large] = doctor.check_models(resolve_settings())

    assert small.status == "failed"
    assert small.found.startswith(
        f"{base} accepts the key but does not list qwen2.5-0.5b (it lists: smollm2)"
    )
    assert "HYBRID_SMALL_MODEL" in small.fix
    # llama.cpp's server answers any model name with the model it has: readiness cannot rule the
    # model out, and a question is answered, by SmolLM2. Only the doctor tells.
    assert api.readiness().ready
    answer = api.ask(QUESTION, force_route="small")
    assert answer.answered_by == "openai:qwen2.5-0.5b"
    assert answer.drafts[0]["error"] is None


def test_a_stopped_server_is_a_dead_configuration(llama_server, isolated: Path) -> None:
    process, base = llama_server
    process.terminate()
    process.wait(timeout=30)
    both = {"HYBRID_SMALL_MODEL": "openai:smollm2", "HYBRID_LARGE_MODEL": "openai:smollm2"}

    asked = hybrid("ask", QUESTION, **both)

    assert asked.returncode == 1
    assert asked.stdout == ""
    assert asked.stderr.startswith(
        f"error: no model could be reached: small tier: openai:smollm2 at {base} (connection refused); "
        f"large tier: openai:smollm2 at {base} (connection refused). Fix: start the OpenAI-compatible server"
    )
    assert "Run `hybrid doctor`" in asked.stderr
    assert hybrid("review", "list").stdout.strip() == "No pending reviews."

    checked = hybrid("doctor", **both)
    assert checked.returncode == 1
    line = (
        f"failed  model openai:smollm2 (small and large tier): cannot reach {base}/models: connection refused"
    )
    assert line in checked.stdout


# --- PostgreSQL -----------------------------------------------------------------------------------------


def test_a_postgresql_url_that_refuses_connections_fails_the_doctor_and_readiness() -> None:
    url = f"postgresql://postgres:secret@127.0.0.1:{free_port()}/hybrid"

    result = hybrid("doctor", "--json", HYBRID_CHECKPOINT_URL=url)

    assert result.returncode == 1
    database = check_named(json.loads(result.stdout)["checks"], "database")
    assert database["name"] == f"database (PostgreSQL {url.replace('secret', '***')})"
    assert database["status"] == "failed"
    assert "Connection refused" in database["found"]
    assert database["fix"].startswith("start PostgreSQL so that")
    assert "secret" not in result.stdout


def test_postgresql_tables_current_then_from_other_versions(postgres: str) -> None:
    import psycopg

    from hybrid.database import database_for

    settings = resolve_settings()
    assert doctor.check_database(settings)[0].found == "reachable; tables are created at first use"
    database_for(settings)  # what any command does first: creates and migrates the tables
    [current] = doctor.check_database(settings)
    assert current.status == "ok"
    assert current.found.startswith("reachable; tables current (checkpoint migration ")

    with psycopg.connect(postgres, autocommit=True) as connection:
        connection.execute(
            "DELETE FROM checkpoint_migrations WHERE v = (SELECT max(v) FROM checkpoint_migrations)"
        )
    [behind] = doctor.check_database(settings)
    assert (behind.status, behind.required) == ("warning", False)
    assert behind.fix == "Hybrid AI upgrades them when it next opens the database"

    with psycopg.connect(postgres, autocommit=True) as connection:
        connection.execute("ALTER TABLE hybrid_audit DROP COLUMN event_key")
    [old] = doctor.check_database(settings)
    assert (old.status, old.found) == ("failed", "hybrid_audit lacks event_key")


# --- The Ollama profile with nothing listening ------------------------------------------------------------


@pytest.fixture
def dead_ollama(monkeypatch: pytest.MonkeyPatch) -> str:
    url = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("HYBRID_PROFILE", "ollama")
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", url)
    return url


def test_the_ollama_profile_with_nothing_listening_exits_non_zero_and_opens_no_case(dead_ollama: str) -> None:
    asked = hybrid("ask", QUESTION)

    assert asked.returncode == 1
    refused = f"at {dead_ollama} (connection refused)"
    assert asked.stderr.strip() == (
        f"error: no model could be reached: small tier: ollama:qwen2.5:0.5b {refused}; "
        f"large tier: ollama:llama3.1:8b {refused}. Fix: start Ollama (`ollama serve`) where "
        f"HYBRID_OLLAMA_BASE_URL points ({dead_ollama}), or point HYBRID_OLLAMA_BASE_URL at your "
        "Ollama server. Run `hybrid doctor` to check the whole configuration."
    )
    assert hybrid("review", "list").stdout.strip() == "No pending reviews."
    [event] = [json.loads(line) for line in hybrid("audit", "export").stdout.splitlines()]
    assert event["event"] == "models_unreachable"
    assert [m["endpoint"] for m in event["data"]["unreachable"]] == [dead_ollama, dead_ollama]

    checked = hybrid("doctor")
    assert checked.returncode == 1
    assert checked.stdout.startswith(
        f"failed  model ollama:qwen2.5:0.5b (small tier): cannot reach {dead_ollama}/api/tags: "
        "connection refused"
    )


def test_a_configuration_may_still_ask_for_review(dead_ollama: str) -> None:
    asked = hybrid("ask", QUESTION, HYBRID_UNREACHABLE_MODELS="review")
    assert asked.returncode == 0
    assert asked.stdout.startswith("Waiting for human review")
    assert "no model could be reached" in hybrid("review", "list").stdout


def test_the_server_is_live_but_not_ready_and_answers_503(dead_ollama: str, isolated: Path) -> None:
    port = free_port()
    server = f"http://127.0.0.1:{port}"
    with serving([HYBRID, "serve", "--port", str(port)], f"{server}/health", isolated.parent / "serve.log"):
        ready = httpx.get(f"{server}/ready", timeout=30)
        assert ready.status_code == 503
        assert ready.headers["Retry-After"] == "5"
        assert ready.json()["status"] == "unready"
        assert [t["can_answer"] for t in ready.json()["tiers"]] == [False, False]
        assert ready.json()["database"]["status"] == "ok"

        body = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}
        answered = httpx.post(f"{server}/v1/chat/completions", json=body, timeout=120)
        assert answered.status_code == 503
        assert answered.headers["Retry-After"] == "30"
        error = answered.json()["error"]
        assert error["code"] == "models_unreachable"
        assert f"ollama:llama3.1:8b at {dead_ollama}" in error["message"]

        streamed = httpx.post(f"{server}/v1/chat/completions", json={**body, "stream": True}, timeout=120)
        assert streamed.status_code == 503  # refused before the stream starts
        assert streamed.json()["error"]["code"] == "models_unreachable"

        assert httpx.get(f"{server}/health", timeout=30).status_code == 200
        assert httpx.get(f"{server}/v1/hybrid/reviews", timeout=30).json()["data"] == []


def test_the_api_raises_the_typed_error_for_the_ollama_profile(dead_ollama: str) -> None:
    with pytest.raises(ModelsUnreachable) as caught:
        api.ask(QUESTION)
    assert [m["model"] for m in caught.value.unreachable] == ["ollama:qwen2.5:0.5b", "ollama:llama3.1:8b"]
    assert api.pending_reviews() == []
