"""The verifier: judges a draft answer before anyone sees it as final.

Two judges behind one function, `judge_draft`:

- the learned, calibrated verifier (`hybrid.verification.model`): the draft's signals (degenerate
  output, kind of answer, grounding in the retrieved passages, relevance to the question, token
  probabilities) combined by a logistic regression into P(good), with each signal's contribution
  as a reason, accepted at the threshold calibrated on held-out data;
- the heuristic (`hybrid.verification.heuristic`), the fallback when the learned verifier's
  artifact is missing, unreadable, or was not trained on drafts like this one.

Certain checks are rules in both: a failed call or an empty answer scores 0, and arithmetic is
recomputed from the question (`hybrid.arithmetic`).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hybrid.arithmetic import arithmetic_in
from hybrid.decisions import Draft, Hit, Verification
from hybrid.text import numbers
from hybrid.verification.heuristic import missing_answer, verify_draft

# ---------------------------------------------------------------------------------------------

HEURISTIC_THRESHOLD = 0.6
"""The small tier's threshold when neither a setting nor a calibrated artifact gives one."""
LARGE_HEURISTIC_THRESHOLD = 0.5
"""The large tier's: escalation is no longer possible, so a draft needs less to pass."""


ARITHMETIC_WRONG = "arithmetic is wrong"


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
    return min(p_good, ARITHMETIC_WRONG_CAP), f"{ARITHMETIC_WRONG}: expected {expected:g}, answer has {said}"


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
    verifier_path: Path | None,
    embedder: Any = None,
    default_threshold: float = HEURISTIC_THRESHOLD,
) -> Verification:
    """Score a draft with the learned verifier (the heuristic if there is none or it cannot be loaded).

    `threshold` None means the verifier's calibrated threshold (or `default_threshold` without
    one); `embedder` defaults to MiniLM.
    """
    model, problem = load_verifier(verifier_path) if verifier_path else (None, "none for this tier")
    if model is not None and not hits and not model.covers_no_context:
        model, problem = None, "it was trained only on answers with retrieved sources, and this one has none"
    has_logprobs = isinstance((draft["model_meta"] or {}).get("mean_token_logprob"), int | float)
    if model is not None and not has_logprobs and not draft["error"] and not model.covers_no_logprobs:
        model, problem = (
            None,
            "it was trained only on answers with token log-probabilities, and this model reports none",
        )
    if model is None:
        result = verify_draft(question, draft, hits, default_threshold if threshold is None else threshold)
        result["reasons"].append(f"learned verifier not used ({problem}): heuristic score")
        result["calibrated"] = False
        return result
    from hybrid.verification.features import measure, minilm_embedder
    from hybrid.verification.model import describe

    calibrated_threshold = model.threshold
    if threshold is None:
        threshold = default_threshold if calibrated_threshold is None else calibrated_threshold
        origin = "calibrated" if calibrated_threshold is not None else "default, verifier not calibrated"
    else:
        origin = "configured"
    answer = (draft["text"] or "").strip()
    signals: dict[str, float] = {}
    notes: list[str] = []
    missing = missing_answer(draft)
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
    # A recomputed result the answer contradicts fails at any threshold: a tuned threshold may
    # accept every other draft of a tier (review scores nothing in the tuning target), never a
    # sum shown wrong.
    refuted = rule is not None and rule.startswith(ARITHMETIC_WRONG)
    passed = missing is None and not refuted and score >= threshold
    compared = "<" if score < threshold else ">="
    reasons = [
        f"P(good) {score:.2f} {compared} {threshold:.2f} ({origin} threshold; contributions in log-odds)"
        + ("; fails whatever the threshold" if refuted else "")
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
