"""Cost accounting: what a request cost, and what sending it to the large model alone would have.

A model call costs its tokens at the configured per-million prices plus its compute seconds at
the configured per-second price (how local models are priced); the verifier's own time is priced
at `verifier_price_per_s`. An escalated request pays for both calls. The large-only comparison
uses the large model's actual call when there was one; otherwise it prices the request's own
token counts at the large model's rates, with the large model's observed seconds per output
token in this process (0 seconds until it has been seen).
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from hybrid.settings import Settings

_lock = threading.Lock()
_seconds_per_token: dict[str, tuple[float, int]] = {}  # spec -> (seconds, output tokens) observed


def call_cost(spec: str, input_tokens: int, output_tokens: int, seconds: float, settings: Settings) -> float:
    """The cost of one model call."""
    price = settings.price_of(spec)
    tokens = input_tokens * price.input_per_million + output_tokens * price.output_per_million
    return round(tokens / 1e6 + seconds * price.per_second, 8)


def observe(spec: str, seconds: float, output_tokens: int) -> None:
    """Remember how fast a model produced its answer (for large-only estimates)."""
    if output_tokens <= 0 or seconds <= 0:
        return
    with _lock:
        total_s, total_tokens = _seconds_per_token.get(spec, (0.0, 0))
        _seconds_per_token[spec] = (total_s + seconds, total_tokens + output_tokens)


def large_only_cost(values: Mapping[str, Any], settings: Settings) -> tuple[float, str]:
    """What this request would have cost on the large model alone, and how that was worked out."""
    drafts = values.get("drafts") or []
    large = next((d for d in drafts if d["tier"] == "large" and not d["error"]), None)
    if large is not None:
        return large["cost"], "the large model's actual call"
    if not drafts or values.get("cached"):
        return 0.0, "no model call"
    spec = settings.large_spec
    input_tokens = max(d["usage"]["input_tokens"] for d in drafts)
    output_tokens = max(d["usage"]["output_tokens"] for d in drafts)
    with _lock:
        total_s, total_tokens = _seconds_per_token.get(spec, (0.0, 0))
    seconds = total_s / total_tokens * output_tokens if total_tokens else 0.0
    basis = f"this request's tokens at {spec}'s prices" + (
        f", {seconds:.2f}s at its observed speed" if total_tokens else ""
    )
    return call_cost(spec, input_tokens, output_tokens, seconds, settings), basis


def request_costs(values: Mapping[str, Any], settings: Settings) -> dict[str, float | str]:
    """A request's total cost (every model call and the verifier), its large-only cost, the saving."""
    total = round(
        sum(d["cost"] for d in values.get("drafts") or [])
        + sum(v.get("cost", 0.0) for v in values.get("verifications") or []),
        8,
    )
    large_only, basis = large_only_cost(values, settings)
    return {"total": total, "large_only": large_only, "saved": round(large_only - total, 8), "basis": basis}
