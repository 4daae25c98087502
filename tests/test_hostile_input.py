"""What the fuzzer found, pinned: every refusal is a 4xx in OpenAI's shape, never a 500, and the
OpenAPI document says so. In-process, fake models."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from hybrid.server import create_app
from tests.fakes import FakeModels

pytestmark = pytest.mark.unit

ASK = {"model": "hybrid", "messages": [{"role": "user", "content": "What is the capital of France?"}]}


@pytest.fixture
def keyed(fakes: FakeModels, monkeypatch: pytest.MonkeyPatch) -> TestClient:
    monkeypatch.setenv("HYBRID_API_KEYS", "secret")
    fakes.set("small", "Paris.")
    return TestClient(create_app(), raise_server_exceptions=False)


def error_of(response) -> dict:  # type: ignore[no-untyped-def]
    body = response.json()
    assert set(body) == {"error"}
    assert {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]


def test_a_key_with_non_ascii_characters_is_refused_not_a_crash(keyed: TestClient, fakes: FakeModels) -> None:
    # HTTP headers are bytes; the server reads these as Latin-1, "clé-ünïcode".
    response = keyed.get("/v1/models", headers={"Authorization": "Bearer clé-ünïcode".encode("latin-1")})
    assert response.status_code == 401
    assert error_of(response)["code"] == "invalid_api_key"
    key = "Bearer ключ".encode()  # UTF-8 bytes, read back as other characters: still no match
    response = keyed.post("/v1/chat/completions", json=ASK, headers={"Authorization": key})
    assert response.status_code == 401
    assert fakes.calls("small") == []  # nothing ran


def test_what_the_framework_refuses_is_in_openai_shape_too(keyed: TestClient) -> None:
    auth = {"Authorization": "Bearer secret"}
    broken = keyed.post(
        "/v1/chat/completions", content=b"{not json", headers=auth | {"content-type": "application/json"}
    )
    assert broken.status_code == 400
    assert error_of(broken)["type"] == "invalid_request_error"
    assert keyed.get("/no/such/path").status_code == 404
    assert error_of(keyed.get("/no/such/path"))["message"] == "Not Found"
    assert keyed.delete("/v1/models", headers=auth).status_code == 405


def test_a_text_part_without_text_is_a_400(keyed: TestClient, fakes: FakeModels) -> None:
    body = ASK | {"messages": [{"role": "user", "content": [{"type": "text", "text": None}]}]}
    response = keyed.post("/v1/chat/completions", json=body, headers={"Authorization": "Bearer secret"})
    assert response.status_code == 400
    assert "text" in error_of(response)["message"]
    assert fakes.calls("small") == []


def test_the_openapi_document_lists_every_status_with_its_body(keyed: TestClient) -> None:
    document = keyed.get("/openapi.json").json()
    chat = document["paths"]["/v1/chat/completions"]["post"]
    # 403: another tenant's conversation, or a policy rule refused the question.
    assert set(chat["responses"]) == {"200", "202", "400", "401", "403", "404", "409", "429", "503"}
    assert chat["security"] == [{"bearer": []}]
    assert chat["responses"]["400"]["content"]["application/json"]["schema"]["$ref"].endswith("ErrorResponse")
    assert "text/event-stream" in chat["responses"]["200"]["content"]
    assert "Retry-After" in chat["responses"]["429"]["headers"]
    for path, operations in document["paths"].items():
        for operation in operations.values():
            # FastAPI's default 422 is gone (we answer invalid input with 400); only a review
            # decision the case does not allow is a 422 (hybrid/server.py, InvalidDecision).
            expected = path == "/v1/hybrid/reviews/{thread_id}"
            assert ("422" in operation["responses"]) == expected, path
    policy = document["paths"]["/v1/hybrid/policy"]["get"]
    assert set(policy["responses"]) == {"200", "401", "403", "503"}  # admin keys only
    ready = document["paths"]["/ready"]["get"]
    assert set(ready["responses"]) == {"200", "503"}
    assert "security" not in ready
    assert "security" not in document["paths"]["/health"]["get"]
