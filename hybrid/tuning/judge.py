"""The judge: a model that labels a pair of answers when no person and no reference answer can.

The rubric (`RUBRIC`) shows the judge the question, the sources the answering models saw, and two
answers, A and B, and asks whether each is right. Models favour one position, so every pair is
judged twice, the answers swapped the second time; an answer counts as right only when it was
judged right in both positions, wrong when wrong in both, and undecided (no label) otherwise.

The judge is `HYBRID_JUDGE_MODEL`, by default the large tier's first model. `hybrid eval judge`
measures how often it agrees with reference labels, so a user knows how far to trust it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

from langchain_core.messages import HumanMessage, SystemMessage

from hybrid.settings import Settings

Grade = Literal["right", "wrong"]

RUBRIC = (
    "You check answers to a question. An answer is right when it gives the fact the question asks "
    "for, agreeing with the sources when there are sources; it may be short. It is wrong when it "
    "gives another fact, does not answer, or contradicts the sources. Reply with two lines, exactly: "
    "'A: right' or 'A: wrong', then 'B: right' or 'B: wrong'."
)
_PROMPT = "{sources}Question: {question}\nAnswer A: {first}\nAnswer B: {second}\nVerdict:"
_GRADE = re.compile(r"\b([AB])\s*[:=-]\s*(right|wrong|correct|incorrect)\b", re.IGNORECASE)


@dataclass(frozen=True)
class Verdict:
    """The judge's labels of one pair: each answer right, wrong, or undecided (None)."""

    small: Grade | None
    large: Grade | None
    raw: tuple[str, str]
    """The judge's two replies (small first, then large first)."""
    model: str


def parse(reply: str) -> dict[str, Grade]:
    """The grades a reply gives to A and B (the first one for each)."""
    grades: dict[str, Grade] = {}
    for letter, word in _GRADE.findall(reply):
        grades.setdefault(letter.upper(), "right" if word.lower() in ("right", "correct") else "wrong")
    return grades


def _sources(passages: Sequence[str]) -> str:
    if not passages:
        return ""
    quoted = "\n".join(f"- {p.strip()[:1500]}" for p in passages if p.strip())
    return f"Sources:\n{quoted}\n"


def _ask(model: object, question: str, passages: Sequence[str], first: str, second: str) -> str:
    prompt = _PROMPT.format(sources=_sources(passages), question=question, first=first, second=second)
    reply = model.invoke([SystemMessage(RUBRIC), HumanMessage(prompt)])  # type: ignore[attr-defined]
    return str(reply.text)


def judge_pair(question: str, passages: Sequence[str], small: str, large: str, settings: Settings) -> Verdict:
    """Both answers graded in both positions."""
    from hybrid.models import get_chat_model

    spec = settings.judge_model or settings.large_spec
    model = get_chat_model(spec, settings)
    small_first = _ask(model, question, passages, small, large)
    large_first = _ask(model, question, passages, large, small)
    a, b = parse(small_first), parse(large_first)

    def agreed(first: Grade | None, second: Grade | None) -> Grade | None:
        return first if first is not None and first == second else None

    return Verdict(
        small=agreed(a.get("A"), b.get("B")),
        large=agreed(a.get("B"), b.get("A")),
        raw=(small_first, large_first),
        model=spec,
    )
