"""Asking a tier's models for a draft: the call (with fallbacks, retries and the deadline), what the
reply says about itself, and what the draft cost."""

from __future__ import annotations

import time
from collections.abc import Sequence

from langchain_core.messages import BaseMessage

from hybrid import costs, effects
from hybrid.decisions import Draft, Tier
from hybrid.models import logprobs
from hybrid.models.resilience import Attempt, TierDown, call_tier
from hybrid.policy import guard_call
from hybrid.settings import Settings

_REPLY_SIGNALS = ("mean_token_logprob", "min_token_prob", "model_name", "generation_ms")


def reply_signals(reply: BaseMessage) -> tuple[str, str | None, dict[str, float | str]]:
    """A model reply's text, finish reason and the extra signals the verifier reads."""
    metadata = reply.response_metadata
    finish = metadata.get("finish_reason") or metadata.get("done_reason")
    meta = {k: v for k, v in metadata.items() if isinstance(v, float | str) and k in _REPLY_SIGNALS}
    if "mean_token_logprob" not in meta:  # the embedded models report their own
        meta.update(logprobs.confidence(logprobs.reported(metadata.get("logprobs"))))
    return reply.text.strip(), finish, meta


def _failure_kind(exc: TierDown) -> str:
    """`deadline`, `unreachable` (no model of the tier could be reached at all) or `tier_down`."""
    if exc.deadline_passed:
        return "deadline"
    return "unreachable" if exc.unreachable else "tier_down"


def _server_ms(attempts: Sequence[Attempt]) -> float | None:
    """The model servers' part of the call, where every try that reached one could time it."""
    tried = [a for a in attempts if a.outcome != "skipped"]
    if not tried or any(a.server_ms is None for a in tried):
        return None
    return round(sum(a.server_ms or 0.0 for a in tried), 2)


def write_draft(
    tier: Tier,
    specs: Sequence[str],
    messages: list[BaseMessage],
    *,
    deadline_at: float,
    settings: Settings,
    escalation: bool = False,
    tenant: str | None = None,
    thread_id: str | None = None,
) -> Draft:
    """The tier's answer to `messages`, or its recorded failure (never raised: it is routed around).

    `tenant` is whose budget pays (the route's policy record; None: no policy): a call its budget
    cannot cover is not made, and the draft records why (`error_kind` "budget")."""
    started = time.perf_counter()
    remaining = deadline_at - time.time()
    text, error, error_kind, finish, meta, spec = "", None, None, None, {}, specs[0]
    usage = {"input_tokens": 0, "output_tokens": 0}
    attempts: list[Attempt] = []
    guard, refused = guard_call(
        settings,
        tenant,
        model_tier=tier,
        specs=specs,
        prompt="".join(m.text for m in messages),
        messages=len(messages),
        deadline_at=deadline_at,
        thread_id=thread_id,
    )
    try:
        if refused is not None:
            error, error_kind = refused, "budget"
        else:
            reply, spec, attempts = call_tier(list(specs), messages, settings, time.monotonic() + remaining)
            text, finish, meta = reply_signals(reply)
            if reply.usage_metadata:
                usage = {
                    "input_tokens": int(reply.usage_metadata.get("input_tokens", 0)),
                    "output_tokens": int(reply.usage_metadata.get("output_tokens", 0)),
                }
    except TierDown as exc:
        error, error_kind, attempts = str(exc), _failure_kind(exc), exc.attempts
        spec = next((a.model for a in reversed(attempts) if a.outcome != "skipped"), specs[0])
    compute_s = sum(a.latency_ms for a in attempts if a.model == spec and a.outcome == "ok") / 1000
    draft = Draft(
        tier=tier,
        model=spec,
        text=text,
        error=error,
        error_kind=error_kind,
        finish_reason=finish,
        usage=usage,  # type: ignore[typeddict-item]
        cost=costs.call_cost(spec, usage["input_tokens"], usage["output_tokens"], compute_s, settings),
        latency_ms=round((time.perf_counter() - started) * 1000, 2),
        server_ms=_server_ms(attempts),
        model_meta=meta,
        attempts=[a.as_dict() for a in attempts],
        fallback=spec != specs[0] and error is None,
    )
    if guard is not None:
        guard.settle(draft["cost"])
    effects.draft_written(settings, draft, compute_s, escalation=escalation)
    return draft
