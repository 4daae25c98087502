"""What the server does when a store fails under it, and why a held stream sends nothing early.
In-process, fake models: the real thing runs in `hybrid eval chaos` (tests/test_cluster_e2e.py)."""

from __future__ import annotations

import pytest
import sqlalchemy.exc
from fastapi.testclient import TestClient

from hybrid.server import _error_for, create_app
from tests.fakes import FakeModels

pytestmark = pytest.mark.unit

QUESTION = "What is the capital of France?"


def test_a_database_that_cannot_be_reached_is_a_503_to_retry_not_a_500() -> None:
    import psycopg
    from psycopg_pool import PoolTimeout

    for error in (
        psycopg.OperationalError("connection refused"),
        PoolTimeout("couldn't get a connection after 30.00 sec"),
        sqlalchemy.exc.OperationalError(
            "SELECT 1", {}, psycopg.OperationalError("server closed the connection")
        ),
    ):
        mapped = _error_for(error)
        assert (mapped.status, mapped.code) == (503, "store_unavailable"), error
        assert mapped.headers == {"Retry-After": "2"}
    assert _error_for(RuntimeError("a bug")).status == 500


def test_a_run_that_loses_its_database_answers_503(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    import psycopg

    from hybrid import api

    fakes.set("small", "Paris.")

    def down(*_args: object, **_kwargs: object) -> None:
        raise psycopg.OperationalError("terminating connection due to administrator command")

    monkeypatch.setattr(api, "ask", down)
    response = TestClient(create_app(), raise_server_exceptions=False).post(
        "/v1/chat/completions", json={"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}]}
    )
    assert response.status_code == 503
    assert response.json()["error"]["code"] == "store_unavailable"
    assert response.headers["retry-after"] == "2"


def test_a_held_stream_starts_only_once_its_answer_is_ready(fakes: FakeModels) -> None:
    """With `hold`, the response begins after the run: a replica that dies mid-run has sent no byte,
    so the balancer may send the request to another replica."""
    fakes.set("small", "The capital of France is Paris.")
    body = {"model": "hybrid", "messages": [{"role": "user", "content": QUESTION}], "stream": True}

    with TestClient(create_app()).stream("POST", "/v1/chat/completions", json=body) as response:
        assert response.status_code == 200
        assert len(fakes.calls("small")) == 1  # the model had answered before the first byte
        text = "".join(response.iter_text())
    assert text.endswith("data: [DONE]\n\n")
    assert "Paris" in text
