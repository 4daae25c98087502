"""Labelled drafts for the verifier: the JSONL format, and a builder that makes them with a real model.

A row is one answer a model gave, with what the verifier sees at run time and a label:

    {"question": ..., "answer": ..., "passages": [...], "finish_reason": "stop",
     "model_meta": {"mean_token_logprob": ..., "min_token_prob": ...}, "good": 0|1, "group": ...}

`passages` (the retrieved text the model was shown) and `group` (rows of one group share a
cross-validation fold) are optional.

The builder asks the embedded small model (SmolLM2-135M by default) XQuAD's English questions
(SQuAD format) through the graph's own prompt (`graphs.nodes.answer_messages`), with the question's
own paragraph as the retrieved passage, or for a seeded share of questions a paragraph of another
article (so that the model's answer is usually unsupported and grounding matters). Labelling rule:
an answer is good when, after SQuAD's normalisation (lower case, no punctuation, no articles),
some gold answer's tokens appear in it as a contiguous run, or its token F1 with some gold answer
is at least 0.5. Answers are cached per (model, answer length, question, passage), so a rebuild or
an evaluation over the same questions only generates what is missing.
"""

from __future__ import annotations

import collections
import hashlib
import json
import random
import re
import string
from collections.abc import Callable, Iterator, Sequence
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


def _cache_key(model: str, max_tokens: int, item: QAItem) -> str:
    raw = json.dumps([model, max_tokens, item.question, item.passage, item.source])
    return hashlib.sha256(raw.encode()).hexdigest()[:24]


def _read_cache(path: Path) -> dict[str, dict[str, Any]]:
    cached: dict[str, dict[str, Any]] = {}
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines():
            try:
                entry = json.loads(line)
            except json.JSONDecodeError:  # a line cut by an interrupted run
                continue
            cached[entry["key"]] = entry
    return cached


def generate_answers(
    items: Sequence[QAItem],
    *,
    cache_file: Path,
    model: str = "llamacpp:smollm2-135m-instruct",
    max_tokens: int = 48,
    log: Callable[[str], None] = lambda _m: None,
) -> list[LabelledDraft]:
    """Each item answered by `model` through the graph's prompt at temperature 0, labelled, cached."""
    cached = _read_cache(cache_file)
    keys = [_cache_key(model, max_tokens, item) for item in items]
    missing = [(k, item) for k, item in zip(keys, items, strict=True) if k not in cached]
    if missing:
        log(f"generating {len(missing)} answers with {model} ({len(items) - len(missing)} cached) ...")
        cache_file.parent.mkdir(parents=True, exist_ok=True)
        with cache_file.open("a", encoding="utf-8") as out:
            for done, entry in enumerate(_answer_all(missing, model, max_tokens), start=1):
                out.write(json.dumps(entry, ensure_ascii=False) + "\n")
                out.flush()
                cached[entry["key"]] = entry
                if done % 25 == 0:
                    log(f"  {done}/{len(missing)}")
    rows = []
    for key, item in zip(keys, items, strict=True):
        entry = cached[key]
        rows.append(
            LabelledDraft(
                question=item.question,
                answer=entry["answer"],
                good=int(is_good(entry["answer"], item.gold)),
                passages=(item.passage,),
                finish_reason=entry["finish_reason"],
                model_meta=entry["model_meta"],
                group=item.group,
                condition=item.condition,
            )
        )
    return rows


def _answer_all(
    pending: Sequence[tuple[str, QAItem]], model: str, max_tokens: int
) -> Iterator[dict[str, Any]]:
    from langchain_core.messages import HumanMessage

    from graphs.nodes import answer_messages, reply_signals
    from hybrid.models import get_chat_model
    from hybrid.settings import resolve_settings

    settings = resolve_settings(max_answer_tokens=max_tokens, temperature=0.0, history_turns=0)
    chat = get_chat_model(model, settings)
    for key, item in pending:
        hit = {"id": item.id, "text": item.passage, "source": f"{item.source}.txt", "similarity": 1.0}
        state = {
            "question": item.question,
            "messages": [HumanMessage(item.question)],
            "retrieval": {"hits": [hit]},
        }
        reply = chat.invoke(answer_messages(state, settings))  # type: ignore[arg-type]
        text, finish, meta = reply_signals(reply)
        yield {"key": key, "id": item.id, "answer": text, "finish_reason": finish, "model_meta": meta}
