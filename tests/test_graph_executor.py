"""LangGraph's background work runs on one long-lived pool (`graphs.executor`), not a new thread
pool per run."""

from __future__ import annotations

import multiprocessing
import threading

import pytest

from graphs import executor
from hybrid import api
from tests.fakes import FakeModels


@pytest.mark.integration
def test_turns_start_no_thread_and_still_save_their_checkpoints(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    fakes.set("small", "The capital of France is Paris.")
    first = api.ask("What is the capital of France?")  # compiles the graph, starts what lasts
    started: list[str] = []
    original = threading.Thread.start

    def counted(thread: threading.Thread) -> None:
        started.append(thread.name)
        original(thread)

    monkeypatch.setattr(threading.Thread, "start", counted)
    later = [api.ask(f"What is the capital of France? ({n})") for n in range(5)]

    assert started == []  # before: one per turn, for saving its checkpoint
    # Each turn's final checkpoint was saved before it returned: read back from the database.
    for answer in [first, *later]:
        saved = api.answer_for(answer.thread_id)
        assert (saved.status, saved.question, saved.answer) == (answer.status, answer.question, answer.answer)


@pytest.mark.unit
def test_a_run_that_caps_its_concurrency_keeps_a_pool_of_its_own() -> None:
    executor.share_background_pool()
    with executor._executor_for_config({}) as shared:
        assert shared is executor.shared_pool()
    with executor._executor_for_config({"max_concurrency": 2}) as own:
        assert own is not executor.shared_pool()
        assert own.submit(lambda: 7).result(timeout=10) == 7
    with pytest.raises(RuntimeError, match="shutdown"):  # and it ends with the run
        own.submit(lambda: 7)


def _submit_in_child(queue: multiprocessing.Queue) -> None:
    queue.put(executor.shared_pool().submit(lambda: "ran").result(timeout=10))


@pytest.mark.unit
def test_a_forked_child_gets_a_pool_that_runs_its_tasks() -> None:
    assert executor.shared_pool().submit(lambda: 1).result(timeout=10) == 1  # the parent's has a thread
    context = multiprocessing.get_context("fork")
    queue = context.Queue()
    child = context.Process(target=_submit_in_child, args=(queue,))
    child.start()
    child.join(30)
    assert child.exitcode == 0
    assert queue.get(timeout=5) == "ran"


@pytest.mark.integration
def test_a_turn_saves_its_checkpoint_on_its_own_thread(
    fakes: FakeModels, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With durability "exit" the save comes as the run ends and is waited for at once: no hand-off."""
    from langgraph.checkpoint.sqlite import SqliteSaver

    fakes.set("small", "The capital of France is Paris.")
    saved_on: list[int] = []
    original = SqliteSaver.put

    def put(self, *args, **kwargs):
        saved_on.append(threading.get_ident())
        return original(self, *args, **kwargs)

    monkeypatch.setattr(SqliteSaver, "put", put)
    answer = api.ask("What is the capital of France?")

    assert saved_on == [threading.get_ident()]
    assert api.answer_for(answer.thread_id).answer == answer.answer


@pytest.mark.unit
def test_saves_run_inline_and_keep_their_errors_while_other_tasks_go_to_the_pool() -> None:
    import contextvars

    class Loop:
        def _checkpointer_put_after_previous(self) -> int:
            return threading.get_ident()

    class Saver:
        def put_writes(self) -> None:
            raise OSError("disk full")

    with executor._executor_for_config({"configurable": {"__pregel_durability": "exit"}}) as pool:
        save = pool.submit(contextvars.copy_context().run, Loop()._checkpointer_put_after_previous)
        assert save.done()  # already: it ran on this thread
        assert save.result() == threading.get_ident()
        failed = pool.submit(contextvars.copy_context().run, Saver().put_writes)
        assert isinstance(failed.exception(), OSError)  # LangGraph re-raises it as the run ends
        other = pool.submit(contextvars.copy_context().run, threading.get_ident)
        assert other.result(timeout=10) != threading.get_ident()
    with executor._executor_for_config({"configurable": {"__pregel_durability": "async"}}) as pool:
        assert pool is executor.shared_pool()  # saves overlap the next step there
