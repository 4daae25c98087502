"""RouteLLM's per-query labels (MMLU and GSM8K), read by path, with contaminated prompts dropped.

Mirrors `routellm/evals/benchmarks.py`: a row whose `prompt` equals any `eval_prompt` of the
benchmark's `contaminated_prompts.jsonl` is dropped (exact match, as pandas' `isin`). Weak is
Mixtral-8x7B-Instruct, strong GPT-4-1106. Nothing is copied; GPT-4's responses are never read.
"""

from __future__ import annotations

import csv
import json
import math
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

WEAK_MODEL = "mistralai/Mixtral-8x7B-Instruct-v0.1"
STRONG_MODEL = "gpt-4-1106-preview"

# Some GSM8K responses are longer than csv's default field limit.
csv.field_size_limit(sys.maxsize)


@dataclass(frozen=True)
class Benchmark:
    """One benchmark's queries with both models' correctness, after decontamination."""

    name: str
    prompts: list[str]
    weak: np.ndarray
    """bool per query: the weak model (Mixtral) answered correctly."""
    strong: np.ndarray
    """bool per query: the strong model (GPT-4) answered correctly."""
    groups: np.ndarray | None
    """MMLU subject per query; None for GSM8K."""
    weak_responses: list[str] | None
    """Mixtral's full response per query (GSM8K only): what a cascade verifier reads."""
    original_rows: int
    """Rows before contaminated prompts were dropped."""

    def __len__(self) -> int:
        return len(self.prompts)

    def subset(self, index: np.ndarray) -> Benchmark:
        """The queries at `index`, in that order."""
        take = list(map(int, index))
        return Benchmark(
            self.name,
            [self.prompts[i] for i in take],
            self.weak[take],
            self.strong[take],
            None if self.groups is None else self.groups[take],
            None if self.weak_responses is None else [self.weak_responses[i] for i in take],
            self.original_rows,
        )


def _contaminated(path: Path) -> set[str]:
    with path.open(encoding="utf-8") as handle:
        return {json.loads(line)["eval_prompt"] for line in handle if line.strip()}


def _flag(value: str) -> bool:
    text = value.strip()
    if text in ("True", "true", "1", "1.0"):
        return True
    if text in ("False", "false", "0", "0.0"):
        return False
    raise ValueError(f"not a correctness flag: {value!r}")


def _responses(path: Path) -> list[dict[str, str]]:
    """Every row of one of RouteLLM's responses CSVs."""
    with path.open(encoding="utf-8", newline="") as handle:
        return list(csv.DictReader(handle))


def _labels(rows: list[dict[str, str]]) -> tuple[list[str], np.ndarray, np.ndarray]:
    """Prompts, and whether the weak and the strong model got each one right."""
    weak = np.array([_flag(row[WEAK_MODEL]) for row in rows])
    strong = np.array([_flag(row[STRONG_MODEL]) for row in rows])
    return [row["prompt"] for row in rows], weak, strong


def load_gsm8k(root: Path) -> Benchmark:
    """GSM8K test questions with Mixtral's responses: 1,307 of 1,319 kept."""
    folder = Path(root) / "gsm8k"
    dropped = _contaminated(folder / "contaminated_prompts.jsonl")
    rows = _responses(folder / "gsm8k_responses.csv")
    kept = [row for row in rows if row["prompt"] not in dropped]
    responses = [row[WEAK_MODEL + "_response"] for row in kept]
    return Benchmark("gsm8k", *_labels(kept), None, responses, len(rows))


def mmlu_subjects(root: Path) -> list[str]:
    """The 57 MMLU subjects that have a responses file, sorted."""
    folder = Path(root) / "mmlu" / "responses"
    return sorted(p.name[len("mmlu_") : -len(".csv")] for p in folder.glob("mmlu_*.csv"))


def load_mmlu(root: Path) -> Benchmark:
    """MMLU questions of all 57 subjects: 14,037 of 14,042 kept (105 prompt texts appear twice)."""
    folder = Path(root) / "mmlu"
    dropped = _contaminated(folder / "contaminated_prompts.jsonl")
    kept, groups, rows = [], [], 0
    for subject in mmlu_subjects(root):
        read = _responses(folder / "responses" / f"mmlu_{subject}.csv")
        rows += len(read)
        kept += [row for row in read if row["prompt"] not in dropped]
        groups += [subject] * (len(kept) - len(groups))
    return Benchmark("mmlu", *_labels(kept), np.array(groups), None, rows)


@dataclass(frozen=True)
class WorkedProblem:
    """A GSM8K training question and what its gold solution says about its difficulty."""

    question: str
    steps: int
    """Computation steps (`<<...>>` annotations) in the gold solution."""
    log_solution_chars: float
    log_answer: float
    """log10(1 + |answer|)."""


def load_gsm8k_train(root: Path) -> list[WorkedProblem]:
    """GSM8K's 7,473 training problems (disjoint from the evaluated test questions)."""
    problems = []
    with (Path(root) / "gsm8k" / "train.jsonl").open(encoding="utf-8") as handle:
        for line in handle:
            record = json.loads(line)
            solution = record["answer"]
            answer = solution.split("####")[-1].strip().replace(",", "")
            try:
                log_answer = math.log10(1 + abs(float(answer)))
            except ValueError:
                log_answer = 0.0
            problems.append(
                WorkedProblem(
                    record["question"],
                    solution.count("<<"),
                    math.log1p(len(solution.split("####")[0])),
                    log_answer,
                )
            )
    return problems
