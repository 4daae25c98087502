"""The heuristic verifier: each check passes or multiplies the score by a penalty.

It judges a draft when the learned verifier's artifact is missing, unreadable or does not cover
the draft (no sources, no token probabilities), and it is the baseline `hybrid eval verifier`
compares against. A failed call or an empty answer scores 0, and arithmetic is recomputed from the
question (`hybrid.arithmetic`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Sequence

from hybrid.arithmetic import arithmetic_in
from hybrid.decisions import Draft, Hit, Verification
from hybrid.text import content_terms, numbers, words

_REFUSAL = re.compile(
    r"\b(i('m| am) sorry|i cannot|i can't|i can not|i do not know|i don't know|as an ai|"
    r"i am not able|i'm not able|i am unable|unable to (answer|help)|no information)\b"
)
_EXPECTS_NUMBER = re.compile(r"\b(how (many|much|old|long|far)|what (year|number|percentage)|when)\b")
_EXPECTS_NAME = re.compile(r"^\s*who\b")


def _distinct_ratio(tokens: Sequence[str], n: int = 3) -> float:
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    return len(set(grams)) / len(grams) if grams else 1.0


class _Judgement:
    """Accumulates penalties (multiplicative) and the reasons for them."""

    def __init__(self) -> None:
        self.score = 1.0
        self.signals: dict[str, float] = {}
        self.reasons: list[str] = []

    def penalise(self, name: str, factor: float, reason: str) -> None:
        self.signals[name] = factor
        self.score *= factor
        self.reasons.append(f"{reason} (x{factor:.2f})")

    def note(self, name: str, value: float, reason: str | None = None) -> None:
        self.signals[name] = value
        if reason:
            self.reasons.append(reason)


def _check_degenerate(j: _Judgement, question: str, answer: str, finish_reason: str | None) -> None:
    answer_words = words(answer)
    answer_terms = set(content_terms(answer))
    if _REFUSAL.search(answer.casefold()):
        j.penalise("refusal", 0.2, "refuses or does not know")
    overlap = len(answer_terms & set(content_terms(question))) / len(answer_terms) if answer_terms else 0.0
    # A terse answer ("17.") may well appear in the question; an echo is several words of it.
    echoed = len(answer_words) >= 3 and " ".join(answer_words) in " ".join(words(question))
    if echoed or (overlap >= 0.9 and len(answer_terms) >= 3 and answer.endswith("?")):
        j.penalise("echo", 0.15, "repeats the question instead of answering")
    distinct = _distinct_ratio(answer_words)
    j.note("distinct_trigrams", round(distinct, 3))
    if distinct < 0.5:
        j.penalise("repetition", 0.3, f"repetitive ({distinct:.0%} distinct word triples)")
    if finish_reason == "length":
        j.penalise("truncated", 0.6, "cut off at the answer-length limit")


def _check_answer_kind(j: _Judgement, question: str, answer: str, expected: float | None) -> None:
    answer_numbers = numbers(answer)
    if expected is not None:
        if any(math.isclose(n, expected, rel_tol=1e-6, abs_tol=1e-6) for n in answer_numbers):
            j.note("arithmetic", 1.0, f"arithmetic checks out ({expected:g})")
        else:
            said = ", ".join(f"{n:g}" for n in answer_numbers[:3]) or "no number"
            j.penalise("arithmetic", 0.05, f"arithmetic is wrong: expected {expected:g}, answer has {said}")
    elif _EXPECTS_NUMBER.search(question.casefold()) and not answer_numbers:
        j.penalise("answer_type", 0.5, "question asks for a number or date; answer has none")
    elif _EXPECTS_NAME.search(question.casefold()) and not re.search(r"\b[A-Z][a-z]+", answer):
        j.penalise("answer_type", 0.5, "question asks who; answer names no one")


def _check_grounding(
    j: _Judgement, question: str, answer: str, hits: Sequence[Hit], expected: float | None
) -> None:
    context = "\n".join(hit["text"] for hit in hits)
    answer_terms = set(content_terms(answer))
    supported = set(content_terms(context)) | set(content_terms(question))
    grounded = len(answer_terms & supported) / len(answer_terms) if answer_terms else 1.0
    j.note("grounding", round(grounded, 3))
    if grounded < 0.5:
        j.penalise(
            "grounding", 0.4 + grounded, f"only {grounded:.0%} of the answer's terms are in the sources"
        )
    known = numbers(context) + numbers(question)
    unsupported = [n for n in numbers(answer) if not any(math.isclose(n, k) for k in known)]
    if unsupported and expected is None:
        j.penalise("unsupported_numbers", 0.5, f"numbers not in the sources: {unsupported[0]:g}")


def _check_confidence(j: _Judgement, model_meta: dict[str, float | str]) -> None:
    mean_logprob = model_meta.get("mean_token_logprob")
    if isinstance(mean_logprob, float):
        confidence = math.exp(mean_logprob)
        j.note("mean_token_prob", round(confidence, 4))
        if confidence < 0.35:
            j.penalise(
                "low_confidence", 0.5 + confidence, f"model unsure (mean token probability {confidence:.2f})"
            )


def missing_answer(draft: Draft) -> tuple[str, str] | None:
    """(signal, reason) when a draft holds no answer at all (a failed call, an empty text), else None.

    No answer never passes, whatever the threshold (a threshold of 0 must not accept a failure).
    """
    if draft["error"]:
        return "model_error", f"model call failed: {draft['error']}"
    if not words((draft["text"] or "").strip()):
        return "empty", "empty answer"
    return None


def verify_draft(question: str, draft: Draft, hits: Sequence[Hit], threshold: float) -> Verification:
    """Score a draft in [0, 1] with the reasons behind the score."""
    j = _Judgement()
    answer = (draft["text"] or "").strip()
    missing = missing_answer(draft)
    if missing:
        j.penalise(missing[0], 0.0, missing[1])
    else:
        expected = arithmetic_in(question)
        _check_degenerate(j, question, answer, draft["finish_reason"])
        _check_answer_kind(j, question, answer, expected)
        if hits:
            _check_grounding(j, question, answer, hits, expected)
        _check_confidence(j, draft["model_meta"])

    score = max(0.0, min(1.0, j.score))
    passed = missing is None and score >= threshold
    reasons = j.reasons or ["no problem found"]
    reasons.insert(0, f"score {score:.2f} {'>=' if passed else '<'} {threshold:.2f}")
    return Verification(
        tier=draft["tier"],
        model=draft["model"],
        score=round(score, 4),
        threshold=threshold,
        passed=passed,
        signals=j.signals,
        reasons=reasons,
    )
