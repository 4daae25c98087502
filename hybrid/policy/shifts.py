"""How far a service tier's routing threshold moves, and why: its fixed offset, the load on the
large tier, and how much of the tenant's budget is spent.

Load: each process keeps the large tier's recent call latencies. When their p95, or the large
calls in flight, exceed a tier's objective, each query that tier routes raises its shift by at
most one `step`, up to `max`; the shift halves every `half_life_s` seconds, so it decays back once
load falls. Budget: `budgets.step_down` (smooth, bounded). A higher threshold means fewer queries
start on the large model.
"""

from __future__ import annotations

import math
import threading
import time
from collections import deque
from dataclasses import dataclass, field

from hybrid import observability
from hybrid.policy.schema import LoadShift, Tier

WINDOW_S = 300.0
"""Latencies older than this do not count toward the p95."""
MIN_SAMPLES = 5
"""Fewer recent calls than this say nothing about the p95."""
_MAX_SAMPLES = 500

_lock = threading.Lock()
_latencies: deque[tuple[float, float]] = deque(maxlen=_MAX_SAMPLES)  # (monotonic time, seconds)
_shifts: dict[str, tuple[float, float]] = {}  # tier -> (shift, monotonic time of the last update)


def record_large_call(seconds: float, now: float | None = None) -> None:
    """A large-tier call finished in `seconds` (a failed call counts too: it was as slow)."""
    with _lock:
        _latencies.append((time.monotonic() if now is None else now, seconds))


def large_p95(now: float | None = None) -> float | None:
    """The p95 latency of the large tier's calls in the last `WINDOW_S` seconds (None: too few)."""
    moment = time.monotonic() if now is None else now
    with _lock:
        recent = sorted(s for at, s in _latencies if moment - at <= WINDOW_S)
    if len(recent) < MIN_SAMPLES:
        return None
    value = recent[min(len(recent) - 1, math.ceil(0.95 * len(recent)) - 1)]
    observability.LARGE_P95_SECONDS.set(value)
    return value


def pressure(tier: Tier, p95: float | None, in_flight: int) -> tuple[float, str]:
    """How far over its objectives the large tier is for this service tier (> 1: over), and why."""
    found: list[tuple[float, str]] = []
    if tier.latency_objective_s is not None:
        objective = tier.latency_objective_s
        if p95 is None:
            found.append((0.0, f"too few recent large calls for a p95 (objective {objective:.1f}s)"))
        else:
            found.append((p95 / objective, f"large p95 {p95:.1f}s vs {objective:.1f}s objective"))
    if tier.queue_objective is not None:
        found.append(
            (in_flight / tier.queue_objective, f"{in_flight} large calls in flight vs {tier.queue_objective}")
        )
    return max(found, default=(0.0, "no load objective"))


def next_shift(previous: float, elapsed_s: float, over: bool, config: LoadShift) -> float:
    """The load shift after `elapsed_s` seconds: decayed, then one bounded step up if over objective."""
    decayed = previous * 0.5 ** (max(0.0, elapsed_s) / config.half_life_s)
    shift = min(config.max, decayed + config.step) if over else decayed
    return 0.0 if shift < 1e-4 else shift


def load_shift(
    name: str, tier: Tier, in_flight: int, now: float | None = None, *, commit: bool = True
) -> tuple[float, str]:
    """Tier `name`'s load shift for a query routed now, with the reason; `commit` records it (a
    preview, such as `hybrid policy explain`, leaves the shift where it was)."""
    moment = time.monotonic() if now is None else now
    level, why = pressure(tier, large_p95(moment), in_flight)
    with _lock:
        previous, at = _shifts.get(name, (0.0, moment))
        shift = next_shift(previous, moment - at, level > 1.0, tier.load_shift)
        if commit:
            _shifts[name] = (shift, moment)
    if commit:
        observability.THRESHOLD_SHIFT.labels(name, "load").set(shift)
    if level > 1.0:
        return shift, f"{why}: over objective"
    return shift, (f"{why}: decaying" if shift else why)


@dataclass(frozen=True)
class Shift:
    """The threshold's move for one query: the total and each part with its reason."""

    total: float = 0.0
    parts: tuple[tuple[str, float, str], ...] = field(default_factory=tuple)
    """(cause, amount, why), for every cause that moved it."""

    def describe(self) -> str:
        return ", ".join(f"{cause} {amount:+.2f} ({why})" for cause, amount, why in self.parts)


def reset() -> None:
    """Forget recorded latencies and shifts (tests; a process restart)."""
    with _lock:
        _latencies.clear()
        _shifts.clear()
