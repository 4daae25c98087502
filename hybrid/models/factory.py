"""The model factory: `provider:model` specs in `init_chat_model` style, resolved in one place.

Providers: `ollama:<tag>`, `openai:<name>` (any OpenAI-compatible server via
`HYBRID_OPENAI_BASE_URL`) and `llamacpp:<packaged name or .gguf path>`, ours, in-process.
Tests register fake providers through `register_provider`, the same path real ones take.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, ClassVar
from urllib.parse import urlparse

from langchain_core.language_models import BaseChatModel

from hybrid.errors import UnknownModel
from hybrid.settings import Settings, is_loopback_url

Builder = Callable[[str, Settings], BaseChatModel]
LocalityCheck = Callable[[str, Settings], bool]


@dataclass(frozen=True)
class ModelSpec:
    """A parsed `provider:model` string. Only the first colon separates (Ollama tags have one)."""

    provider: str
    name: str

    @classmethod
    def parse(cls, spec: str) -> ModelSpec:
        """Split a spec, with a clear error for anything malformed."""
        provider, sep, name = spec.strip().partition(":")
        if not sep or not provider or not name:
            raise UnknownModel(f"model spec {spec!r} is not of the form provider:model")
        return cls(provider.lower(), name)

    def __str__(self) -> str:
        return f"{self.provider}:{self.name}"


@dataclass(frozen=True)
class Provider:
    """How to build a chat model for one provider, and whether its models run on our premises."""

    build: Builder
    is_local: LocalityCheck


def _build_llamacpp(name: str, settings: Settings) -> BaseChatModel:
    from hybrid.models.llamacpp import PACKAGED_PROMPT_FORMATS, EmbeddedChatModel, resolve_gguf

    return EmbeddedChatModel(
        model_name=name,
        model_path=resolve_gguf(name),
        n_ctx=settings.n_ctx,
        n_threads=settings.n_threads,
        max_tokens=settings.max_answer_tokens,
        temperature=settings.temperature,
        min_token_interval_s=settings.test_min_token_interval_s,
        prompt_format=PACKAGED_PROMPT_FORMATS.get(name, "auto"),
    )


def _build_ollama(name: str, settings: Settings) -> BaseChatModel:
    from langchain.chat_models import init_chat_model

    return init_chat_model(
        f"ollama:{name}",
        base_url=settings.ollama_base_url,
        temperature=settings.temperature,
        num_predict=settings.max_answer_tokens,
        num_ctx=settings.n_ctx,  # never Ollama's silent default: prompts are checked against it
        keep_alive=settings.ollama_keep_alive,
        logprobs=settings.ollama_logprobs,
        client_kwargs={"timeout": settings.model_timeout_s},
    )


# Arguments the OpenAI SDK itself reads (how to send, how to read the answer); every other one,
# `model` included, is only copied into the request body.
_SDK_ARGUMENTS = frozenset(
    {"messages", "stream", "stream_options", "extra_body", "extra_headers", "extra_query", "timeout"}
)


@lru_cache(maxsize=2)
def _chat_openai(compatible: bool) -> type[BaseChatModel]:
    """ChatOpenAI that hands the OpenAI SDK a request ready to send and takes its answer as the
    plain JSON LangChain reads; for an OpenAI-compatible server, it also sends the answer-length
    cap as `max_tokens`.

    The SDK walks every request's parameters against its typed schema before sending them
    (`maybe_transform`): for the plain JSON LangChain builds, a walk that changes nothing yet costs
    a good part of each call's client time, more as a conversation grows (docs/benchmarks.md).
    Parameters in `extra_body` are merged into the body after that walk, so the messages and the
    other body parameters go there and the request carries the same JSON as before
    (tests/test_models.py compares the two). Answers: the SDK builds its typed `ChatCompletion` from
    the JSON, and LangChain turns it straight back into a dict (`model_dump`) to read it; the
    answer's JSON is handed over as that dict instead (`_JsonAnswers`).

    langchain-openai sends `max_completion_tokens`, OpenAI's newer name; llama.cpp's server (and
    other OpenAI-compatible ones) read only `max_tokens`, so the cap was ignored: answers ran on
    to the context window (1,600 tokens and 160 s for a 32-token request, measured in the soak)."""
    from langchain_openai import ChatOpenAI
    from pydantic import model_validator

    class HybridChatOpenAI(ChatOpenAI):
        enforces_call_timeout: ClassVar[bool] = True
        """Takes `timeout=` per call and keeps to it in its HTTP client, which does not retry by
        itself (`hybrid.models.resilience` calls it on the caller's thread)."""

        def _get_request_payload(self, *args: Any, **kwargs: Any) -> dict:
            payload = super()._get_request_payload(*args, **kwargs)
            if compatible and "max_completion_tokens" in payload:
                payload["max_tokens"] = payload.pop("max_completion_tokens")
            # Chat Completions only (the Responses API payload has `input`), and not the parse
            # path of structured output, which reads the messages itself.
            if "messages" in payload and "response_format" not in payload:
                body = {name: payload.pop(name) for name in list(payload) if name not in _SDK_ARGUMENTS}
                extra = payload.get("extra_body") or {}
                payload["extra_body"] = {**body, "messages": payload["messages"], **extra}
                payload["messages"] = []  # still a required argument; replaced in the body
                # Required too, and the walk's dearest step (its type lists every OpenAI model
                # name); left out of the body, which `extra_body` gives it.
                from openai import omit

                payload["model"] = omit
            return payload

        @model_validator(mode="after")
        def validate_environment(self) -> HybridChatOpenAI:
            super().validate_environment()
            if self.client is not None and not isinstance(self.client, _JsonAnswers):
                self.client = _JsonAnswers(self.client)
            return self

    return HybridChatOpenAI


class _JsonAnswers:
    """The SDK's chat completions, whose raw answers parse to the answer's JSON as a dict.

    Everything else (streams, structured output's `parse`) goes to the SDK unchanged."""

    def __init__(self, completions: Any) -> None:
        self._completions = completions
        self.with_raw_response = _RawJsonAnswers(completions.with_raw_response)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._completions, name)


class _RawJsonAnswers:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def create(self, **kwargs: Any) -> Any:
        answer = self._raw.create(**kwargs)
        return answer if kwargs.get("stream") else _JsonAnswer(answer)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._raw, name)


class _JsonAnswer:
    def __init__(self, raw: Any) -> None:
        self._raw = raw

    def parse(self) -> dict:
        return json.loads(self._raw.http_response.content)

    def __getattr__(self, name: str) -> Any:  # headers, http_response: as the SDK's raw answer
        return getattr(self._raw, name)


def _build_openai(name: str, settings: Settings) -> BaseChatModel:
    from hybrid.models.timing import timed_http_client

    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    base_url = settings.openai_url_for(name)
    # OpenAI itself when no base URL (or its own) is given; any other server is "compatible".
    official = base_url is None or (urlparse(base_url).hostname or "").endswith("api.openai.com")
    chat_class = _chat_openai(compatible=not official)
    return chat_class(
        model=name,
        base_url=base_url,
        # OpenAI-compatible local servers accept any key; the client insists on one.
        api_key=key or ("unused" if base_url else None),
        temperature=settings.temperature,
        max_tokens=settings.max_answer_tokens,
        timeout=settings.model_timeout_s,
        # One retry policy, ours: every attempt recorded, within the request's deadline.
        max_retries=0,
        stream_usage=True,
        # Times each exchange at the HTTP boundary: the server's part apart from the client library's.
        http_client=timed_http_client(),
    )


_PROVIDERS: dict[str, Provider] = {
    "llamacpp": Provider(_build_llamacpp, lambda name, s: True),
    # Ollama is self-hosted by definition; where it runs is the operator's choice.
    "ollama": Provider(_build_ollama, lambda name, s: True),
    "openai": Provider(_build_openai, lambda name, s: is_loopback_url(s.openai_url_for(name))),
}
_cache: dict[tuple[str, str, int], BaseChatModel] = {}
_cache_lock = threading.Lock()

# Settings that change how a model is built; a change gives a new model object.
_BUILD_FIELDS = {
    "ollama_base_url",
    "openai_base_url",
    "openai_endpoints",
    "openai_api_key",
    "model_timeout_s",
    "n_ctx",
    "n_threads",
    "max_answer_tokens",
    "temperature",
    "ollama_keep_alive",
    "ollama_logprobs",
    "test_min_token_interval_s",
}


def register_provider(name: str, build: Builder, *, is_local: LocalityCheck | bool = True) -> None:
    """Add or replace a provider; models of it are then built from `name:<model>` specs."""
    check = is_local if callable(is_local) else (lambda _name, _s, v=is_local: v)
    _PROVIDERS[name.lower()] = Provider(build, check)
    clear_model_cache()


def unregister_provider(name: str) -> None:
    """Remove a provider registered with `register_provider`."""
    _PROVIDERS.pop(name.lower(), None)
    clear_model_cache()


def clear_model_cache() -> None:
    """Forget built chat models (weights loaded by llama.cpp stay cached per process)."""
    with _cache_lock:
        _cache.clear()


def known_providers() -> list[str]:
    """The providers model specs may name."""
    return sorted(_PROVIDERS)


def _provider(spec: ModelSpec) -> Provider:
    try:
        return _PROVIDERS[spec.provider]
    except KeyError:
        known = ", ".join(sorted(_PROVIDERS))
        raise UnknownModel(f"unknown model provider {spec.provider!r} in {spec}; known: {known}") from None


def get_chat_model(spec: str, settings: Settings) -> BaseChatModel:
    """The chat model for a spec, built once per process for a given configuration."""
    parsed = ModelSpec.parse(spec)
    provider = _provider(parsed)
    from hybrid.models.replay import active_store, recorded

    key = (str(parsed), settings.model_dump_json(include=_BUILD_FIELDS), id(active_store()))
    with _cache_lock:
        if key not in _cache:
            built = provider.build(parsed.name, settings)
            _cache[key] = recorded(built, str(parsed), model_version(str(parsed)), settings)
        return _cache[key]


def model_version(spec: str) -> str:
    """What is known of a model's version: the package of a packaged GGUF, or the spec itself."""
    parsed = ModelSpec.parse(spec)
    if parsed.provider == "llamacpp":
        from hybrid.models.llamacpp import packaged_version

        return packaged_version(parsed.name) or parsed.name
    return str(parsed)


def is_local_model(spec: str, settings: Settings) -> bool:
    """Whether a model runs on premises we control (sensitive data may only go there)."""
    parsed = ModelSpec.parse(spec)
    return _provider(parsed).is_local(parsed.name, settings)
