"""Token log-probabilities as the verifier reads them: the answer's mean log-probability and its
least likely token, from whichever model reported them."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any


def confidence(logprobs: Sequence[float]) -> dict[str, float]:
    """`mean_token_logprob` and `min_token_prob` of an answer's tokens (nothing for no tokens)."""
    if not logprobs:
        return {}
    return {"mean_token_logprob": sum(logprobs) / len(logprobs), "min_token_prob": math.exp(min(logprobs))}


def reported(logprobs: Any) -> list[float]:
    """The answer's token log-probabilities as a provider reports them: Ollama's list of tokens, or
    OpenAI's `{"content": [...]}` (each token a mapping or an object with `logprob`)."""
    if isinstance(logprobs, Mapping):
        logprobs = logprobs.get("content")
    if not isinstance(logprobs, Sequence) or isinstance(logprobs, str):
        return []
    found = []
    for token in logprobs:
        value = token.get("logprob") if isinstance(token, Mapping) else getattr(token, "logprob", None)
        if isinstance(value, int | float) and math.isfinite(value):
            found.append(float(value))
    return found
