"""Drafts of a real model to XQuAD questions, labelled, for training and evaluating the verifier.

The builder asks the embedded small model (SmolLM2-135M by default) XQuAD's English questions
through the graph's own prompt (`graphs.prompts.answer_messages`), with the question's own paragraph
as the retrieved passage, or for a seeded share of questions a paragraph of another article (so
that the model's answer is usually unsupported and grounding matters). Answers are labelled with
`hybrid.verification.data.is_good` and cached per (model, answer length, question, passage), so a
rebuild or an evaluation over the same questions only generates what is missing.
"""

from __future__ import annotations

import hashlib
import json
import random
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from hybrid.settings import Settings
from hybrid.verification.data import LabelledDraft, QAItem, is_good, xquad_items

Log = Callable[[str], None]
SMALL_MODEL = "llamacpp:smollm2-135m-instruct"


def answers_cache(settings: Settings) -> Path:
    """Where generated answers are cached."""
    return settings.data_dir / "verifier" / "answers.jsonl"


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

    from graphs.prompts import answer_messages
    from hybrid.answering import reply_signals
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


def build_xquad_rows(
    xquad: Path,
    settings: Settings,
    *,
    per_paragraph: int = 3,
    wrong_share: float = 0.25,
    max_items: int | None = None,
    max_tokens: int = 48,
    model: str = SMALL_MODEL,
    seed: int = 0,
    log: Log = lambda _m: None,
) -> list[LabelledDraft]:
    """Labelled answers of the real small model to XQuAD questions (see `data`), generated or cached."""
    items = xquad_items(xquad, per_paragraph=per_paragraph, wrong_share=wrong_share, seed=seed)
    if max_items is not None and max_items < len(items):
        chosen = set(random.Random(seed).sample(range(len(items)), max_items))
        items = [item for i, item in enumerate(items) if i in chosen]
    return generate_answers(
        items, cache_file=answers_cache(settings), model=model, max_tokens=max_tokens, log=log
    )
