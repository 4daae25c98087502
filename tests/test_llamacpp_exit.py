"""Embedded models at the end of a process: freed before the interpreter tears its modules down,
and not kept alive by the hook that does it. Each case runs in a process of its own (freeing a model
here would pull it from under the other tests)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parent.parent


def _run(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        env=dict(os.environ, PYTHONPATH=str(REPO)),
        capture_output=True,
        text=True,
        check=False,
        cwd=REPO,
        timeout=300,
    )


def test_a_model_still_loaded_at_exit_is_freed_by_the_exit_hook_and_the_process_ends_quietly() -> None:
    result = _run(
        """
        import weakref
        from hybrid.models import llamacpp

        loaded = llamacpp.load_model(llamacpp.resolve_gguf("gemma-3-270m"), 256, 1)
        assert loaded.llm._model.model is not None
        llamacpp._free_at_exit(weakref.ref(loaded))
        print("freed" if loaded.llm._model.model is None else "still loaded")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "freed"
    assert "Exception ignored" not in result.stderr
    assert "Traceback" not in result.stderr


def test_a_model_nothing_uses_any_more_is_not_kept_for_the_exit_hook() -> None:
    result = _run(
        """
        import gc
        import weakref
        from hybrid.models import llamacpp

        model = weakref.ref(llamacpp.load_model(llamacpp.resolve_gguf("gemma-3-270m"), 256, 1))
        llamacpp.load_model.cache_clear()
        gc.collect()
        print("kept" if model() is not None else "freed")
        """
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip() == "freed"
