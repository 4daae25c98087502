"""Calling a tier of models on a bad day: timeouts, retries, cooldown, fallback, a deadline.

A tier is an ordered list of models. Each call gets the smaller of the per-call timeout and what
is left of the request's deadline; a transient error (timeout, connection, 429, 5xx) is retried
with exponential backoff; a model that keeps failing is put in cooldown (a circuit breaker shared
by the process) and the next model of the tier is tried. Every attempt is recorded, so an answer
shows which fallbacks happened and why.
"""

from __future__ import annotations

import contextvars
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from concurrent.futures import TimeoutError as FutureTimeout
from dataclasses import dataclass, field
from typing import Any

from langchain_core.messages import AIMessage, BaseMessage

from hybrid.errors import ContextWindowExceeded, HybridError, UnknownModel
from hybrid.models.reachability import endpoint_of, unreachable_reason
from hybrid.models.state import estimated_tokens, in_flight
from hybrid.models.timing import server_time
from hybrid.settings import Settings

_TRANSIENT_NAMES = (
    "Timeout",
    "Connection",
    "RateLimit",
    "InternalServer",
    "ServiceUnavailable",
    "Overloaded",
)
# Model calls that cannot keep to a timeout themselves run here, so one that overstays it can be
# abandoned.
_executor = ThreadPoolExecutor(max_workers=32, thread_name_prefix="hybrid-model")


@dataclass
class Attempt:
    """One try of one model."""

    model: str
    outcome: str  # ok | error | timeout | skipped
    error: str | None = None
    latency_ms: float = 0.0
    transient: bool = False
    unreachable: str | None = None
    """Why the model could not be reached at all (`hybrid.models.reachability`), if that was it."""
    endpoint: str | None = None
    """Where the unreachable model was looked for."""
    server_ms: float | None = None
    """The model server's part of `latency_ms`, timed at the HTTP boundary (None: not measurable,
    as for in-process models, whose whole call is the model's)."""

    def as_dict(self) -> dict[str, Any]:
        # Every field is a plain value: `dataclasses.asdict`'s recursive deep copy only costs time
        # (it is called for every attempt of every draft).
        return dict(vars(self))


@dataclass
class TierDown(HybridError):
    """Every model of a tier failed (or the deadline ran out)."""

    attempts: list[Attempt] = field(default_factory=list)
    deadline_passed: bool = False

    def __str__(self) -> str:
        if not self.attempts:
            return "no model could be tried before the deadline"
        last = self.attempts[-1]
        prefix = "deadline passed; " if self.deadline_passed else ""
        models = len({a.model for a in self.attempts})
        return f"{prefix}all {models} model(s) failed; last: {last.model}: {last.error}"

    @property
    def unreachable(self) -> bool:
        """No model of the tier could be reached at all (a configuration error, not a bad day)."""
        return bool(self.attempts) and all(a.unreachable for a in self.attempts)


def is_transient(error: BaseException) -> bool:
    """Whether trying again may help: timeouts, connection trouble, 408/409/425/429, 5xx."""
    if isinstance(error, ContextWindowExceeded | UnknownModel | ValueError | TypeError):
        return False
    status = getattr(error, "status_code", None) or getattr(
        getattr(error, "response", None), "status_code", None
    )
    if isinstance(status, int):
        return status in (408, 409, 425, 429) or status >= 500
    if isinstance(error, TimeoutError | ConnectionError | FutureTimeout):
        return True
    return any(name in type(error).__name__ for name in _TRANSIENT_NAMES)


class CircuitBreaker:
    """Per model: after N consecutive failures, skip the model for a cooldown, then try it again."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._failures: dict[str, int] = {}
        self._open_until: dict[str, float] = {}
        self._unreachable: dict[str, str | None] = {}

    def open_for(self, model: str) -> float:
        """Seconds the model is still in cooldown (0: it may be called)."""
        with self._lock:
            return max(0.0, self._open_until.get(model, 0.0) - time.monotonic())

    def unreachable(self, model: str) -> str | None:
        """Why the model's last failure could not reach it, if that was the case."""
        with self._lock:
            return self._unreachable.get(model)

    def succeeded(self, model: str) -> None:
        with self._lock:
            self._failures.pop(model, None)
            self._open_until.pop(model, None)
            self._unreachable.pop(model, None)

    def failed(self, model: str, threshold: int, cooldown_s: float, unreachable: str | None = None) -> None:
        with self._lock:
            self._unreachable[model] = unreachable
            self._failures[model] = self._failures.get(model, 0) + 1
            if self._failures[model] >= threshold:
                self._open_until[model] = time.monotonic() + cooldown_s
                self._failures[model] = 0  # half-open after the cooldown: one failure re-opens

    def reset(self) -> None:
        with self._lock:
            self._failures.clear()
            self._open_until.clear()
            self._unreachable.clear()


breaker = CircuitBreaker()


def _invoke(model: Any, messages: list[BaseMessage], timeout: float, deadline: float) -> AIMessage:
    if getattr(model, "enforces_call_timeout", False):
        # The HTTP client gives up after `timeout`: no thread to hand the call to and take it back
        # from (that hand-off cost more CPU than the rest of the call's client side).
        from openai import APITimeoutError

        try:
            return model.invoke(messages, timeout=timeout)
        except APITimeoutError:
            raise TimeoutError(f"no answer within {timeout:.1f}s") from None
    from hybrid.models.llamacpp import EmbeddedChatModel

    kwargs = {"deadline": deadline} if isinstance(model, EmbeddedChatModel) else {}
    # Copy the context so LangGraph's callbacks (token streaming) follow the call into the thread.
    context = contextvars.copy_context()
    future = _executor.submit(context.run, model.invoke, messages, **kwargs)
    try:
        return future.result(timeout=timeout)
    except FutureTimeout:
        future.cancel()
        raise TimeoutError(f"no answer within {timeout:.1f}s") from None


def _check_context(spec: str, messages: list[BaseMessage], settings: Settings) -> None:
    """Refuse a prompt an Ollama model would truncate without saying so (embedded models check
    exactly themselves; OpenAI-compatible servers answer an error)."""
    if not spec.startswith("ollama:"):
        return
    tokens = estimated_tokens("".join(m.text for m in messages))
    if tokens + settings.max_answer_tokens > settings.n_ctx:
        raise ContextWindowExceeded(
            f"prompt of about {tokens} tokens plus {settings.max_answer_tokens} answer tokens would not fit "
            f"{spec}'s num_ctx of {settings.n_ctx} (Ollama would truncate it silently)"
        )


def _server_ms(spent: list[float]) -> float | None:
    return round(sum(spent), 2) if spent else None


def call_tier(
    specs: list[str], messages: list[BaseMessage], settings: Settings, deadline: float
) -> tuple[AIMessage, str, list[Attempt]]:
    """The first good answer from a tier's models, the model that gave it, and every attempt.

    `deadline` is a `time.monotonic()` instant. Raises `TierDown` when no model answered in time.
    """
    from hybrid.models.factory import get_chat_model

    attempts: list[Attempt] = []
    for spec in specs:
        cooldown = breaker.open_for(spec)
        if cooldown > 0:
            # A model in cooldown because it could not be reached is still unreachable.
            unreachable = breaker.unreachable(spec)
            attempts.append(
                Attempt(
                    spec,
                    "skipped",
                    f"in cooldown for {cooldown:.0f}s after repeated failures",
                    unreachable=unreachable,
                    endpoint=endpoint_of(spec, settings) if unreachable else None,
                )
            )
            continue
        for retry in range(settings.model_retries + 1):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise TierDown(attempts, deadline_passed=True)
            started = time.monotonic()
            spent: list[float] = []
            try:
                _check_context(spec, messages, settings)
                with in_flight(spec), server_time() as spent:
                    reply = _invoke(
                        get_chat_model(spec, settings),
                        messages,
                        min(settings.model_timeout_s, remaining),
                        deadline,
                    )
            except Exception as exc:  # every failure is recorded; transient ones are retried
                transient = is_transient(exc)
                unreachable = unreachable_reason(exc)
                attempts.append(
                    Attempt(
                        spec,
                        "timeout" if isinstance(exc, TimeoutError) else "error",
                        f"{type(exc).__name__}: {exc}"[:500],
                        round((time.monotonic() - started) * 1000, 2),
                        transient,
                        unreachable,
                        endpoint_of(spec, settings) if unreachable else None,
                        _server_ms(spent),
                    )
                )
                if not transient:
                    break  # e.g. the prompt does not fit: another try will not help
                if retry < settings.model_retries:
                    time.sleep(
                        min(settings.retry_backoff_s * 2**retry, max(0.0, deadline - time.monotonic()))
                    )
                continue
            breaker.succeeded(spec)
            latency_ms = round((time.monotonic() - started) * 1000, 2)
            attempts.append(Attempt(spec, "ok", latency_ms=latency_ms, server_ms=_server_ms(spent)))
            return reply, spec, attempts
        if attempts and attempts[-1].transient:
            last = attempts[-1]
            breaker.failed(spec, settings.breaker_failures, settings.breaker_cooldown_s, last.unreachable)
    raise TierDown(attempts, deadline_passed=time.monotonic() >= deadline)
