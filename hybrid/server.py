"""An OpenAI-compatible HTTP server: point an OpenAI client at Hybrid AI and get the routing.

    hybrid serve --port 8000
    OpenAI(base_url="http://127.0.0.1:8000/v1", api_key=...).chat.completions.create(
        model="hybrid", messages=[{"role": "user", "content": "What is the capital of France?"}])

Endpoints: `POST /v1/chat/completions` (model `hybrid` or `hybrid:<profile>`; streaming or not),
`GET /v1/models`, `GET /health` (liveness), `GET /ready` (readiness), `GET /metrics`, and
Hybrid's own: `GET /v1/hybrid/threads/{id}` (poll a conversation), `GET /v1/hybrid/reviews`,
`POST /v1/hybrid/reviews/{thread_id}`, `POST /v1/hybrid/feedback`, `GET /v1/hybrid/conversations`,
`GET /v1/hybrid/audit` and `GET /v1/hybrid/policy`.

With a policy file (docs/policies.md), a key is a tenant's or an admin's: a tenant's key sees
only its own conversations, reviews, audit rows and feedback (403 for another's), its tier's
rate limit answers 429 with Retry-After, and its tier's priority orders the wait for a run slot.

Every response carries a `hybrid` field (route, status, explanation, verifier, sources, trace id,
costs, timings) and `X-Hybrid-*` headers. A question waiting for a reviewer answers `202` with
`hybrid.status = "pending_review"`; poll `GET /v1/hybrid/threads/{thread_id}` until it is `200`.
Errors use OpenAI's shape, `{"error": {"message", "type", "param", "code"}}`.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import heapq
import itertools
import json
import math
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field, field_validator
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hybrid import api, observability, openapi
from hybrid.errors import (
    BudgetExhausted,
    CaseAlreadyResolved,
    ConversationBusy,
    ConversationNotFound,
    Forbidden,
    HybridError,
    InvalidDecision,
    InvalidQuestion,
    InvalidSetting,
    ModelsUnreachable,
    NoAnswer,
    PolicyRefused,
    ReviewElsewhere,
    ReviewError,
    TooManyRequests,
    Unauthenticated,
    UnknownModel,
)
from hybrid.policy import Caller, LoadedPolicy, current_policy
from hybrid.settings import Settings, resolve_settings

MODEL = "hybrid"


class ChatMessage(BaseModel):
    model_config = ConfigDict(extra="allow")

    role: Literal["system", "user", "assistant", "tool", "developer"]
    content: str | list[dict[str, Any]] | None = None

    @field_validator("content")
    @classmethod
    def _text_parts_are_text(cls, content: Any) -> Any:
        if isinstance(content, list):
            for part in content:
                if part.get("type") == "text" and not isinstance(part.get("text"), str):
                    raise ValueError("a content part of type 'text' needs a string 'text'")
        return content

    @property
    def text(self) -> str:
        if isinstance(self.content, list):  # content parts: keep the text ones
            return "".join(part.get("text", "") for part in self.content if part.get("type") == "text")
        return self.content or ""


class HybridOptions(BaseModel):
    """Hybrid's own request options, in the `hybrid` field of the request body."""

    model_config = ConfigDict(extra="forbid")

    thread_id: str | None = Field(None, description="Continue a server-side conversation.")
    stream_policy: Literal["hold", "correct"] | None = Field(
        None, description="hold: stream only verified answers; correct: stream drafts, then a correction."
    )
    overrides: dict[str, Any] = Field(default_factory=dict, description="Per-run settings, e.g. force_route.")
    reference: list[str] | None = Field(
        None,
        max_length=20,
        description="Answers known to be right (evaluation traffic): they label the turn's shadow pair.",
    )


class ChatRequest(BaseModel):
    model_config = ConfigDict(extra="allow")

    model: str = MODEL
    messages: list[ChatMessage]
    stream: bool = False
    temperature: float | None = None
    max_tokens: int | None = None
    max_completion_tokens: int | None = None
    user: str | None = None
    stream_options: dict[str, Any] | None = None
    hybrid: HybridOptions = Field(default_factory=HybridOptions)


class ReviewBody(BaseModel):
    action: Literal["approve", "edit", "reject", "escalate"]
    answer: str | None = None
    reason: str | None = None
    reviewer: str = "api"


class FeedbackBody(BaseModel):
    thread_id: str
    rating: Literal["up", "down"]
    comment: str | None = None


class OpenAIError(Exception):
    """An error to answer in OpenAI's shape."""

    def __init__(
        self,
        status: int,
        message: str,
        kind: str,
        code: str | None = None,
        param: str | None = None,
        *,
        headers: dict[str, str] | None = None,
    ):
        super().__init__(message)
        self.status, self.message, self.kind, self.code, self.param = status, message, kind, code, param
        self.headers = headers

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.kind, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=self.headers)


# HTTP status and error code of each conversation and review error, by type.
_REVIEW_STATUSES: dict[type[ReviewError], tuple[int, str | None]] = {
    ConversationNotFound: (404, "not_found"),
    ConversationBusy: (409, "conversation_busy"),
    CaseAlreadyResolved: (409, "review_conflict"),
    NoAnswer: (409, "no_answer"),
    ReviewElsewhere: (409, "review_elsewhere"),
    InvalidDecision: (422, "invalid_decision"),
}


def _error_for(exc: Exception) -> OpenAIError:
    if isinstance(exc, OpenAIError):
        return exc
    if isinstance(exc, TooManyRequests):
        code = "budget_exhausted" if isinstance(exc, BudgetExhausted) else "rate_limited"
        headers = {"Retry-After": str(exc.retry_after)}
        return OpenAIError(429, str(exc), "rate_limit_error", code, headers=headers)
    if isinstance(exc, Unauthenticated):
        message = f"{exc} (Authorization: Bearer <key>)"
        return OpenAIError(401, message, "authentication_error", "invalid_api_key")
    if isinstance(exc, PolicyRefused):
        return OpenAIError(403, str(exc), "permission_error", "policy_refused")
    if isinstance(exc, Forbidden):
        return OpenAIError(403, str(exc), "permission_error", "forbidden")
    if isinstance(exc, InvalidQuestion | InvalidSetting):
        return OpenAIError(400, str(exc), "invalid_request_error", "invalid_value")
    if isinstance(exc, ModelsUnreachable):  # a configuration error: retrying elsewhere may help
        retry = {"Retry-After": str(max(1, math.ceil(exc.retry_after_s)))}
        return OpenAIError(503, str(exc), "service_unavailable", "models_unreachable", headers=retry)
    if isinstance(exc, UnknownModel):
        return OpenAIError(404, str(exc), "invalid_request_error", "model_not_found", "model")
    for kind, (status, code) in _REVIEW_STATUSES.items():
        if isinstance(exc, kind):
            return OpenAIError(status, str(exc), "invalid_request_error", code)
    if isinstance(exc, HybridError):
        return OpenAIError(400, str(exc), "invalid_request_error")
    from hybrid.database import is_unavailable

    if is_unavailable(exc):  # a restart or fail-over of the database: nothing of this request was kept
        message = "the database cannot be reached right now; retry shortly"
        return OpenAIError(503, message, "server_error", "store_unavailable", headers={"Retry-After": "2"})
    return OpenAIError(500, f"internal error: {type(exc).__name__}", "server_error")


def _overrides(request: ChatRequest) -> dict[str, Any]:
    """Per-run settings from the request: profile in the model name, generation limits, user, options."""
    overrides: dict[str, Any] = dict(request.hybrid.overrides)
    base, _, profile = request.model.partition(":")
    if base != MODEL:
        message = f"model {request.model!r} does not exist; use 'hybrid' or 'hybrid:<profile>'"
        raise OpenAIError(404, message, "invalid_request_error", "model_not_found", "model")
    if profile:
        overrides["profile"] = profile
    limit = request.max_completion_tokens or request.max_tokens
    if limit:
        overrides["max_answer_tokens"] = limit
    if request.temperature is not None:
        overrides["temperature"] = request.temperature
    if request.user:
        overrides["user_id"] = request.user
    return overrides


def _metadata(raw: Request) -> dict[str, str]:
    """What policy rules may match about a request besides its question: its `X-*` headers."""
    return {name: value for name, value in raw.headers.items() if name.lower().startswith("x-")}


def _conversation(request: ChatRequest) -> tuple[str, list[dict[str, str]]]:
    """The question (last user message) and the turns before it (the router sees them all)."""
    turns = [m for m in request.messages if m.role in ("user", "assistant")]
    if not turns or turns[-1].role != "user":
        raise OpenAIError(
            400, "the last message must come from the user", "invalid_request_error", param="messages"
        )
    return turns[-1].text, [{"role": m.role, "content": m.text} for m in turns[:-1]]


def _model_times(answer: api.Answer) -> tuple[float, float]:
    """The model servers' time and our client library's time around it, over the answer's drafts.

    Where a call was timed at the HTTP boundary, only the server's part counts as the model's: the
    client library's part is ours, as a client measuring the hop sees it. In-process models (no
    boundary) count whole."""
    server = library = 0.0
    for draft in answer.drafts:
        measured = draft.get("server_ms")
        server += draft["latency_ms"] if measured is None else measured
        library += 0.0 if measured is None else max(0.0, draft["latency_ms"] - measured)
    return server, library


def _received_at(raw: Request) -> float:
    """When the request reached the server (`HTTPMetrics` stamps it before parsing and validation)."""
    return getattr(raw.state, "received_at", None) or time.perf_counter()


def _timings(answer: api.Answer, elapsed_ms: float, queued_ms: float) -> dict[str, Any]:
    model_ms, library_ms = _model_times(answer)
    return {
        "total": round(elapsed_ms, 2),
        "queued": round(queued_ms, 2),
        "models": round(model_ms, 2),
        "model_client": round(library_ms, 2),
        "overhead": round(max(0.0, elapsed_ms - queued_ms - model_ms), 2),
        "nodes": answer.timings_ms,
    }


def _hybrid_field(answer: api.Answer) -> dict[str, Any]:
    """The `hybrid` field but its `timings_ms` (`_timings`), which the caller adds last."""
    return {
        "thread_id": answer.thread_id,
        "trace_id": answer.trace_id,
        "status": answer.status,
        "route": answer.tier or answer.route["route"],
        "answered_by": answer.answered_by,
        "explanation": answer.explanation,
        "verifier": answer.verifications[-1] if answer.verifications else None,
        "sources": [
            {key: hit[key] for key in ("source", "score", "similarity")} | {"text": hit["text"][:500]}
            for hit in (answer.retrieval or {}).get("hits", [])
        ],
        "pending_review": answer.pending_review,
        "versions": {
            key: value
            for key, value in (answer.route.get("versions") or {}).items()
            if key in ("version", "origin", "canary", "stale")
        },
        "cost": {"total": answer.total_cost, "large_only": answer.large_only_cost, "saved": answer.saved},
    }


def _content(answer: api.Answer) -> str:
    if answer.status == "answered":
        return answer.answer or ""
    if answer.status == "pending_review":
        thread = answer.thread_id
        return f"Waiting for human review (thread {thread}); poll /v1/hybrid/threads/{thread}."
    return "A reviewer declined to answer this question."


def _headers(answer: api.Answer) -> dict[str, str]:
    return {
        "X-Hybrid-Thread-Id": answer.thread_id,
        "X-Hybrid-Trace-Id": answer.trace_id or "",
        "X-Hybrid-Status": answer.status,
        "X-Hybrid-Route": answer.tier or answer.route["route"],
        "X-Hybrid-Answered-By": answer.answered_by or "",
    }


def _usage(answer: api.Answer) -> dict[str, int]:
    prompt = sum(u["input_tokens"] for u in answer.usage.values())
    completion = sum(u["output_tokens"] for u in answer.usage.values())
    return {"prompt_tokens": prompt, "completion_tokens": completion, "total_tokens": prompt + completion}


def _completion(answer: api.Answer, model: str) -> dict[str, Any]:
    return {
        "id": f"chatcmpl-{answer.trace_id or uuid.uuid4().hex}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": _content(answer)},
                "finish_reason": "stop",
                "logprobs": None,
            }
        ],
        "usage": _usage(answer),
        "hybrid": _hybrid_field(answer),
    }


def _answer_response(
    answer: api.Answer, model: str, started: float | None = None, queued_ms: float = 0.0
) -> JSONResponse:
    """The completion; `started`: when the request arrived (`_received_at`), for its timings."""
    status = 202 if answer.status == "pending_review" else 200
    headers = _headers(answer)
    body = _completion(answer, model)
    # The clock stops once the body is built: a client's measure of the hop leaves out only its
    # rendering and sending.
    elapsed_ms = 0.0 if started is None else (time.perf_counter() - started) * 1000
    body["hybrid"]["timings_ms"] = _timings(answer, elapsed_ms, queued_ms)
    return JSONResponse(body, status_code=status, headers=headers)


def _chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish: str | None = None, **extra: Any
) -> str:
    body = {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}],
        **extra,
    }
    return f"data: {json.dumps(body)}\n\n"


class _Slots:
    """Run slots handed out by priority: the highest waiting priority first, first come first
    served within one. A lower tier never holds a higher one back in the queue (it can only keep
    the slots it already runs in). Lives on the event loop: no locks."""

    def __init__(self, total: int) -> None:
        self.total, self.active = total, 0
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._order = itertools.count()

    def waiting(self, priority: int | None = None) -> int:
        """Requests waiting (of this priority or higher)."""
        return sum(1 for p, _, f in self._waiters if not f.done() and (priority is None or -p >= priority))

    async def acquire(self, priority: int) -> bool:
        """Take a slot, waiting for one if none is free; whether it waited."""
        if self.active < self.total and not self.waiting():
            self.active += 1
            return False
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (-priority, next(self._order), future))
        try:
            await future
        except asyncio.CancelledError:
            if future.done() and not future.cancelled():
                self.release()  # handed a slot just as it was cancelled: pass it on
            raise
        return True

    def release(self) -> None:
        while self._waiters:
            _, _, future = heapq.heappop(self._waiters)
            if not future.done():  # cancelled waiters are skipped
                future.set_result(None)  # the slot passes straight to the waiter
                return
        self.active -= 1


class _Admission:
    """At most `max_active_runs` graph runs at once; later requests wait here, on the event loop,
    higher service tiers first (a policy tier's `priority`).

    A run holds the GIL for its Python work between model calls, and the models take both cores:
    sixteen runs side by side kept `/health` waiting and stretched every run's own time, for fewer
    answers per second (`hybrid eval load`, docs/benchmarks.md). A waiting request costs nothing and
    keeps its place.
    """

    def __init__(self) -> None:
        self._slots: _Slots | None = None  # made at first use: settings, not import
        self._max_waiting: int | None = None
        self._run_seconds = 1.0  # moving average of a run's length, for Retry-After

    def _limits(self) -> _Slots:
        if self._slots is None:
            settings = resolve_settings()
            self._slots = _Slots(settings.active_runs)
            self._max_waiting = settings.max_waiting_runs
        return self._slots

    def refuse_if_full(self, priority: int = 0) -> None:
        """Raise 429 with a Retry-After estimate when `max_waiting_runs` requests of this priority
        or higher already wait (lower tiers waiting never make a higher one refused)."""
        slots = self._limits()
        waiting = slots.waiting(priority)
        free = slots.active < slots.total and not slots.waiting()
        if self._max_waiting is None or free or waiting < self._max_waiting:
            return
        retry = max(1, math.ceil(self._run_seconds * (waiting + 1) / slots.total))
        observability.REFUSED.inc()
        message = f"the server is at capacity ({waiting} requests wait for a run slot); retry in {retry} s"
        raise OpenAIError(
            429, message, "rate_limit_error", "server_at_capacity", headers={"Retry-After": str(retry)}
        )

    @contextlib.asynccontextmanager
    async def slot(self, client: Request | None = None, priority: int = 0) -> AsyncIterator[float]:
        """Hold a run slot; yields how long the request waited for it, in milliseconds. Callers
        check `refuse_if_full` first, before anything (a stream's first bytes) has been sent.

        A `client` that hung up while waiting gets no run: under overload, clients time out and
        retry, and running what nobody will read would only lengthen the line (nothing of theirs
        had started, so nothing is lost). One admitted at once is not asked (the question costs
        a cancel scope on the event loop, for every request)."""
        slots = self._limits()
        began = time.perf_counter()
        observability.RUNS_WAITING.inc()
        try:
            waited = await slots.acquire(priority)
        finally:
            observability.RUNS_WAITING.dec()
        admitted = time.perf_counter()
        try:
            observability.QUEUE_SECONDS.observe(admitted - began)
            if waited and client is not None and await client.is_disconnected():
                observability.ABANDONED.inc()
                message = "the client closed the connection while the request waited for a run slot"
                raise OpenAIError(499, message, "client_closed_request")
            yield (admitted - began) * 1000
            # Only runs that finished inform Retry-After: a dropped or failed one took no time.
            self._run_seconds = 0.8 * self._run_seconds + 0.2 * (time.perf_counter() - admitted)
        finally:
            slots.release()


@dataclass(frozen=True)
class _Auth:
    """Who a request acts as, and the key it gave (the façade checks it again), with the settings
    and the policy that were in force when it arrived: read once a request, not once per check."""

    caller: Caller
    key: str | None
    settings: Settings
    loaded: LoadedPolicy | None

    @property
    def policy(self) -> bool:
        """Whether a policy file is in force."""
        return self.loaded is not None

    @property
    def priority(self) -> int:
        tier = self.loaded.tier(self.caller.tier) if self.loaded else None
        return tier.priority if tier else 0

    def take_rate(self) -> None:
        """Count a request that runs the graph against the key's rate limit (429 if over)."""
        from hybrid.policy.limits import take

        tier = self.loaded.tier(self.caller.tier) if self.loaded else None
        if tier is None or tier.rate_limit is None or self.caller.admin or self.caller.key_id is None:
            return
        try:
            take(self.settings, self.caller.key_id, tier.rate_limit)
        except TooManyRequests:
            observability.LIMITED.labels("rate").inc()
            raise


def _bearer(request: Request) -> str:
    header = request.headers.get("authorization", "")
    return header[7:].strip() if header.lower().startswith("bearer ") else ""


async def _authorize(request: Request) -> _Auth:
    """The caller a request's bearer key stands for; without keys configured, everyone is
    the operator (sees everything)."""
    # On the event loop: a stat of the policy file and a hash (a changed file is re-read here).
    settings = resolve_settings()
    loaded = current_policy(settings)
    if not api.keys_required():
        return _Auth(api.caller(), None, settings, loaded)
    token = _bearer(request)
    if not token:
        message = "missing API key (Authorization: Bearer <key>)"
        raise OpenAIError(401, message, "authentication_error", "invalid_api_key")
    return _Auth(api.caller(token), token, settings, loaded)


async def _admin(auth: Annotated[_Auth, Depends(_authorize)]) -> _Auth:
    if not auth.caller.admin:
        raise OpenAIError(403, "only an admin key may see this", "permission_error", "forbidden")
    return auth


Authorized = Annotated[_Auth, Depends(_authorize)]


async def _iterate_in_thread(events: Iterator[Any]) -> AsyncIterator[Any]:
    """Consume a blocking iterator in a worker thread, yielding its items on the event loop."""
    queue: asyncio.Queue[Any] = asyncio.Queue()
    loop = asyncio.get_running_loop()
    done = object()

    def pump() -> None:
        try:
            for item in events:
                loop.call_soon_threadsafe(queue.put_nowait, item)
        except BaseException as exc:  # delivered to the client as an error event
            loop.call_soon_threadsafe(queue.put_nowait, exc)
        loop.call_soon_threadsafe(queue.put_nowait, done)

    task = loop.run_in_executor(None, pump)
    while (item := await queue.get()) is not done:
        yield item
    await task


async def _stream(
    request: ChatRequest,
    question: str,
    history: list,
    overrides: dict,
    policy: str,
    *,
    admission: _Admission,
    auth: _Auth,
    started: float,
) -> AsyncIterator[str]:
    """Server-sent events. `hold`: only the final, verified text. `correct`: drafts as they are
    written, a `hybrid.event = "correction"` chunk whenever a streamed draft fails verification
    (discard what was streamed), then what replaces it."""
    completion_id = f"chatcmpl-{uuid.uuid4().hex}"
    yield _chunk(completion_id, request.model, {"role": "assistant", "content": ""})
    async with admission.slot(priority=auth.priority) as queued:
        events = api.stream(
            question,
            thread_id=request.hybrid.thread_id,
            history=history,
            reference=request.hybrid.reference,
            key=auth.key,
            **overrides,
        )
        streamed = ""  # draft text the client has been shown and not told to discard
        async for event in _iterate_in_thread(events):
            if isinstance(event, BaseException):
                error = _error_for(event if isinstance(event, Exception) else RuntimeError(str(event)))
                body = {"error": {"message": error.message, "type": error.kind, "code": error.code}}
                yield f"data: {json.dumps(body)}\n\n"
                return
            if event.kind == "token" and policy == "correct":
                streamed += event.text or ""
                yield _chunk(completion_id, request.model, {"content": event.text})
            elif event.kind == "node" and event.node == "verify" and streamed:
                verification = ((event.update or {}).get("verifications") or [{}])[-1]
                if not verification.get("passed"):
                    yield _correction(completion_id, request.model, verification.get("reasons", [])[:2])
                    streamed = ""
            elif event.kind == "answer" and event.answer is not None:
                answer = event.answer
                final = _content(answer)
                if streamed.strip() != final.strip():
                    if streamed:
                        yield _correction(
                            completion_id, request.model, ["the final answer differs from the draft"]
                        )
                    for piece in _pieces(final):
                        yield _chunk(completion_id, request.model, {"content": piece})
                hybrid = _hybrid_field(answer)
                hybrid["timings_ms"] = _timings(answer, (time.perf_counter() - started) * 1000, queued)
                extra: dict[str, Any] = {"hybrid": hybrid}
                if (request.stream_options or {}).get("include_usage"):
                    extra["usage"] = _usage(answer)
                yield _chunk(completion_id, request.model, {}, "stop", **extra)
    yield "data: [DONE]\n\n"


async def _streaming_response(
    request: ChatRequest,
    question: str,
    history: list,
    overrides: dict,
    policy: str,
    *,
    admission: _Admission,
    auth: _Auth,
    started: float,
) -> StreamingResponse:
    events = _stream(
        request, question, history, overrides, policy, admission=admission, auth=auth, started=started
    )
    if policy == "hold":
        # Nothing but the verified answer is streamed anyway: run first, then send. A replica
        # that dies mid-run has then sent nothing, and a load balancer can retry the request on
        # another, as it does a plain one (a stream that has started cannot be).
        events = _replay([chunk async for chunk in events])
    return StreamingResponse(events, media_type="text/event-stream")


async def _replay(chunks: list[str]) -> AsyncIterator[str]:
    for chunk in chunks:
        yield chunk


def _correction(completion_id: str, model: str, reasons: list[str]) -> str:
    return _chunk(
        completion_id, model, {}, hybrid={"event": "correction", "discard": "draft", "reasons": reasons}
    )


def _pieces(text: str) -> list[str]:
    words = text.split(" ")
    return [w if i == 0 else f" {w}" for i, w in enumerate(words)] if text else []


def _authorized(request: Request) -> bool:
    """No keys are required, or the request carries a valid one (`HYBRID_API_KEYS`, or a policy
    file's tenant or admin key)."""
    if not api.keys_required():
        return True
    token = _bearer(request)
    try:
        return bool(token) and api.caller(token) is not None
    except Unauthenticated:
        return False


async def _readiness(request: Request) -> JSONResponse:
    """Readiness for load balancers: 503 while no tier can answer or the database is down. Cheap
    (no generation) and cached for `readiness_cache_s`. When keys are required, only callers with
    one get the details (models, endpoints, fixes: what a question's 503 would tell them too); a
    load balancer needs only the status."""
    found = await run_in_threadpool(api.readiness)
    body = found.as_dict() if _authorized(request) else {"status": "ready" if found.ready else "unready"}
    if found.ready:
        return JSONResponse(body)
    retry = str(max(1, math.ceil(resolve_settings().readiness_cache_s)))
    return JSONResponse(body, status_code=503, headers={"Retry-After": retry})


@contextlib.asynccontextmanager
async def _lifespan(_app: FastAPI) -> AsyncIterator[None]:
    """Prepare before serving; expire overdue reviews while serving."""

    async def expire_periodically() -> None:
        while True:
            await asyncio.sleep(60)
            with contextlib.suppress(Exception):  # the next round tries again; cron can too
                await run_in_threadpool(api.expire_reviews)

    await run_in_threadpool(api.policy_status)  # an invalid policy file was refused by `serve`
    for problem in await run_in_threadpool(api.prepare):
        observability.logger.warning("not prepared at start-up: %s", problem)
    # A full garbage collection walks every object, and once the libraries are loaded that holds
    # the GIL long enough to stall every request and /health. Frozen, the start-up
    # objects are never walked again (reference counting still frees them; only cycles would stay).
    gc.collect()
    gc.freeze()
    task = asyncio.create_task(expire_periodically())
    yield
    task.cancel()


async def _http_error(_request: Request, exc: StarletteHTTPException) -> JSONResponse:
    """What the framework answers itself (a body that is not JSON, an unknown path or method),
    in OpenAI's error shape like every other error."""
    kind = "authentication_error" if exc.status_code == 401 else "invalid_request_error"
    error = OpenAIError(exc.status_code, str(exc.detail), kind, headers=dict(exc.headers or {}))
    return error.response()


def create_app() -> FastAPI:
    """The server application (nothing happens until it is served)."""
    from hybrid.privacy import disable_telemetry

    disable_telemetry()  # an entry point of its own under `uvicorn --factory`
    app = FastAPI(title="Hybrid AI", version="0.1.0", lifespan=_lifespan)
    app.add_middleware(observability.HTTPMetrics)  # every response counted by route and status
    openapi.install(app)  # every status each endpoint answers, documented
    admission = _Admission()

    @app.exception_handler(OpenAIError)
    async def _openai_error(_request: Request, exc: OpenAIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(RequestValidationError)
    async def _invalid(_request: Request, exc: RequestValidationError) -> JSONResponse:
        first = exc.errors()[0] if exc.errors() else {}
        where = ".".join(str(p) for p in first.get("loc", [])[1:])
        message = f"{where}: {first.get('msg', 'invalid request')}"
        return OpenAIError(400, message, "invalid_request_error", "invalid_value", where or None).response()

    app.add_exception_handler(StarletteHTTPException, _http_error)  # type: ignore[arg-type]

    @app.exception_handler(HybridError)
    async def _expected(_request: Request, exc: HybridError) -> JSONResponse:
        return _error_for(exc).response()

    @app.exception_handler(Exception)  # last resort: Starlette logs it and answers 500
    async def _unexpected(_request: Request, exc: Exception) -> JSONResponse:
        return _error_for(exc).response()

    @app.get("/health")
    async def health() -> dict[str, str]:
        return {"status": "ok"}

    @app.get("/ready")
    async def ready(request: Request) -> JSONResponse:
        return await _readiness(request)

    @app.get("/metrics")
    async def metrics() -> Response:
        from hybrid.observability import render_metrics

        return Response(render_metrics(), media_type="text/plain; version=0.0.4")

    @app.get("/v1/models", dependencies=[Depends(_authorize)])
    async def models() -> dict[str, Any]:
        names = [MODEL] + [f"{MODEL}:{p}" for p in sorted(resolve_settings().all_profiles)]
        return {
            "object": "list",
            "data": [{"id": n, "object": "model", "created": 0, "owned_by": "hybrid"} for n in names],
        }

    @app.post("/v1/chat/completions")
    async def chat(request: ChatRequest, raw: Request, auth: Authorized) -> Response:
        question, history = _conversation(request)
        overrides = _overrides(request) | {"request_metadata": _metadata(raw) or None}
        thread_id = request.hybrid.thread_id

        # Refuse what can be refused before anything runs (and before a stream starts, so the
        # refusal gets its status code): bad input, another tenant's conversation, a policy
        # refusal, a spent budget, the key's rate limit, a full queue.
        def check() -> str:
            checked = api.check_request(question, key=auth.key, thread_id=thread_id, **overrides)
            auth.take_rate()
            return checked

        if auth.policy:  # the checks read the database (and maybe embed the question)
            checked = await run_in_threadpool(check)
        else:  # only the question and the settings: no need to leave the event loop
            checked = check()
        if request.stream:  # a dead configuration too: a stream's status code cannot change later
            await run_in_threadpool(lambda: api.check_reachable(**overrides))
        admission.refuse_if_full(auth.priority)
        api.begin_routing(checked, thread_id=thread_id, history=history, **overrides)
        started = _received_at(raw)
        if request.stream:
            policy = request.hybrid.stream_policy or resolve_settings().stream_policy
            return await _streaming_response(
                request,
                question,
                history,
                overrides,
                policy,
                admission=admission,
                auth=auth,
                started=started,
            )
        async with admission.slot(raw, auth.priority) as queued:
            answer = await run_in_threadpool(
                lambda: api.ask(
                    question,
                    thread_id=thread_id,
                    history=history,
                    reference=request.hybrid.reference,
                    key=auth.key,
                    **overrides,
                )
            )
        return _answer_response(answer, request.model, started, queued)

    _hybrid_routes(app, admission)
    return app


def _hybrid_routes(app: FastAPI, admission: _Admission) -> None:
    """Hybrid's own endpoints: conversations, reviews, feedback, audit, policy."""

    @app.get("/v1/hybrid/threads/{thread_id}")
    async def thread(thread_id: str, auth: Authorized) -> Response:
        answer = await run_in_threadpool(lambda: api.answer_for(thread_id, key=auth.key))
        return _answer_response(answer, MODEL)

    @app.get("/v1/hybrid/reviews")
    async def reviews(auth: Authorized) -> dict[str, Any]:
        pending = await run_in_threadpool(lambda: api.pending_reviews(key=auth.key))
        return {"object": "list", "data": [p.model_dump(mode="json") for p in pending]}

    @app.post("/v1/hybrid/reviews/{thread_id}")
    async def review(thread_id: str, body: ReviewBody, auth: Authorized) -> Response:
        decision = body.model_dump(exclude_none=True)
        await run_in_threadpool(lambda: api.check_access(thread_id, key=auth.key))  # 403 before the queue
        await run_in_threadpool(auth.take_rate)
        admission.refuse_if_full(auth.priority)
        async with admission.slot(priority=auth.priority):  # resuming may run the large model
            answer = await run_in_threadpool(lambda: api.resume(thread_id, decision, key=auth.key))
        return _answer_response(answer, MODEL)

    @app.post("/v1/hybrid/feedback")
    async def feedback(body: FeedbackBody, auth: Authorized) -> dict[str, str]:
        await run_in_threadpool(
            lambda: api.feedback(body.thread_id, body.rating, comment=body.comment, key=auth.key)
        )
        return {"status": "recorded"}

    @app.get("/v1/hybrid/conversations")
    async def conversations(
        auth: Authorized, limit: Annotated[int, Query(ge=1, le=1000)] = 50
    ) -> dict[str, Any]:
        found = await run_in_threadpool(lambda: api.conversations(limit, key=auth.key))
        return {"object": "list", "data": [c.model_dump(mode="json") for c in found]}

    @app.get("/v1/hybrid/audit")
    async def audit_rows(auth: Authorized, since: datetime | None = None) -> dict[str, Any]:
        lines = await run_in_threadpool(lambda: list(api.audit_export(since=since, key=auth.key)))
        return {"object": "list", "data": [json.loads(line) for line in lines]}

    @app.get("/v1/hybrid/policy", dependencies=[Depends(_admin)])
    async def policy() -> dict[str, Any]:
        return await run_in_threadpool(api.policy_status)


def serve(host: str, port: int) -> None:
    """Run the server until interrupted."""
    import threadpoolctl
    import uvicorn

    from hybrid.observability import configure_logging

    configure_logging(resolve_settings().log_level)
    api.caller()  # refuses to start on a policy file that does not validate (every problem, with its line)
    # Requests run side by side; inside one, BLAS only multiplies a single query vector (the
    # router's neighbours), where waking a second BLAS thread after a model call costs more than
    # the product.
    threadpoolctl.threadpool_limits(1, user_api="blas")
    uvicorn.run(
        create_app(),
        host=host,
        port=port,
        log_level="warning",
        access_log=False,
        http=arrival_stamping_protocol(),
    )


def arrival_stamping_protocol() -> type:
    """uvicorn's HTTP protocol (httptools, or h11 without it), stamping each request with the
    moment its bytes arrived (`received_at` in the request's state) before the headers are parsed
    and the app is called: the reported overhead then covers what a client measuring the hop
    waits for on our side of the socket. Under another server, `HTTPMetrics` stamps on entry."""
    from uvicorn.protocols.http.auto import AutoHTTPProtocol

    class ArrivalStamping(AutoHTTPProtocol):  # type: ignore[misc, valid-type]
        def data_received(self, data: bytes) -> None:
            arrived = time.perf_counter()
            before = getattr(self, "cycle", None)
            super().data_received(data)
            cycle = getattr(self, "cycle", None)
            # A request whose headers completed in these bytes has a new cycle; its app task is
            # created but has not run yet. (Headers split over several reads are stamped at the
            # last one: a little late, never early.)
            if cycle is not None and cycle is not before:
                cycle.scope.setdefault("state", {})["received_at"] = arrived

    return ArrivalStamping
