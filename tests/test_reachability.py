"""Telling an unreachable model from one that was reached and failed, and the edges that act on it.

The errors are the real clients' own: raised against a loopback port nothing listens on, or built
the way the clients build them from a server's answer. `tests/test_unreachable.py` runs the graph.
"""

from __future__ import annotations

import socket
from typing import Any

import httpx
import ollama
import openai
import pytest

from graphs.edges import after_verify, unreachable_next
from hybrid.errors import UnknownModel
from hybrid.models import reachability
from hybrid.models.reachability import (
    KEY_REFUSED,
    NO_CONNECTION,
    NOT_FOUND,
    REFUSED,
    UNKNOWN_HOST,
    UNKNOWN_MODEL,
    unreachable_reason,
)
from tests.servers import free_port, refused

pytestmark = pytest.mark.unit

QUESTION = "What is the capital of France?"


def _request() -> httpx.Request:
    return httpx.Request("POST", "http://127.0.0.1:8080/v1/chat/completions")


def _status_error(kind: type[openai.APIStatusError], status: int) -> openai.APIStatusError:
    return kind(f"Error code: {status}", response=httpx.Response(status, request=_request()), body=None)


# --- Classification ------------------------------------------------------------------------------


def test_a_refused_connection_is_unreachable_whichever_client_saw_it() -> None:
    assert unreachable_reason(refused()) == REFUSED

    client = openai.OpenAI(base_url=f"http://127.0.0.1:{free_port()}/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.APIConnectionError) as caught:
        client.models.list()
    assert unreachable_reason(caught.value) == REFUSED  # the socket error is its cause

    with pytest.raises(ConnectionError) as bare:  # the Ollama client drops the cause
        ollama.Client(host=f"http://127.0.0.1:{free_port()}").list()
    assert unreachable_reason(bare.value) == NO_CONNECTION


def test_an_unknown_host_is_unreachable() -> None:
    with pytest.raises(httpx.ConnectError) as caught:
        httpx.get("http://no-such-host.invalid:8080/", timeout=5)
    assert unreachable_reason(caught.value) == UNKNOWN_HOST
    assert unreachable_reason(socket.gaierror(-2, "Name or service not known")) == UNKNOWN_HOST


def test_an_unknown_model_or_a_refused_key_is_unreachable() -> None:
    assert unreachable_reason(_status_error(openai.NotFoundError, 404)) == NOT_FOUND
    assert unreachable_reason(ollama.ResponseError('model "llama3.1:8b" not found', 404)) == NOT_FOUND
    assert unreachable_reason(_status_error(openai.AuthenticationError, 401)) == KEY_REFUSED
    assert unreachable_reason(_status_error(openai.PermissionDeniedError, 403)) == KEY_REFUSED
    assert unreachable_reason(UnknownModel("llamacpp model 'x' is neither ...")) == UNKNOWN_MODEL


@pytest.mark.parametrize(
    "error",
    [
        TimeoutError("no answer within 60.0s"),
        httpx.ConnectTimeout("timed out"),
        httpx.ReadTimeout("timed out"),
        ConnectionResetError("reset by peer"),
        ConnectionError("down"),
        ValueError("bad request"),
    ],
    ids=lambda e: type(e).__name__,
)
def test_timeouts_and_errors_of_a_reached_server_are_not(error: Exception) -> None:
    assert unreachable_reason(error) is None


def test_status_errors_other_than_404_401_403_are_a_reached_server() -> None:
    assert unreachable_reason(_status_error(openai.InternalServerError, 500)) is None
    assert unreachable_reason(_status_error(openai.RateLimitError, 429)) is None
    timeout = openai.APITimeoutError(request=_request())  # a subclass of APIConnectionError
    timeout.__cause__ = httpx.ReadTimeout("timed out")
    assert unreachable_reason(timeout) is None


def test_fixes_say_what_to_do_for_each_provider(monkeypatch: pytest.MonkeyPatch) -> None:
    from hybrid.settings import resolve_settings

    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", "http://127.0.0.1:9")
    settings = resolve_settings()
    assert "ollama serve" in reachability.fix_for("ollama:llama3.1:8b", REFUSED, settings, ["large"])
    assert "ollama pull llama3.1:8b" in reachability.fix_for("ollama:llama3.1:8b", UNKNOWN_MODEL, settings)
    assert "HYBRID_OPENAI_API_KEY" in reachability.fix_for("openai:gpt", KEY_REFUSED, settings)
    assert "HYBRID_SMALL_MODEL" in reachability.fix_for("openai:gpt", NOT_FOUND, settings, ["small"])
    assert "does not resolve" in reachability.fix_for("openai:gpt", UNKNOWN_HOST, settings)
    assert "make setup" in reachability.fix_for("llamacpp:x.gguf", UNKNOWN_MODEL, settings)


def test_a_model_on_its_own_server_is_probed_there_without_a_key(monkeypatch: pytest.MonkeyPatch) -> None:
    """`hybrid cluster`'s replicas name each model's server in HYBRID_OPENAI_ENDPOINTS and set no
    key (llama.cpp's server needs none): the probe asks where the model factory sends, as it does."""
    from hybrid.settings import resolve_settings

    asked: list[tuple[str, str]] = []

    def get(url: str, *, headers: dict[str, str], timeout: float) -> httpx.Response:
        asked.append((url, headers["Authorization"]))
        return httpx.Response(200, json={"data": [{"id": "smollm2"}]}, request=httpx.Request("GET", url))

    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.setenv("HYBRID_OPENAI_ENDPOINTS", '{"smollm2": "http://127.0.0.1:9/v1"}')
    monkeypatch.setattr(reachability.httpx, "get", get)
    settings = resolve_settings()

    found = reachability.probe("openai:smollm2", settings)
    assert (found.status, found.endpoint) == ("ok", "http://127.0.0.1:9/v1"), found
    assert asked == [("http://127.0.0.1:9/v1/models", "Bearer unused")]
    # A model with no server of its own and no key is still refused before anything is asked.
    assert reachability.probe("openai:gpt-4o", settings).status == "unreachable"
    assert len(asked) == 1


# --- The edges ------------------------------------------------------------------------------------


def _draft(tier: str, kind: str | None, text: str = "") -> dict[str, Any]:
    attempts = [
        {"model": f"x:{tier}", "outcome": "error", "unreachable": REFUSED if kind == "unreachable" else None}
    ]
    return {"tier": tier, "model": f"x:{tier}", "text": text, "error": "failed" if kind else None,
            "error_kind": kind, "attempts": attempts}  # fmt: skip


def _state(*drafts: dict[str, Any], route: str = "small", policy: str = "error", **extra: Any) -> Any:
    verdicts = [{"tier": d["tier"], "passed": False, "score": 0.0, "threshold": 0.5} for d in drafts]
    return {
        "route": {"route": route, "forced": False, "allowed_tiers": ["small", "large"],
                  "policies": {"large_tier_down": "review", "unreachable_models": policy}},
        "drafts": list(drafts), "verifications": verdicts, **extra,
    }  # fmt: skip


def test_every_allowed_tier_unreachable_ends_the_turn() -> None:
    state = _state(_draft("small", "unreachable"), _draft("large", "unreachable"))
    assert after_verify(state) == "unreachable"


def test_an_untried_tier_is_tried_before_calling_the_configuration_dead() -> None:
    assert after_verify(_state(_draft("small", "unreachable"))) == "escalate"
    large_first = _state(_draft("large", "unreachable"), route="large")
    assert after_verify(large_first) == "answer_small"


def test_a_small_draft_after_an_unreachable_large_tier_is_not_escalated_again() -> None:
    state = _state(_draft("large", "unreachable"), _draft("small", None, "Lyon."), route="large")
    assert after_verify(state) == "human_review"


def test_review_policy_and_review_rounds_keep_the_reviewer() -> None:
    dead = (_draft("small", "unreachable"), _draft("large", "unreachable"))
    assert after_verify(_state(*dead, policy="review")) == "human_review"
    assert unreachable_next(_state(*dead, review_round=1)) is None


def test_a_tier_reached_but_failing_is_a_bad_day_not_a_dead_configuration() -> None:
    assert (
        after_verify(_state(_draft("small", "unreachable"), _draft("large", "tier_down"))) == "human_review"
    )
    assert (
        after_verify(_state(_draft("small", "tier_down"), _draft("large", "unreachable"))) == "human_review"
    )
