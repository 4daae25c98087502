"""Prompt-injection flags for retrieved text: instructions hidden in documents are flagged and kept
out of prompts, and neither the route nor the system prompt's rules depend on them."""

from __future__ import annotations

import re

_PATTERNS = [
    r"\b(ignore|disregard|forget|override)\b.{0,40}\b(previous|prior|above|earlier|all|any|the)\b.{0,30}"
    r"\b(instructions?|prompts?|rules|directions|context)\b",
    r"\byou are now\b",
    r"\bnew (instructions|rules|system prompt)\b",
    r"\b(reveal|print|show|repeat)\b.{0,30}\b(system prompt|your (instructions|prompt|rules))\b",
    r"\b(act|behave) as (if you were|an?|the)\b",
    r"\bdo not (follow|obey)\b.{0,30}\b(instructions|rules)\b",
    r"</?\s*(system|assistant|user|source|instructions?)\s*>",
    r"\b(system|developer)\s*(prompt|message)\s*:",
    r"\bjailbreak\b|\bDAN mode\b",
]
_INJECTION = re.compile("|".join(f"(?:{p})" for p in _PATTERNS), re.IGNORECASE | re.DOTALL)


def looks_like_injection(text: str) -> bool:
    """Whether a text contains instructions aimed at a model rather than information."""
    return bool(_INJECTION.search(text))
