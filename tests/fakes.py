"""Deterministic chat models for unit tests, registered through the production model factory."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import Field

from graphs.state import Draft

Reply = Callable[[list[BaseMessage]], str]


class FakeChatModel(BaseChatModel):
    """Answers with `reply(messages)`; raises if the reply is an exception. Records every prompt."""

    name_: str
    reply: Any
    calls: list[list[BaseMessage]] = Field(default_factory=list)

    @property
    def _llm_type(self) -> str:
        return "fake"

    def _text(self, messages: list[BaseMessage]) -> str:
        self.calls.append(list(messages))
        result = self.reply(messages) if callable(self.reply) else self.reply
        if isinstance(result, BaseException):
            raise result
        return str(result)

    def _usage(self, messages: list[BaseMessage], text: str) -> dict[str, int]:
        prompt = sum(len(m.text.split()) for m in messages)
        return {
            "input_tokens": prompt,
            "output_tokens": len(text.split()),
            "total_tokens": prompt + len(text.split()),
        }

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        text = self._text(messages)
        message = AIMessage(
            text, usage_metadata=self._usage(messages, text), response_metadata={"finish_reason": "stop"}
        )
        return ChatResult(generations=[ChatGeneration(message=message)])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        text = self._text(messages)
        for i, word in enumerate(text.split(" ")):
            piece = word if i == 0 else f" {word}"
            chunk = ChatGenerationChunk(message=AIMessageChunk(content=piece))
            if run_manager:
                run_manager.on_llm_new_token(piece, chunk=chunk)
            yield chunk
        yield ChatGenerationChunk(
            message=AIMessageChunk(
                content="",
                usage_metadata=self._usage(messages, text),
                response_metadata={"finish_reason": "stop"},
                chunk_position="last",
            )
        )


class FakeModels:
    """Behaviours of `fake:<name>` models, set per test: `fakes.set("small", "Paris.")`."""

    def __init__(self) -> None:
        self.replies: dict[str, Any] = {}
        self.models: dict[str, FakeChatModel] = {}

    def set(self, name: str, reply: Any) -> None:
        """Make `fake:<name>` answer `reply` (a string, an exception, or a function of the messages)."""
        self.replies[name] = reply
        if name in self.models:
            self.models[name].reply = reply

    def build(self, name: str, settings: Any) -> FakeChatModel:
        if name not in self.replies:
            raise KeyError(f"no fake behaviour set for fake:{name}")
        model = FakeChatModel(name_=name, reply=self.replies[name], calls=[])
        self.models[name] = model
        return model

    def calls(self, name: str) -> list[list[BaseMessage]]:
        """Prompts `fake:<name>` received."""
        return self.models[name].calls if name in self.models else []


def small_draft(
    text: str,
    *,
    model: str = "fake:small",
    error: str | None = None,
    finish: str | None = "stop",
    meta: dict[str, Any] | None = None,
) -> Draft:
    """A small-tier draft that cost nothing and took no time: what the verifier's tests judge."""
    return Draft(
        tier="small",
        model=model,
        text=text,
        error=error,
        finish_reason=finish,
        usage={"input_tokens": 0, "output_tokens": 0},
        cost=0.0,
        latency_ms=0.0,
        model_meta=meta if meta is not None else {},
    )
