"""Labelled drafts for the verifier: the JSONL format, the labelling rule, and XQuAD's questions.

A row is one answer a model gave, with what the verifier sees at run time and a label:

    {"question": ..., "answer": ..., "passages": [...], "finish_reason": "stop",
     "model_meta": {"mean_token_logprob": ..., "min_token_prob": ...}, "good": 0|1, "group": ...}

`passages` (the retrieved text the model was shown) and `group` (rows of one group share a
cross-validation fold) are optional.

Labelling rule: an answer is good when, after SQuAD's normalisation (lower case, no punctuation,
no articles), some gold answer's tokens appear in it as a contiguous run, or its token F1 with
some gold answer is at least 0.5. `hybrid.evals.drafts` asks a real model the questions.
"""

from __future__ import annotations

import collections
import json
import random
import re
import string
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

GOOD_RULE = (
    "good = 1 when, after SQuAD normalisation, a gold answer's tokens appear contiguously in the answer "
    "or the answer's token F1 with a gold answer is >= 0.5; else 0"
)


@dataclass(frozen=True)
class LabelledDraft:
    """One answer with what the verifier reads and whether it was good."""

    question: str
    answer: str
    good: int
    passages: tuple[str, ...] = ()
    finish_reason: str | None = "stop"
    model_meta: dict[str, Any] = field(default_factory=dict)
    group: str | None = None
    condition: str = ""
    """How the row was made (builder only): `gold` or `wrong` passage."""

    def as_dict(self) -> dict[str, Any]:
        """The JSONL row."""
        return {
            "question": self.question,
            "answer": self.answer,
            "passages": list(self.passages),
            "finish_reason": self.finish_reason,
            "model_meta": self.model_meta,
            "good": self.good,
            "group": self.group,
            "condition": self.condition,
        }


def row_from_dict(row: dict[str, Any], where: str = "") -> LabelledDraft:
    """A row of the JSONL format, checked."""
    for key in ("question", "answer", "good"):
        if key not in row:
            raise ValueError(f"{where}missing {key!r}")
    if row["good"] not in (0, 1, True, False):
        raise ValueError(f"{where}good must be 0 or 1, not {row['good']!r}")
    passages = row.get("passages") or []
    if not isinstance(passages, list) or not all(isinstance(p, str) for p in passages):
        raise ValueError(f"{where}passages must be a list of strings")
    meta = row.get("model_meta") or {}
    if not isinstance(meta, dict):
        raise ValueError(f"{where}model_meta must be an object")
    return LabelledDraft(
        question=str(row["question"]),
        answer=str(row["answer"] or ""),
        good=int(row["good"]),
        passages=tuple(passages),
        finish_reason=row.get("finish_reason"),
        model_meta=meta,
        group=None if row.get("group") is None else str(row["group"]),
        condition=str(row.get("condition") or ""),
    )


def read_jsonl(path: Path) -> list[LabelledDraft]:
    """Rows of a labelled-draft JSONL file; a clear error names the first bad line."""
    rows = []
    for number, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            rows.append(row_from_dict(json.loads(line), f"{path}:{number}: "))
        except json.JSONDecodeError as exc:
            raise ValueError(f"{path}:{number}: not JSON ({exc.msg})") from None
    if not rows:
        raise ValueError(f"{path} holds no rows")
    return rows


def write_jsonl(rows: Sequence[LabelledDraft], path: Path) -> Path:
    """Write rows as JSONL (the folder is created)."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(json.dumps(r.as_dict(), ensure_ascii=False) + "\n" for r in rows))
    return Path(path)


# ---------------------------------------------------------------------------------------------
# SQuAD's answer normalisation and the labelling rule
# ---------------------------------------------------------------------------------------------

_ARTICLES = re.compile(r"\b(a|an|the)\b")
_PUNCTUATION = str.maketrans("", "", string.punctuation)


def squad_tokens(text: str) -> list[str]:
    """SQuAD's normalisation: lower case, punctuation and articles removed, split on white space."""
    return _ARTICLES.sub(" ", text.lower().translate(_PUNCTUATION)).split()


def token_f1(prediction: str, gold: str) -> float:
    """SQuAD's token F1 between two answers."""
    predicted, expected = squad_tokens(prediction), squad_tokens(gold)
    common = sum((collections.Counter(predicted) & collections.Counter(expected)).values())
    if not predicted or not expected or not common:
        return 0.0
    precision, recall = common / len(predicted), common / len(expected)
    return 2 * precision * recall / (precision + recall)


def _contains(answer: list[str], gold: list[str]) -> bool:
    return bool(gold) and any(answer[i : i + len(gold)] == gold for i in range(len(answer) - len(gold) + 1))


def is_good(answer: str, gold_answers: Sequence[str]) -> bool:
    """The labelling rule (`GOOD_RULE`)."""
    tokens = squad_tokens(answer)
    return any(_contains(tokens, squad_tokens(g)) or token_f1(answer, g) >= 0.5 for g in gold_answers)


# ---------------------------------------------------------------------------------------------
# XQuAD questions and the builder
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class QAItem:
    """One XQuAD question with the passage it is asked with."""

    id: str
    question: str
    gold: tuple[str, ...]
    passage: str
    source: str
    group: str
    condition: str


def xquad_items(
    path: Path, *, per_paragraph: int = 3, wrong_share: float = 0.25, seed: int = 0
) -> list[QAItem]:
    """Up to `per_paragraph` questions of each paragraph (seeded), a `wrong_share` of them paired with
    a paragraph of another article. The group is the article: its questions share a fold."""
    data = json.loads(Path(path).read_text(encoding="utf-8"))["data"]
    rng = random.Random(seed)
    paragraphs = [(a["title"], p) for a in data for p in a["paragraphs"]]
    items = []
    for title, paragraph in paragraphs:
        questions = list(paragraph["qas"])
        rng.shuffle(questions)
        for qa in questions[:per_paragraph]:
            wrong = rng.random() < wrong_share
            passage, source = paragraph["context"], title
            if wrong:
                source, other = rng.choice([(t, p) for t, p in paragraphs if t != title])
                passage = other["context"]
            items.append(
                QAItem(
                    id=qa["id"],
                    question=qa["question"].strip(),
                    gold=tuple(a["text"] for a in qa["answers"]),
                    passage=passage,
                    source=source,
                    group=title,
                    condition="wrong" if wrong else "gold",
                )
            )
    # Questions on the same passage in a row: llama.cpp reuses the common prompt prefix.
    items.sort(key=lambda item: (item.passage, item.id))
    return items
