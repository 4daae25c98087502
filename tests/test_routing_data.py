"""RouteLLM's data as RouteLLM reads it: contaminated prompts dropped, counts and accuracies exact."""

from __future__ import annotations

import numpy as np
import pytest

from hybrid.routing.data import load_gsm8k, load_gsm8k_train, load_mmlu, mmlu_subjects
from tests.conftest import REPO

pytestmark = pytest.mark.unit

ROUTELLM = REPO.parent / "shared" / "data" / "routellm"
needs_data = pytest.mark.skipif(not ROUTELLM.is_dir(), reason=f"RouteLLM data not at {ROUTELLM}")


@needs_data
def test_gsm8k_counts_after_decontamination() -> None:
    bench = load_gsm8k(ROUTELLM)
    assert (bench.original_rows, len(bench)) == (1319, 1307)
    assert round(bench.weak.mean() * 100, 1) == 63.7
    assert round(bench.strong.mean() * 100, 1) == 85.8
    assert bench.weak_responses is not None
    assert len(bench.weak_responses) == 1307
    assert len(load_gsm8k_train(ROUTELLM)) == 7473


@needs_data
def test_mmlu_counts_after_decontamination() -> None:
    bench = load_mmlu(ROUTELLM)
    assert (bench.original_rows, len(bench)) == (14042, 14037)
    assert round(bench.weak.mean() * 100, 1) == 68.1
    assert round(bench.strong.mean() * 100, 1) == 80.6
    assert len(mmlu_subjects(ROUTELLM)) == 57
    assert len(np.unique(bench.groups)) == 57
    assert len(bench.prompts) - len(set(bench.prompts)) == 105  # duplicates: folds group by text
    part = bench.subset(np.array([3, 1]))
    assert part.prompts == [bench.prompts[3], bench.prompts[1]]
    assert part.groups is not None
