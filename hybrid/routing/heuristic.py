"""The heuristic router: a noisy-OR of hand-weighted difficulty signals (each alone can make a
query hard, and they compound). It decides when the learned router is switched off or its artifact
cannot be read, and it is the baseline the learned router is compared with.
"""

from __future__ import annotations

import re

from hybrid.text import numbers, words

HEURISTIC_THRESHOLD = 0.5

_ARITHMETIC = re.compile(r"\d\s*(?:[-+*/×÷^]|\bx\b)\s*\(?\s*\d")
_MATH_WORDS = re.compile(
    r"\b(calculate|compute|solve|how many|how much|percent(age)?|total|sum|average|mean|median|ratio|"
    r"equation|probability|remainder|divided|multiplied|times|squared|square root|integral|derivative)\b"
)
_STEP_WORDS = re.compile(
    r"\b(then|after|each|per|remaining|left|twice|half|more than|less than|if|every|altogether|"
    r"in total|difference)\b"
)
_REASONING_WORDS = re.compile(
    r"\b(why|explain|compare|contrast|prove|derive|analy[sz]e|evaluate|justify|step by step|"
    r"implications?|trade-?offs?|pros and cons|reason)\b"
)
_CODE = re.compile(
    r"```|\bdef\s+\w+\(|\bclass\s+\w+|\b(function|code|python|javascript|typescript|sql|regex|"
    r"implement|compile|stack ?trace|exception|bug|api)\b|[{};]\s*$",
    re.MULTILINE,
)
_LONG_FORM = re.compile(r"\b(write|essay|story|poem|summari[sz]e|draft|letter|translate|rewrite)\b")
# Weight of each signal: the probability it alone makes the small model fail (heuristic).
WEIGHTS = {
    "arithmetic": 0.8,
    "math_words": 0.25,
    "several_numbers": 0.45,
    "multi_step": 0.2,
    "reasoning": 0.35,
    "code": 0.45,
    "long_form": 0.4,
    "length": 0.5,
    "several_questions": 0.3,
}

LABELS = {
    "arithmetic": "arithmetic expression",
    "math_words": "math vocabulary",
    "several_numbers": "several numbers to combine",
    "multi_step": "multi-step wording",
    "reasoning": "asks for reasoning",
    "code": "code",
    "long_form": "asks for long-form writing",
    "length": "long question",
    "several_questions": "several questions at once",
}


def difficulty_signals(text: str) -> dict[str, float]:
    """Each difficulty signal of a text, as a strength in [0, 1]."""
    lowered = text.casefold()
    n_words = len(words(text))
    n_numbers = len(numbers(text))
    return {
        "arithmetic": 1.0 if _ARITHMETIC.search(lowered) else 0.0,
        "math_words": min(1.0, len(_MATH_WORDS.findall(lowered)) / 2),
        "several_numbers": min(1.0, max(0, n_numbers - 1) / 3),
        "multi_step": min(1.0, len(_STEP_WORDS.findall(lowered)) / 4),
        "reasoning": min(1.0, len(_REASONING_WORDS.findall(lowered)) / 2),
        "code": 1.0 if _CODE.search(text) else 0.0,
        "long_form": 1.0 if _LONG_FORM.search(lowered) else 0.0,
        "length": min(1.0, max(0, n_words - 25) / 75),
        "several_questions": 1.0 if text.count("?") >= 2 else 0.0,
    }


def difficulty_score(signals: dict[str, float]) -> tuple[float, list[tuple[str, float]]]:
    """Noisy-OR of weighted signals, and each signal's contribution, largest first."""
    survive = 1.0
    contributions = []
    for name, strength in signals.items():
        p = WEIGHTS[name] * strength
        if p > 0:
            contributions.append((name, p))
            survive *= 1.0 - p
    contributions.sort(key=lambda item: -item[1])
    return 1.0 - survive, contributions
