"""Knowing the local models' state: cold, busy, or too small for the prompt."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from hybrid import api
from hybrid.models import get_chat_model
from hybrid.models.state import ModelState, in_flight, model_state, reset
from hybrid.routing.decision import decide_route
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels


class OllamaPs:
    """Answers Ollama's `/api/ps` with the configured loaded models; records every other request."""

    def __init__(self) -> None:
        self.loaded: list[str] = []
        self.other: list[str] = []
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:
                body = json.dumps({"models": [{"name": n, "model": n} for n in owner.loaded]}).encode()
                self.send_response(200 if self.path == "/api/ps" else 404)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def do_POST(self) -> None:
                owner.other.append(self.path)
                self.send_response(500)
                self.end_headers()

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()


@pytest.fixture
def ollama(monkeypatch: pytest.MonkeyPatch) -> Iterator[OllamaPs]:
    server = OllamaPs()
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", server.url)
    reset()
    yield server
    server.server.shutdown()
    reset()


@pytest.mark.unit
def test_ollama_models_are_known_loaded_or_cold(ollama: OllamaPs) -> None:
    ollama.loaded = ["qwen2.5:0.5b"]
    settings = resolve_settings()
    assert model_state("ollama:qwen2.5:0.5b", settings).loaded is True
    assert model_state("ollama:llama3.1:8b", settings).loaded is False
    assert model_state("ollama:llama3.1:8b", settings).cold_start_s == settings.ollama_cold_start_s
    assert model_state("openai:gpt-4o", settings).loaded is None


@pytest.mark.unit
def test_an_unreachable_ollama_is_unknown_not_an_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", "http://127.0.0.1:9")
    reset()
    assert model_state("ollama:qwen2.5:0.5b", resolve_settings()).loaded is None


@pytest.mark.unit
def test_calls_in_flight_are_counted() -> None:
    settings = resolve_settings()
    with in_flight("fake:x"), in_flight("fake:x"):
        assert model_state("fake:x", settings).in_flight == 2
    assert model_state("fake:x", settings).in_flight == 0


def route_with(states: dict[str, ModelState], prompt_tokens: int = 50, **overrides):
    settings = resolve_settings(small_model="ollama:small", large_model="fake:large", **overrides)
    return decide_route(
        "What is the capital of France?",
        previous_questions=[],
        kb_score=0.0,
        kb_available=False,
        model_is_local=lambda spec: True,
        settings=settings,
        model_states=states,
        prompt_tokens=prompt_tokens,
    )


def state(
    spec: str, loaded: bool | None = True, busy: int = 0, context: int | None = 2048, cold: float = 20.0
):
    return ModelState(spec, loaded, busy, context, cold)


@pytest.mark.unit
def test_a_cold_small_model_starts_the_query_on_a_warm_large_one() -> None:
    decision = route_with(
        {"ollama:small": state("ollama:small", loaded=False), "fake:large": state("fake:large")}
    )
    assert decision["route"] == "large"
    assert any("ollama:small is cold (about 20s to load" in r for r in decision["reasons"])
    warm = route_with({"ollama:small": state("ollama:small"), "fake:large": state("fake:large")})
    assert warm["route"] == "small"
    both_cold = route_with(
        {"ollama:small": state("ollama:small", loaded=False), "fake:large": state("fake:large", loaded=False)}
    )
    assert both_cold["route"] == "small"  # nothing warmer to go to


@pytest.mark.unit
def test_a_busy_small_model_starts_the_query_on_an_idle_large_one() -> None:
    decision = route_with({"ollama:small": state("ollama:small", busy=3), "fake:large": state("fake:large")})
    assert decision["route"] == "large"
    assert any("is busy (3 calls in flight)" in r for r in decision["reasons"])


@pytest.mark.unit
def test_a_prompt_too_big_for_the_small_model_goes_large_and_is_never_truncated() -> None:
    states = {
        "ollama:small": state("ollama:small", context=512),
        "fake:large": state("fake:large", context=None),
    }
    decision = route_with(states, prompt_tokens=600)
    assert decision["route"] == "large"
    assert decision["models"]["small"] == []
    assert any("does not fit ollama:small (never truncated)" in r for r in decision["reasons"])


@pytest.mark.integration
def test_the_graph_routes_around_a_cold_ollama_model(
    ollama: OllamaPs, fakes: FakeModels, monkeypatch
) -> None:
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "ollama:qwen2.5:0.5b")
    fakes.set("large", "Paris is the capital of France.")

    answer = api.ask("What is the capital of France?")

    assert answer.answered_by == "fake:large"
    assert answer.route["route"] == "large"
    assert ollama.other == []  # the cold model was not even asked


@pytest.mark.integration
def test_an_ollama_prompt_over_num_ctx_is_refused_before_sending(
    ollama: OllamaPs, fakes: FakeModels, monkeypatch
) -> None:
    ollama.loaded = ["qwen2.5:0.5b"]
    monkeypatch.setenv("HYBRID_SMALL_MODEL", "ollama:qwen2.5:0.5b")
    monkeypatch.setenv("HYBRID_N_CTX", "256")
    monkeypatch.setenv("HYBRID_MAX_QUESTION_CHARS", "100000")
    fakes.set("large", "Summary.")

    answer = api.ask(
        "Summarise: " + "lorem ipsum dolor " * 100, force_route="small", large_tier_down="review"
    )

    attempt = answer.drafts[0]["attempts"][0]
    assert "would not fit ollama:qwen2.5:0.5b's num_ctx of 256" in attempt["error"]
    assert ollama.other == []  # nothing was sent to be truncated


@pytest.mark.unit
def test_ollama_models_get_keep_alive_and_num_ctx_from_configuration(monkeypatch) -> None:
    monkeypatch.setenv("HYBRID_OLLAMA_KEEP_ALIVE", "2h")
    monkeypatch.setenv("HYBRID_N_CTX", "4096")
    model = get_chat_model("ollama:qwen2.5:0.5b", resolve_settings())
    assert (model.keep_alive, model.num_ctx) == ("2h", 4096)
