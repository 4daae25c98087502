"""Where labelled routing examples come from: a JSONL file, RouteLLM's data, the feedback table."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from hybrid.routing.data import load_gsm8k, load_mmlu
from hybrid.routing.model import Example
from hybrid.settings import Settings


def example_from_record(record: dict[str, Any], where: str = "") -> Example:
    """One JSONL record: `{"query", "label": 0|1}` or `{"query", "small_correct", "large_correct"}`,
    optionally with `context`, `weight`, `group` and `retrieval_confidence`."""
    try:
        query = record["query"]
        if not isinstance(query, str) or not query.strip():
            raise ValueError("query must be non-empty text")
        extra = {}
        if record.get("retrieval_confidence") is not None:
            extra["retrieval_confidence"] = float(record["retrieval_confidence"])
        common: dict[str, Any] = {
            "context": str(record.get("context") or ""),
            "weight": float(record.get("weight", 1.0)),
            "group": None if record.get("group") is None else str(record["group"]),
            "extra": extra,
        }
        if "label" in record:
            return Example(query, small_ok=int(record["label"]), **common)
        return Example(
            query,
            small_correct=bool(record["small_correct"]),
            large_correct=bool(record["large_correct"]),
            **common,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ValueError(f"{where}: {exc.__class__.__name__}: {exc}") from None


def read_jsonl(path: Path) -> list[Example]:
    """Every labelled example of a JSONL file (a bad line is an error that names it)."""
    examples = []
    with Path(path).open(encoding="utf-8") as handle:
        for number, line in enumerate(handle, start=1):
            if line.strip():
                examples.append(example_from_record(json.loads(line), f"{path}:{number}"))
    if not examples:
        raise ValueError(f"{path}: no examples")
    return examples


def routellm_examples(root: Path) -> list[Example]:
    """RouteLLM's MMLU and GSM8K labels (Mixtral as the small model, GPT-4 as the large one)."""
    examples = []
    for bench in (load_mmlu(root), load_gsm8k(root)):
        for i, prompt in enumerate(bench.prompts):
            group = f"mmlu:{bench.groups[i]}" if bench.groups is not None else bench.name
            examples.append(
                Example(
                    prompt,
                    small_correct=bool(bench.weak[i]),
                    large_correct=bool(bench.strong[i]),
                    group=group,
                )
            )
    return examples


def feedback_examples(settings: Settings, weight: float) -> list[Example]:
    """The feedback table's labelled examples (users' ratings, reviewers' verdicts), each `weight`."""
    from hybrid.feedback import labelled_examples

    return [
        Example(row["query"], small_ok=int(row["label"]), context=row.get("context") or "", weight=weight,
                group=f"feedback:{row.get('source') or 'user'}")
        for row in labelled_examples(settings)
    ]  # fmt: skip
