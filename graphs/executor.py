"""One long-lived thread pool for the background work of synchronous LangGraph runs.

LangGraph's synchronous loop enters a `BackgroundExecutor` per run, and that takes its pool from
langchain-core's `get_executor_for_config`: a new `ThreadPoolExecutor`, shut down when the run
ends. A turn of ours submits one task to it (saving the final checkpoint, `durability="exit"`), so
every turn started a thread, handed it the save, waited for it and joined it: a thread's start and
end, and two hand-overs of the GIL, per request (measured: docs/benchmarks.md).

`share_background_pool()` points LangGraph at a pool that outlives the run. Nothing else changes:
`BackgroundExecutor` still waits for every task it submitted before the run returns, cancels the
ones marked cancel-on-exit, and re-raises their errors; tasks still run with the submitter's
context. The pool grows a thread only when none is idle, up to a bound far above the per-run
pool's (a run whose tasks wait on each other cannot starve it). A run configured with
`max_concurrency` keeps a pool of its own, so that cap still holds. A forked child gets a new pool
(the parent's threads do not exist there).

A run whose durability is "exit" saves its checkpoint (and, when interrupted, its pending writes)
only as it ends, and waits for the save at once: handing it to a pool thread and waiting only
moved it between threads (measured: docs/benchmarks.md). Such runs get `_SavesInline`, which runs
the checkpointer's saves on the run's own thread and sends everything else (a step's parallel
tasks, cache writes) to the pool.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Iterator
from concurrent.futures import Executor, Future
from contextvars import Context
from typing import Any

_MAX_THREADS = 64
_lock = threading.Lock()
# "pool": (the process id it was made in, the pool); "per_run": LangGraph's own
# `get_executor_for_config`, kept for runs that cap their concurrency.
_state: dict[str, Any] = {"pool": None, "per_run": None}


def shared_pool() -> Executor:
    """The process's pool (a new one after a fork)."""
    from langchain_core.runnables.config import ContextThreadPoolExecutor

    with _lock:
        made = _state["pool"]
        if made is None or made[0] != os.getpid():
            made = _state["pool"] = (os.getpid(), ContextThreadPoolExecutor(_MAX_THREADS, "langgraph-bg"))
        return made[1]


# LangGraph's sync loop submits checkpoint saves as these (a loop method, the saver's method).
_SAVES = frozenset({"_checkpointer_put_after_previous", "put_writes"})


class _SavesInline(Executor):
    """The shared pool, except that checkpoint saves run on the submitting thread."""

    def __init__(self, pool: Executor) -> None:
        self._pool = pool

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future:
        # `BackgroundExecutor` submits `Context.run` of the task, so the task runs in its context.
        task = args[0] if isinstance(getattr(fn, "__self__", None), Context) and args else fn
        if getattr(task, "__name__", None) not in _SAVES:
            return self._pool.submit(fn, *args, **kwargs)
        future: Future = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # re-raised by LangGraph as the run ends, as a pool's would be
            future.set_exception(exc)
        return future


def _durability(config: Any) -> str | None:
    from langgraph._internal._constants import CONFIG_KEY_DURABILITY

    return ((config or {}).get("configurable") or {}).get(CONFIG_KEY_DURABILITY)


@contextlib.contextmanager
def _executor_for_config(config: Any) -> Iterator[Executor]:
    if (config or {}).get("max_concurrency") is not None:
        with _state["per_run"](config) as executor:
            yield executor
    elif _durability(config) == "exit":
        yield _SavesInline(shared_pool())
    else:
        yield shared_pool()  # not shut down: the next run takes the same threads


def share_background_pool() -> None:
    """Have LangGraph's synchronous runs use `shared_pool` (idempotent)."""
    from langgraph.pregel import _executor

    with _lock:
        if _executor.get_executor_for_config is not _executor_for_config:
            _state["per_run"] = _executor.get_executor_for_config
            _executor.get_executor_for_config = _executor_for_config
