"""What a model is doing right now: loaded or cold, how busy, how much context it has.

- Embedded (llama.cpp): loaded once this process has loaded the file; busy counts this process's
  calls in flight; the context is `n_ctx`.
- Ollama: loaded if `/api/ps` lists the tag (Ollama unloads a model `keep_alive` after its last
  call, and loading takes tens of seconds); busy counts this process's calls in flight; the
  context is the `num_ctx` we send (Ollama would silently truncate a longer prompt).
- OpenAI-compatible servers: unknown, and treated as warm.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from dataclasses import dataclass

from hybrid.settings import Settings

_lock = threading.Lock()
_in_flight: Counter[str] = Counter()
_ollama_seen: dict[str, tuple[float, set[str]]] = {}  # base URL -> (when, loaded tags)
_OLLAMA_PS_TTL_S = 2.0


@dataclass(frozen=True)
class ModelState:
    """A snapshot of one model's state, as far as it can be known."""

    spec: str
    loaded: bool | None
    """True loaded, False cold, None unknown."""
    in_flight: int
    context_tokens: int | None
    cold_start_s: float
    """How long a first call is expected to wait for loading, if cold."""


class in_flight:
    """Count a call to `spec` as in flight while the block runs."""

    def __init__(self, spec: str) -> None:
        self.spec = spec

    def __enter__(self) -> None:
        with _lock:
            _in_flight[self.spec] += 1

    def __exit__(self, *_: object) -> None:
        with _lock:
            _in_flight[self.spec] -= 1


def _ollama_loaded(base_url: str, tag: str) -> bool | None:
    import httpx

    now = time.monotonic()
    with _lock:
        seen = _ollama_seen.get(base_url)
    if seen is None or now - seen[0] > _OLLAMA_PS_TTL_S:
        try:
            response = httpx.get(f"{base_url.rstrip('/')}/api/ps", timeout=0.5)
            response.raise_for_status()
            tags = {m.get("name", "") for m in response.json().get("models", [])}
            tags |= {m.get("model", "") for m in response.json().get("models", [])}
        except (httpx.HTTPError, ValueError):
            return None
        with _lock:
            _ollama_seen[base_url] = (now, tags)
        seen = (now, tags)
    return tag in seen[1] or f"{tag}:latest" in seen[1]


def model_state(spec: str, settings: Settings) -> ModelState:
    """The state of a model spec, probing its server where that is cheap."""
    from hybrid.models.factory import ModelSpec

    parsed = ModelSpec.parse(spec)
    with _lock:
        busy = _in_flight[spec]
    if parsed.provider == "llamacpp":
        from hybrid.models.llamacpp import is_loaded

        return ModelState(
            spec, is_loaded(parsed.name, settings), busy, settings.n_ctx, settings.embedded_cold_start_s
        )
    if parsed.provider == "ollama":
        loaded = _ollama_loaded(settings.ollama_base_url, parsed.name)
        return ModelState(spec, loaded, busy, settings.n_ctx, settings.ollama_cold_start_s)
    return ModelState(spec, None, busy, None, 0.0)


def estimated_tokens(text: str) -> int:
    """A conservative token count for routing (about 3 characters a token; exact counts come later)."""
    return len(text) // 3 + 1


def reset() -> None:
    """Forget probes (tests)."""
    with _lock:
        _ollama_seen.clear()
        _in_flight.clear()
