"""Model answers recorded on disk by (model, prompt) and replayed, so that re-scoring, re-training
and re-calibrating on the same questions never runs a model twice.

`recording(path)` makes the model factory wrap every chat model it builds in a
`RecordedChatModel` over one SQLite file (LangChain's `SQLiteCache` as the store). The key is the
model spec and its version, the generation settings that change an answer (answer length,
temperature, context window) and the exact messages. A replayed answer carries the time its
generation took when it was recorded (`generation_ms`), so a benchmark can report latency
honestly; `replayed` says it came from the record.
"""

from __future__ import annotations

import contextlib
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatResult
from pydantic import ConfigDict

_lock = threading.Lock()
_active: dict[str, Any] = {"store": None, "path": None}


def _store_at(path: Path) -> Any:
    from langchain_community.cache import SQLiteCache

    path.parent.mkdir(parents=True, exist_ok=True)
    return SQLiteCache(database_path=str(path))


@contextlib.contextmanager
def recording(path: Path) -> Iterator[Path]:
    """Within the block, every model the factory builds records and replays its answers at `path`.

    (The factory keys the models it keeps by the active store, so models built outside the block
    are not reused inside it, nor the other way round.)"""
    with _lock:
        previous = dict(_active)
        _active.update(store=_store_at(Path(path)), path=Path(path))
    try:
        yield Path(path)
    finally:
        with _lock:
            _active.update(previous)


def active_store() -> Any:
    """The store models record to, or None outside `recording`."""
    return _active["store"]


class RecordedChatModel(BaseChatModel):
    """A chat model whose answers are recorded by (model, prompt) and replayed when asked again."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    inner: BaseChatModel
    spec: str
    key: str
    """Everything but the prompt that decides an answer: model, version, generation settings."""
    store: Any

    @property
    def _llm_type(self) -> str:
        return f"recorded-{self.inner._llm_type}"

    @staticmethod
    def prompt_key(messages: list[BaseMessage], stop: list[str] | None) -> str:
        return json.dumps([[m.type, m.text] for m in messages] + [stop or []], ensure_ascii=False)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        prompt = self.prompt_key(messages, stop)
        recorded = self.store.lookup(prompt, self.key)
        if recorded:
            message = recorded[0].message
            meta = {**message.response_metadata, "replayed": True}
            replay = AIMessage(
                content=message.content, response_metadata=meta, usage_metadata=message.usage_metadata
            )
            return ChatResult(generations=[ChatGeneration(message=replay)])
        started = time.perf_counter()
        result = self.inner._generate(messages, stop=stop, run_manager=run_manager, **kwargs)
        elapsed_ms = round((time.perf_counter() - started) * 1000, 2)
        message = result.generations[0].message
        meta = {**message.response_metadata, "generation_ms": elapsed_ms}
        fresh = AIMessage(
            content=message.content, response_metadata=meta, usage_metadata=message.usage_metadata
        )
        generations = [ChatGeneration(message=fresh)]
        self.store.update(prompt, self.key, generations)
        return ChatResult(generations=generations)


def recorded(model: BaseChatModel, spec: str, version: str, settings: Any) -> BaseChatModel:
    """`model` recording to the active store (the model itself outside `recording`)."""
    store = active_store()
    if store is None:
        return model
    # A model told how to be prompted answers differently from one that follows its file ("auto").
    prompt_format = getattr(model, "prompt_format", "auto")
    key = json.dumps(
        {
            "spec": spec,
            **({"prompt_format": prompt_format} if prompt_format != "auto" else {}),
            "version": version,
            "max_answer_tokens": settings.max_answer_tokens,
            "temperature": settings.temperature,
            "n_ctx": settings.n_ctx,
        },
        sort_keys=True,
    )
    return RecordedChatModel(inner=model, spec=spec, key=key, store=store)
