"""What LangGraph itself costs per run: a four-node graph of instant nodes (classify, answer, verify,
accept; two branches), run to the end with a SQLite checkpointer as `hybrid.database` sets one up
and `durability="exit"`, as `api.ask` runs its graph. Variants, timed alternately:

- `sync`: `invoke`, as shipped;
- `command`: the branching nodes return `Command(goto=...)` instead of conditional edges;
- `in-place write`: LangGraph's per-run thread pool replaced by an executor that runs each task
  where it is submitted (a private function patched, for this measurement only);
- `async`: `ainvoke` on an event loop kept for the purpose, async nodes, the same saver behind
  async methods;
- `no checkpointer`: the graph's own bookkeeping alone.

    python scripts/langgraph_run_cost.py [--runs 300] [--rounds 5]

Prints milliseconds per run for each variant and round (docs/benchmarks.md quotes it).
"""

from __future__ import annotations

import argparse
import asyncio
import concurrent.futures
import contextlib
import json
import sqlite3
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NotRequired, TypedDict

from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph import END, START, StateGraph
from langgraph.types import Command


class State(TypedDict):
    question: str
    answer: NotRequired[str]
    step: NotRequired[int]
    route: NotRequired[dict[str, Any]]


ROUTE = {"route": "small", "reasons": ["a reason"] * 10}
UPDATES = {  # each node's update, in the graph's order
    "classify": {"step": 1, "route": ROUTE},
    "answer": {"answer": "Paris"},
    "verify": {"step": 2},
    "accept": {"step": 3},
}
BRANCHES = {"classify": "answer", "verify": "accept"}  # the node after each branching one


def _node(name: str, kind: str) -> Callable[[State], Any]:
    update, goto = UPDATES[name], BRANCHES.get(name)
    if kind == "async":

        async def node(_state: State) -> dict:
            return update

        return node
    if kind == "command" and goto:
        return lambda _state: Command(update=update, goto=goto)
    return lambda _state: update


def _graph(kind: str) -> StateGraph:
    builder = StateGraph(State)
    for name in UPDATES:
        goto = BRANCHES.get(name)
        destinations = (goto,) if kind == "command" and goto else ()
        builder.add_node(name, _node(name, kind), destinations=destinations)
    builder.add_edge(START, "classify")
    builder.add_edge("answer", "verify")
    builder.add_edge("accept", END)
    if kind != "command":
        for name, goto in BRANCHES.items():
            builder.add_conditional_edges(name, lambda _state, goto=goto: goto, [goto])
    return builder


class _AsyncSqliteSaver(SqliteSaver):
    """The sync saver behind async methods, for the async variant (on its own loop, blocking is fine)."""

    async def aget_tuple(self, config: Any) -> Any:
        return self.get_tuple(config)

    async def aput(self, config: Any, checkpoint: Any, metadata: Any, new_versions: Any) -> Any:
        return self.put(config, checkpoint, metadata, new_versions)

    async def aput_writes(self, config: Any, writes: Any, task_id: str, task_path: str = "") -> None:
        self.put_writes(config, writes, task_id, task_path)


class _InPlace(concurrent.futures.Executor):
    def submit(self, fn: Callable, /, *args: Any, **kwargs: Any) -> concurrent.futures.Future:
        future: concurrent.futures.Future = concurrent.futures.Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as exc:  # handed to the caller through the future, as a pool would
            future.set_exception(exc)
        return future


@contextlib.contextmanager
def _writes_in_place() -> Iterator[None]:
    from langgraph.pregel import _executor

    original = _executor.get_executor_for_config

    @contextlib.contextmanager
    def in_place(_config: Any) -> Iterator[concurrent.futures.Executor]:
        yield _InPlace()

    _executor.get_executor_for_config = in_place
    try:
        yield
    finally:
        _executor.get_executor_for_config = original


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="langgraph-run-cost-") as folder:
        connection = sqlite3.connect(str(Path(folder) / "checkpoints.db"), check_same_thread=False)
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        saver = _AsyncSqliteSaver(connection)
        saver.setup()
        graphs = {kind: _graph(kind).compile(checkpointer=saver) for kind in ("sync", "command", "async")}
        bare = _graph("sync").compile()
        loop = asyncio.new_event_loop()

        def config() -> dict:
            return {"configurable": {"thread_id": uuid.uuid4().hex}}

        def sync_run(kind: str = "sync") -> None:
            graphs[kind].invoke({"question": "q"}, config(), durability="exit")

        def in_place_run() -> None:
            with _writes_in_place():
                sync_run()

        def async_run() -> None:
            loop.run_until_complete(graphs["async"].ainvoke({"question": "q"}, config(), durability="exit"))

        variants: dict[str, Callable[[], None]] = {
            "sync": sync_run,
            "command": lambda: sync_run("command"),
            "in-place write": in_place_run,
            "async": async_run,
            "no checkpointer": lambda: bare.invoke({"question": "q"}),
        }
        for run in variants.values():
            for _ in range(50):
                run()
        results: dict[str, list[float]] = {name: [] for name in variants}
        for _ in range(args.rounds):
            for name, run in variants.items():
                started = time.perf_counter()
                for _ in range(args.runs):
                    run()
                results[name].append(round((time.perf_counter() - started) / args.runs * 1000, 3))
        loop.close()
        connection.close()
    print(json.dumps({"ms_per_run": results}, indent=1))


if __name__ == "__main__":
    main()
