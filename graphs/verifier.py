"""The verifier: judges a draft answer before anyone sees it as final.

Two judges behind one function, `judge_draft`:

- the learned, calibrated verifier (`hybrid.verification`): the draft's signals (degenerate
  output, kind of answer, grounding in the retrieved passages, relevance to the question, token
  probabilities) combined by a logistic regression into P(good), with each signal's contribution
  as a reason, accepted at the threshold calibrated on held-out data;
- the heuristic (`verify_draft`): each check passes or multiplies the score by a penalty. It is the
  fallback when the learned verifier's artifact is missing or unreadable, and the baseline that
  `hybrid eval verifier` compares against.

Certain checks are rules in both: a failed call or an empty answer scores 0, and arithmetic is
recomputed from the question (`arithmetic_in`).
"""

from __future__ import annotations

import ast
import math
import operator
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from graphs.state import Draft, Hit, Verification
from hybrid.text import content_terms, numbers, words

_REFUSAL = re.compile(
    r"\b(i('m| am) sorry|i cannot|i can't|i can not|i do not know|i don't know|as an ai|"
    r"i am not able|i'm not able|i am unable|unable to (answer|help)|no information)\b"
)
_EXPECTS_NUMBER = re.compile(r"\b(how (many|much|old|long|far)|what (year|number|percentage)|when)\b")
_EXPECTS_NAME = re.compile(r"^\s*who\b")
_WORD_OPS = [
    (re.compile(r"\bmultiplied by\b|\btimes\b"), "*"),
    (re.compile(r"\bdivided by\b|\bover\b"), "/"),
    (re.compile(r"\bplus\b|\badded to\b"), "+"),
    (re.compile(r"\bminus\b"), "-"),
]
_EXPRESSION = re.compile(r"\(?\s*-?\d+(?:\.\d+)?(?:\s*[-+*/×÷^x]\s*\(?\s*-?\d+(?:\.\d+)?\s*\)?)+")
_ARITHMETIC_CUE = re.compile(r"\b(what is|what's|calculate|compute|how much is|solve|evaluate|equals?)\b|=")
_OPS = {
    ast.Add: operator.add,
    ast.Sub: operator.sub,
    ast.Mult: operator.mul,
    ast.Div: operator.truediv,
    ast.Pow: operator.pow,
    ast.USub: operator.neg,
}


def _evaluate(node: ast.AST) -> float:
    if isinstance(node, ast.Constant) and isinstance(node.value, int | float):
        return float(node.value)
    if isinstance(node, ast.BinOp) and type(node.op) in _OPS:
        left, right = _evaluate(node.left), _evaluate(node.right)
        if isinstance(node.op, ast.Pow) and abs(right) > 64:
            raise ValueError("exponent too large")
        return _OPS[type(node.op)](left, right)
    if isinstance(node, ast.UnaryOp) and type(node.op) in _OPS:
        return _OPS[type(node.op)](_evaluate(node.operand))
    raise ValueError("not arithmetic")


def arithmetic_in(question: str) -> float | None:
    """The value of the arithmetic expression a question asks about, if it has exactly one."""
    text = question.casefold()
    for pattern, symbol in _WORD_OPS:
        text = pattern.sub(f" {symbol} ", text)
    found = _EXPRESSION.findall(text)
    if len(found) != 1:
        return None
    # A bare hyphen between numbers is usually a range ("1990-2000"), not a subtraction.
    if not re.search(r"[+*/×÷^x]", found[0]) and not _ARITHMETIC_CUE.search(text):
        return None
    expression = found[0].strip().replace("×", "*").replace("÷", "/").replace("^", "**").replace("x", "*")
    try:
        value = _evaluate(ast.parse(expression, mode="eval").body)
    except (SyntaxError, ValueError, ZeroDivisionError, OverflowError):
        return None
    return value if math.isfinite(value) else None


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


def _missing_answer(draft: Draft) -> tuple[str, str] | None:
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
    missing = _missing_answer(draft)
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


# ---------------------------------------------------------------------------------------------
# The learned verifier
# ---------------------------------------------------------------------------------------------

HEURISTIC_THRESHOLD = 0.6
"""The small tier's threshold when neither a setting nor a calibrated artifact gives one."""


def apply_rules(question: str, answer: str, p_good: float) -> tuple[float, str | None]:
    """P(good) after the arithmetic rule, and the rule's reason if it applied.

    A recomputed result the answer lacks caps the score; one it contains lifts it (the learned
    weights cannot know arithmetic: the training questions have none).
    """
    from hybrid.verification.model import ARITHMETIC_RIGHT_FLOOR, ARITHMETIC_WRONG_CAP

    expected = arithmetic_in(question)
    if expected is None:
        return p_good, None
    found = numbers(answer)
    if any(math.isclose(n, expected, rel_tol=1e-6, abs_tol=1e-6) for n in found):
        return max(p_good, ARITHMETIC_RIGHT_FLOOR), f"arithmetic checks out ({expected:g})"
    said = ", ".join(f"{n:g}" for n in found[:3]) or "no number"
    return min(p_good, ARITHMETIC_WRONG_CAP), f"arithmetic is wrong: expected {expected:g}, answer has {said}"


def load_verifier(path: Path) -> tuple[Any, str | None]:
    """The learned verifier in folder `path` (loaded once per process), or None and why not."""
    from hybrid.verification.model import VerifierModel

    try:
        return VerifierModel.load(path), None
    except FileNotFoundError:
        return None, f"no verifier artifact at {path}"
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return None, f"verifier artifact at {path} unreadable: {exc}"


def judge_draft(
    question: str,
    draft: Draft,
    hits: Sequence[Hit],
    threshold: float | None,
    *,
    verifier_path: Path,
    embedder: Any = None,
) -> Verification:
    """Score a draft with the learned verifier (the heuristic if it cannot be loaded).

    `threshold` None means the verifier's calibrated threshold (or `HEURISTIC_THRESHOLD` without
    one); `embedder` defaults to MiniLM.
    """
    model, problem = load_verifier(verifier_path)
    if model is not None and not hits and not model.covers_no_context:
        model, problem = None, "it was trained only on answers with retrieved sources, and this one has none"
    has_logprobs = isinstance((draft["model_meta"] or {}).get("mean_token_logprob"), int | float)
    if model is not None and not has_logprobs and not draft["error"] and not model.covers_no_logprobs:
        model, problem = (
            None,
            "it was trained only on answers with token log-probabilities, and this model reports none",
        )
    if model is None:
        result = verify_draft(question, draft, hits, HEURISTIC_THRESHOLD if threshold is None else threshold)
        result["reasons"].append(f"learned verifier not used ({problem}): heuristic score")
        result["calibrated"] = False
        return result
    from hybrid.verification.features import measure, minilm_embedder
    from hybrid.verification.model import describe

    calibrated_threshold = model.threshold
    if threshold is None:
        threshold = HEURISTIC_THRESHOLD if calibrated_threshold is None else calibrated_threshold
        origin = "calibrated" if calibrated_threshold is not None else "default, verifier not calibrated"
    else:
        origin = "configured"
    answer = (draft["text"] or "").strip()
    signals: dict[str, float] = {}
    notes: list[str] = []
    missing = _missing_answer(draft)
    if missing:
        p_good, rule = 0.0, missing[1]
        signals[missing[0]] = 1.0
    else:
        measured = measure(
            question,
            answer,
            [hit["text"] for hit in hits],
            finish_reason=draft["finish_reason"],
            model_meta=draft["model_meta"],
            embedder=embedder or minilm_embedder(),
        )
        judged = model.score(measured)
        p_good, rule = apply_rules(question, answer, judged.p_good)
        signals = {k: round(v, 4) for k, v in measured.values.items() if v is not None}
        # What lowered the score first (explanations quote the first reason after the verdict).
        shown = [item for item in judged.contributions if abs(item[1]) >= 0.05][:6]
        shown.sort(key=lambda item: (item[1] >= 0, -abs(item[1])))
        notes = [describe(name, c, above) for name, c, above in shown]
        if judged.missing:
            notes.append(f"not measured (no contribution): {', '.join(judged.missing)}")
        notes += measured.notes
    score = round(max(0.0, min(1.0, p_good)), 4)
    passed = missing is None and score >= threshold
    reasons = [
        f"P(good) {score:.2f} {'>=' if passed else '<'} {threshold:.2f} ({origin} threshold; "
        "contributions in log-odds)"
    ]
    if rule:
        reasons.append(rule)
    reasons += notes or ["no signal stood out"]
    signals["p_good"] = score
    return Verification(
        tier=draft["tier"],
        model=draft["model"],
        score=score,
        threshold=threshold,
        passed=passed,
        signals=signals,
        reasons=reasons,
        calibrated=True,
    )
