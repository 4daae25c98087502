"""The server's OpenAPI document: every status each endpoint answers, with the body it carries.

FastAPI documents what a handler returns on success and a 422 for invalid input. Ours answers
invalid input with 400 in OpenAI's error shape, 202 for a question parked for a reviewer, 401
without a valid key, 403, 404, 409, 422, 429 and 503 as `hybrid/server.py` decides: a client generated from
the document, or a fuzzer checking responses against it (tests/test_fuzz.py, `hybrid eval fuzz`),
must see what really comes back.
"""

from __future__ import annotations

from typing import Any, Literal

from fastapi import FastAPI
from pydantic import BaseModel, ConfigDict, Field


class _Open(BaseModel):
    model_config = ConfigDict(extra="allow")


class ErrorDetail(_Open):
    message: str
    type: str
    param: str | None = None
    code: str | None = None


class ErrorResponse(BaseModel):
    """Every error, in OpenAI's shape."""

    error: ErrorDetail


class ChatMessageOut(_Open):
    role: Literal["assistant"]
    content: str | None


class Choice(_Open):
    index: int
    message: ChatMessageOut
    finish_reason: str | None


class Usage(_Open):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class HybridField(_Open):
    """Hybrid's own account of the answer (route, reasons, verifier, sources, costs, timings)."""

    thread_id: str
    trace_id: str | None
    status: Literal["answered", "pending_review", "rejected"]
    route: str
    answered_by: str | None
    explanation: str


class ChatCompletion(_Open):
    id: str
    object: Literal["chat.completion"]
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    hybrid: HybridField


class ModelCard(_Open):
    id: str
    object: Literal["model"]
    created: int
    owned_by: str


class ModelList(BaseModel):
    object: Literal["list"]
    data: list[ModelCard]


class ReviewCase(_Open):
    thread_id: str
    case_id: str
    created_at: str
    deadline: str
    claimed_by: str | None
    request: dict[str, Any] = Field(description="What the reviewer is shown: question, drafts, why, actions.")


class ReviewList(BaseModel):
    object: Literal["list"]
    data: list[ReviewCase]


class Recorded(BaseModel):
    status: Literal["recorded"]


class Health(BaseModel):
    status: Literal["ok"]


class Readiness(_Open):
    """Whether a tier can answer and the database is up; the details (tiers, database, problems)
    only for a caller with a key when keys are required."""

    status: Literal["ready", "unready"]


class ObjectList(BaseModel):
    """A list of records (conversations, audit rows), each as the endpoint's page describes."""

    object: Literal["list"]
    data: list[dict[str, Any]]


class PolicyStatus(_Open):
    """The loaded policy file: tenants, tiers, rules and keys (by id), for admins."""


_MODELS: tuple[type[BaseModel], ...] = (
    ObjectList,
    PolicyStatus,
    ErrorResponse,
    ChatCompletion,
    ModelList,
    ReviewList,
    Recorded,
    Health,
    Readiness,
)

_ERRORS = {
    400: "Invalid request: a malformed body, an empty or oversized question, a bad setting.",
    401: "No valid API key (`Authorization: Bearer <key>`, when HYBRID_API_KEYS or a policy file sets keys).",
    403: "The key may not do this: another tenant's conversation, an admin-only endpoint, or a policy "
    "rule refused the question (`code`: forbidden or policy_refused).",
    404: "No such model, conversation or review case.",
    409: "The conversation waits for a reviewer, the review case was already resolved (or is being "
    "resolved by someone else, or belongs to a LangGraph server's run), or the turn has no answer.",
    422: "The review decision is malformed or not allowed for this case.",
    429: "Too many requests wait for a run slot, the key's rate limit is reached, or its tenant's budget "
    "is spent (`code` says which); retry after `Retry-After` seconds.",
    503: "The database or every model cannot be reached right now; retry after `Retry-After` seconds.",
}
_COMPLETION = "#/components/schemas/ChatCompletion"
# (path, method) -> {status: schema of a JSON body, or a media type of its own}
_RESPONSES: dict[tuple[str, str], dict[int, Any]] = {
    ("/health", "get"): {200: "Health"},
    ("/ready", "get"): {200: "Readiness", 503: "Readiness"},
    ("/metrics", "get"): {200: "text/plain"},
    ("/v1/models", "get"): {200: "ModelList", 401: "ErrorResponse"},
    ("/v1/chat/completions", "post"): {
        200: "stream",
        202: "ChatCompletion",
        **dict.fromkeys((400, 401, 403, 404, 409, 429, 503), "ErrorResponse"),
    },
    ("/v1/hybrid/threads/{thread_id}", "get"): {
        200: "ChatCompletion",
        202: "ChatCompletion",
        **dict.fromkeys((400, 401, 403, 404, 503), "ErrorResponse"),
    },
    ("/v1/hybrid/reviews", "get"): {200: "ReviewList", **dict.fromkeys((401, 403, 503), "ErrorResponse")},
    ("/v1/hybrid/reviews/{thread_id}", "post"): {
        200: "ChatCompletion",
        **dict.fromkeys((400, 401, 403, 404, 409, 422, 429, 503), "ErrorResponse"),
    },
    ("/v1/hybrid/feedback", "post"): {
        200: "Recorded",
        **dict.fromkeys((400, 401, 403, 404, 409, 503), "ErrorResponse"),
    },
    ("/v1/hybrid/conversations", "get"): {
        200: "ObjectList",
        **dict.fromkeys((400, 401, 403, 503), "ErrorResponse"),
    },
    ("/v1/hybrid/audit", "get"): {200: "ObjectList", **dict.fromkeys((400, 401, 403, 503), "ErrorResponse")},
    ("/v1/hybrid/policy", "get"): {200: "PolicyStatus", **dict.fromkeys((401, 403, 503), "ErrorResponse")},
}
_DESCRIPTIONS = {
    200: "OK",
    202: "The question waits for a reviewer: poll /v1/hybrid/threads/{thread_id}.",
    **_ERRORS,
}
_PUBLIC = {"/health", "/ready", "/metrics"}
_EXAMPLES: dict[tuple[str, str], dict[str, Any]] = {
    ("/v1/chat/completions", "post"): {
        "model": "hybrid",
        "messages": [{"role": "user", "content": "What is the capital of France?"}],
    },
    ("/v1/hybrid/reviews/{thread_id}", "post"): {"action": "edit", "answer": "Paris.", "reviewer": "ana"},
    ("/v1/hybrid/feedback", "post"): {"thread_id": "9f1c0c4e", "rating": "up", "comment": "Right."},
}


def _json(name: str) -> dict[str, Any]:
    return {"application/json": {"schema": {"$ref": f"#/components/schemas/{name}"}}}


def _content(kind: str) -> dict[str, Any]:
    if kind == "text/plain":
        return {"text/plain": {"schema": {"type": "string"}}}
    if kind == "stream":  # a completion, or with `"stream": true` server-sent events of chunks
        return {
            "application/json": {"schema": {"$ref": _COMPLETION}},
            "text/event-stream": {"schema": {"type": "string"}},
        }
    return _json(kind)


def document(schema: dict[str, Any], *, keys_required: bool) -> dict[str, Any]:
    """Rewrite FastAPI's document in place with the responses above (and returns it)."""
    components = schema.setdefault("components", {}).setdefault("schemas", {})
    for model in _MODELS:
        found = model.model_json_schema(ref_template="#/components/schemas/{model}")
        components.update(found.pop("$defs", {}))
        components[model.__name__] = found
    for name in ("HTTPValidationError", "ValidationError"):
        components.pop(name, None)
    _describe_requests(components)
    if keys_required:
        schema["components"]["securitySchemes"] = {"bearer": {"type": "http", "scheme": "bearer"}}
    for path, operations in schema.get("paths", {}).items():
        for method, operation in operations.items():
            statuses = _RESPONSES.get((path, method))
            if statuses is None:
                continue
            if keys_required and path not in _PUBLIC:
                operation["security"] = [{"bearer": []}]
                statuses = {**statuses, 401: "ErrorResponse"}
            responses = {}
            for code, kind in sorted(statuses.items()):
                entry: dict[str, Any] = {"description": _DESCRIPTIONS[code], "content": _content(kind)}
                if code in (429, 503):
                    entry["headers"] = {"Retry-After": {"schema": {"type": "string"}}}
                responses[str(code)] = entry
            operation["responses"] = responses
            example = _EXAMPLES.get((path, method))
            body = operation.get("requestBody", {}).get("content", {}).get("application/json")
            if example is not None and body is not None:
                body["example"] = example
    return schema


def _describe_requests(components: dict[str, Any]) -> None:
    """What the request models cannot say themselves: the model names served (anything else is a
    404, as OpenAI answers) and the per-run settings `hybrid.overrides` accepts (others: 400)."""
    from hybrid.settings import PER_RUN_FIELDS

    chat = components.get("ChatRequest", {}).get("properties", {})
    if "model" in chat:
        chat["model"]["pattern"] = r"^hybrid(:[A-Za-z0-9_.-]+)?$"
        chat["model"]["description"] = "`hybrid`, or `hybrid:<profile>` (GET /v1/models lists them)."
    overrides = components.get("HybridOptions", {}).get("properties", {}).get("overrides")
    if overrides is not None:
        overrides["propertyNames"] = {"enum": list(PER_RUN_FIELDS)}


def install(app: FastAPI) -> None:
    """Serve the rewritten document at /openapi.json (built once, on first request)."""
    from fastapi.openapi.utils import get_openapi

    from hybrid import policy as policies
    from hybrid.settings import resolve_settings

    def openapi() -> dict[str, Any]:
        if app.openapi_schema is None:
            schema = get_openapi(title=app.title, version=app.version, routes=app.routes)
            keys = policies.keys_configured(resolve_settings())
            app.openapi_schema = document(schema, keys_required=keys)
        return app.openapi_schema

    app.openapi = openapi  # type: ignore[method-assign]
