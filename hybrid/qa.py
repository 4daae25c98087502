"""Question-answer sets with reference answers, and how an answer is scored against them.

Three formats, recognised from the file:

- SQuAD / XQuAD JSON (`{"data": [{"title", "paragraphs": [{"context", "qas": [...]}]}]}`):
  extractive questions over articles; the articles are the knowledge to retrieve from, and the
  article is a question's group (its questions share a cross-validation fold);
- GSM8K JSONL (`{"question", "answer": "... #### 42"}`): arithmetic word problems, closed book,
  scored by the final number;
- plain JSONL (`{"question", "answers": [...], "context"?: "...", "group"?: "..."}`): scored like
  SQuAD; a `context`, when given, is ingested as knowledge.

Scores: SQuAD's exact match and token F1 (lower case, no punctuation, no articles), and
`correct`: the gold answer's tokens appear in the answer contiguously or its token F1 with one is
at least 0.5 (`hybrid.verification.data.is_good`); for numeric answers, the last number in the
answer equals the reference.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from hybrid.text import numbers
from hybrid.verification.data import is_good, squad_tokens, token_f1

Kind = Literal["extractive", "numeric"]
Format = Literal["squad", "gsm8k", "jsonl"]


@dataclass(frozen=True)
class QAItem:
    """One question with its reference answers."""

    id: str
    question: str
    answers: tuple[str, ...]
    kind: Kind
    group: str
    """Questions of one group share a fold (an article; for GSM8K each question is its own)."""
    context: str | None = None


@dataclass(frozen=True)
class QASet:
    """A question-answer set: its questions, its format, and the knowledge to retrieve from."""

    path: Path
    format: Format
    items: tuple[QAItem, ...]

    @property
    def closed_book(self) -> bool:
        """Whether the questions are asked without a knowledge base."""
        return self.format == "gsm8k" or not any(item.context for item in self.items)


@dataclass(frozen=True)
class Scored:
    """How good one answer is."""

    f1: float
    exact: float
    correct: bool


class QAFormatError(ValueError):
    """A question-answer file whose format is not one of the three, or a malformed record."""


def _squad_items(data: list[dict]) -> list[QAItem]:
    items = []
    for article in data:
        title = str(article.get("title") or "untitled")
        for paragraph in article.get("paragraphs") or []:
            for qa in paragraph.get("qas") or []:
                answers = tuple(a["text"] for a in qa.get("answers") or [] if a.get("text"))
                if answers:
                    items.append(
                        QAItem(
                            id=str(qa.get("id") or _hash(qa["question"])),
                            question=qa["question"].strip(),
                            answers=answers,
                            kind="extractive",
                            group=title,
                            context=paragraph.get("context"),
                        )
                    )
    return items


def _hash(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


_GSM8K_FINAL = re.compile(r"####\s*(.+?)\s*$", re.S)


def _jsonl_items(path: Path) -> tuple[Format, list[QAItem]]:
    items: list[QAItem] = []
    kinds: set[str] = set()
    for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as exc:
            raise QAFormatError(f"{path}:{number}: not JSON ({exc.msg})") from None
        if not isinstance(row, dict) or not isinstance(row.get("question"), str):
            raise QAFormatError(f"{path}:{number}: a record needs a 'question' string")
        question = row["question"].strip()
        if isinstance(row.get("answer"), str) and (final := _GSM8K_FINAL.search(row["answer"])):
            kinds.add("gsm8k")
            answer = final.group(1).replace(",", "").strip()
            items.append(QAItem(_hash(question), question, (answer,), "numeric", _hash(question)))
            continue
        answers = row.get("answers")
        if isinstance(answers, str):
            answers = [answers]
        if not isinstance(answers, list) or not answers or not all(isinstance(a, str) for a in answers):
            raise QAFormatError(
                f"{path}:{number}: a record needs 'answers' (a list of strings) or a GSM8K 'answer' ending "
                "in '#### <number>'"
            )
        kinds.add("jsonl")
        items.append(
            QAItem(
                id=str(row.get("id") or _hash(question)),
                question=question,
                answers=tuple(answers),
                kind="extractive",
                group=str(row.get("group") or row.get("id") or _hash(question)),
                context=row.get("context") if isinstance(row.get("context"), str) else None,
            )
        )
    if len(kinds) > 1:
        raise QAFormatError(f"{path}: mixes GSM8K records with plain question/answers records")
    return ("gsm8k" if kinds == {"gsm8k"} else "jsonl"), items


def load_qa(path: Path, *, limit: int | None = None) -> QASet:
    """The questions of a SQuAD/XQuAD JSON, GSM8K JSONL or plain JSONL file (the first `limit`)."""
    path = Path(path)
    if not path.is_file():
        raise QAFormatError(f"no question-answer file at {path}")
    if path.suffix.lower() == ".json":
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise QAFormatError(f"{path}: not JSON ({exc.msg}, line {exc.lineno})") from None
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise QAFormatError(f"{path}: expected SQuAD format ({{'data': [articles]}})")
        fmt: Format = "squad"
        items = _squad_items(data["data"])
    else:
        fmt, items = _jsonl_items(path)
    if not items:
        raise QAFormatError(f"{path} holds no questions with reference answers")
    if limit is not None:
        items = items[:limit]
    return QASet(path=path, format=fmt, items=tuple(items))


def _final_number(text: str) -> float | None:
    found = numbers(text)
    return found[-1] if found else None


def score(answer: str | None, item: QAItem) -> Scored:
    """How good `answer` is against the item's references (no answer scores 0)."""
    if not answer or not answer.strip():
        return Scored(0.0, 0.0, False)
    if item.kind == "numeric":
        said, expected = _final_number(answer), _final_number(item.answers[0])
        right = said is not None and expected is not None and math.isclose(said, expected, abs_tol=1e-6)
        return Scored(float(right), float(right), right)
    f1 = max(token_f1(answer, gold) for gold in item.answers)
    exact = float(any(squad_tokens(answer) == squad_tokens(gold) for gold in item.answers))
    return Scored(round(f1, 4), exact, is_good(answer, item.answers))
