"""The model factory: spec parsing, providers, caching, and the embedded provider's prompt rendering."""

from __future__ import annotations

import json
import math

import pytest
from langchain_core.messages import AIMessage, HumanMessage, SystemMessage

from hybrid.errors import UnknownModel
from hybrid.models import ModelSpec, get_chat_model, is_local_model
from hybrid.models.llamacpp import render_transcript, resolve_gguf
from hybrid.settings import resolve_settings
from tests.fakes import FakeModels

pytestmark = pytest.mark.unit


def test_specs_split_on_the_first_colon_only() -> None:
    assert ModelSpec.parse("ollama:llama3.1:8b") == ModelSpec("ollama", "llama3.1:8b")
    assert str(ModelSpec.parse(" OpenAI:gpt-4o ")) == "openai:gpt-4o"
    for bad in ("gpt-4o", ":x", "ollama:"):
        with pytest.raises(UnknownModel, match="provider:model"):
            ModelSpec.parse(bad)


def test_unknown_providers_and_packaged_models_are_named() -> None:
    settings = resolve_settings()
    with pytest.raises(UnknownModel, match=r"unknown model provider 'anthropic'.*llamacpp, ollama, openai"):
        get_chat_model("anthropic:claude", settings)
    with pytest.raises(UnknownModel, match="neither a packaged model"):
        resolve_gguf("no-such-model")


def test_models_are_built_once_per_configuration(fakes: FakeModels) -> None:
    fakes.set("small", "hi")
    settings = resolve_settings()
    first = get_chat_model("fake:small", settings)
    assert get_chat_model("fake:small", settings) is first
    assert get_chat_model("fake:small", resolve_settings(max_answer_tokens=7)) is not first


def test_remote_openai_endpoints_are_not_local(monkeypatch: pytest.MonkeyPatch) -> None:
    assert is_local_model("llamacpp:smollm2-135m-instruct", resolve_settings())
    assert is_local_model("ollama:qwen2.5:0.5b", resolve_settings())
    assert not is_local_model("openai:gpt-4o", resolve_settings())
    monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    assert is_local_model("openai:served", resolve_settings())


def test_provider_builders_configure_langchain_models(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_OLLAMA_BASE_URL", "http://10.0.0.5:11434")
    monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", "http://127.0.0.1:8080/v1")
    settings = resolve_settings(max_answer_tokens=64)
    ollama = get_chat_model("ollama:qwen2.5:0.5b", settings)
    assert (ollama.model, ollama.base_url, ollama.num_predict) == (
        "qwen2.5:0.5b",
        "http://10.0.0.5:11434",
        64,
    )
    openai = get_chat_model("openai:served", settings)
    assert (openai.model_name, openai.openai_api_base, openai.max_tokens) == (
        "served",
        "http://127.0.0.1:8080/v1",
        64,
    )


def test_base_models_get_a_few_shot_transcript() -> None:
    prompt = render_transcript(
        [
            SystemMessage("Answer briefly."),
            HumanMessage("What is the capital of France?"),
            AIMessage("Paris."),
            HumanMessage("And of Germany?"),
        ]
    )
    assert prompt.startswith("Answer briefly.\n\nQ: What is the capital of Italy?\nA: Rome.")
    assert prompt.endswith("Q: What is the capital of France?\nA: Paris.\n\nQ: And of Germany?\nA:")
    with pytest.raises(ValueError, match="end with a question"):
        render_transcript([HumanMessage("Hi"), AIMessage("Hello")])


def test_openai_models_on_servers_of_their_own(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HYBRID_OPENAI_BASE_URL", "https://api.example.com/v1")
    monkeypatch.setenv("HYBRID_OPENAI_ENDPOINTS", '{"smollm2": "http://127.0.0.1:8101/v1"}')
    settings = resolve_settings()

    assert get_chat_model("openai:smollm2", settings).openai_api_base == "http://127.0.0.1:8101/v1"
    assert get_chat_model("openai:gpt-4o", settings).openai_api_base == "https://api.example.com/v1"
    assert is_local_model("openai:smollm2", settings)  # its own server is on this machine
    assert not is_local_model("openai:gpt-4o", settings)


def test_a_served_base_model_is_prompted_with_the_same_transcript_as_in_process() -> None:
    from hybrid.models.llamacpp import COMPLETION_STOPS
    from hybrid.models.openai_server import format_transcript

    messages = [
        {"role": "system", "content": "Answer briefly."},
        {"role": "user", "content": [{"type": "text", "text": "What is the capital of France?"}]},
        {"role": "assistant", "content": "Paris."},
        {"role": "user", "content": "And of Germany?"},
    ]
    formatted = format_transcript(messages)

    expected = render_transcript(
        [
            SystemMessage("Answer briefly."),
            HumanMessage("What is the capital of France?"),
            AIMessage("Paris."),
            HumanMessage("And of Germany?"),
        ]
    )
    assert (formatted.prompt, formatted.stop) == (expected, COMPLETION_STOPS)


def test_openai_compatible_servers_get_the_answer_cap_as_max_tokens(monkeypatch: pytest.MonkeyPatch) -> None:
    """llama.cpp's server reads `max_tokens` only: sent as `max_completion_tokens` (OpenAI's newer
    name), the cap was ignored and answers ran to the context window."""
    monkeypatch.setenv("HYBRID_OPENAI_ENDPOINTS", '{"smollm2": "http://127.0.0.1:8101/v1"}')
    monkeypatch.setenv("HYBRID_OPENAI_API_KEY", "sk-not-used")  # sent to a mock transport only
    settings = resolve_settings(max_answer_tokens=32)

    names = {
        "openai:smollm2": ("max_tokens", "max_completion_tokens"),
        "openai:gpt-4o": ("max_completion_tokens", "max_tokens"),
    }
    for spec, (cap, other) in names.items():
        for body in _bodies_sent(get_chat_model(spec, settings), [HumanMessage("Hi")]):  # plain, streamed
            sent = json.loads(body)
            assert (sent.get(cap), other in sent) == (32, False), spec


def _bodies_sent(model: object, messages: list, **kwargs: object) -> list[bytes]:
    """The request bodies a chat model sends, plain and streamed, caught at its HTTP transport."""
    import httpx2
    import openai

    bodies: list[bytes] = []

    def answer(request: httpx2.Request) -> httpx2.Response:
        bodies.append(request.content)
        head = {"id": "c", "created": 0, "model": "m"}
        if json.loads(request.content).get("stream"):
            choice = {"index": 0, "delta": {"content": "ok"}, "finish_reason": "stop"}
            chunk = json.dumps({**head, "object": "chat.completion.chunk", "choices": [choice]})
            events = f"data: {chunk}\n\ndata: [DONE]\n\n"
            return httpx2.Response(200, text=events, headers={"content-type": "text/event-stream"})
        choice = {"index": 0, "message": {"role": "assistant", "content": "ok"}, "finish_reason": "stop"}
        return httpx2.Response(200, json={**head, "object": "chat.completion", "choices": [choice]})

    client = openai.DefaultHttpxClient(transport=httpx2.MockTransport(answer))
    bound = model.model_copy(update={"http_client": client, "client": None, "root_client": None})  # type: ignore[attr-defined]
    bound.validate_environment()  # type: ignore[attr-defined] # rebuilds the SDK client on the mock
    assert bound.invoke(messages, **kwargs).content == "ok"
    assert "".join(chunk.text for chunk in bound.stream(messages, **kwargs)) == "ok"
    return bodies


@pytest.mark.parametrize("base_url", [None, "http://127.0.0.1:8101/v1"], ids=["official", "compatible"])
def test_parameters_handed_past_the_sdks_request_walk_go_out_as_the_same_json(
    monkeypatch: pytest.MonkeyPatch, base_url: str | None
) -> None:
    """The factory's ChatOpenAI puts its messages and other body parameters in `extra_body`, past
    the SDK's (no-op, costly) walk of the parameters: the JSON on the wire is that of ChatOpenAI
    as it comes, plain and streamed."""
    from langchain_openai import ChatOpenAI

    monkeypatch.setenv("HYBRID_OPENAI_API_KEY", "sk-not-used")
    if base_url:
        monkeypatch.setenv("HYBRID_OPENAI_ENDPOINTS", json.dumps({"m": base_url}))
    ours = get_chat_model("openai:m", resolve_settings(max_answer_tokens=32))
    same = ("model_name", "openai_api_base", "temperature", "max_tokens", "stream_usage")
    plain = ChatOpenAI(**{name: getattr(ours, name) for name in same}, api_key="sk-not-used")
    messages = [
        SystemMessage("Answer from the sources.\n[1] The Danube flows through Budapest."),
        HumanMessage('Which river flows through Budapest? Ünïcode, "quotes" and \\ too.'),
        AIMessage("The Danube."),
        HumanMessage(content=[{"type": "text", "text": "And the longest river in Europe?"}]),
    ]

    sent = _bodies_sent(ours, messages, stop=["\n\n"])
    expected = _bodies_sent(plain, messages, stop=["\n\n"])

    if base_url:  # the compatible server's cap is renamed, as before; nothing else differs
        expected = [body.replace(b'"max_completion_tokens"', b'"max_tokens"') for body in expected]
    assert [json.loads(body) for body in sent] == [json.loads(body) for body in expected]
    assert b"Danube flows through Budapest" in sent[0]


def _without_nones(value: object) -> object:
    if isinstance(value, dict):
        return {k: _without_nones(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_without_nones(v) for v in value]
    return value


def test_an_answer_read_from_its_json_is_the_message_the_sdks_typed_answer_gave(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The factory's ChatOpenAI hands LangChain the answer's JSON, not the SDK's typed answer that
    LangChain turned back into the same dict: the message, its usage, log-probabilities and
    metadata are the same (fields the server did not send are absent rather than None)."""
    import httpx2
    import openai
    from langchain_openai import ChatOpenAI

    from hybrid.models.factory import _JsonAnswers

    monkeypatch.setenv("HYBRID_OPENAI_API_KEY", "sk-not-used")
    token = {"token": "Paris", "logprob": -0.25, "bytes": [80, 97, 114, 105, 115], "top_logprobs": []}
    answer = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1,
        "model": "m-2026",
        "system_fingerprint": "fp_1",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": "Paris."},
                "logprobs": {"content": [token]},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": 12,
            "completion_tokens": 2,
            "total_tokens": 14,
            "prompt_tokens_details": {"cached_tokens": 4},
            "completion_tokens_details": {"reasoning_tokens": 0},
        },
    }
    transport = httpx2.MockTransport(lambda request: httpx2.Response(200, json=answer))
    ours = get_chat_model("openai:m", resolve_settings(max_answer_tokens=32))
    same = ("model_name", "openai_api_base", "temperature", "max_tokens", "stream_usage")
    plain = ChatOpenAI(**{name: getattr(ours, name) for name in same}, api_key="sk-not-used")
    messages = []
    for model in (ours, plain):
        client = openai.DefaultHttpxClient(transport=transport)
        bound = model.model_copy(update={"http_client": client, "client": None, "root_client": None})
        bound.validate_environment()  # type: ignore[attr-defined]
        assert isinstance(bound.client, _JsonAnswers) == (model is ours)
        messages.append(bound.invoke([HumanMessage("Capital of France?")], logprobs=True))
    read, typed = messages
    assert read.content == typed.content == "Paris."
    assert read.usage_metadata == typed.usage_metadata
    assert read.response_metadata["logprobs"]["content"] == typed.response_metadata["logprobs"]["content"]
    assert _without_nones(read.response_metadata) == _without_nones(typed.response_metadata)
    assert _without_nones(read.additional_kwargs) == _without_nones(typed.additional_kwargs)


def test_ollama_is_asked_for_token_logprobs_and_the_verifier_gets_them(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Ollama's HTTP API mocked at the transport: the request asks for log-probabilities, and
    ChatOllama's streamed chunks, aggregated, become the verifier's confidence signals."""
    import httpx
    import ollama

    from hybrid.answering import reply_signals

    asked: list[dict] = []
    pieces = [("Par", -0.1), ("is", -0.3), (".", -2.0)]

    def answer(request: httpx.Request) -> httpx.Response:
        asked.append(json.loads(request.content))
        lines = [
            {"model": "qwen", "created_at": "2026-12-06T00:00:00Z", "done": False,
             "message": {"role": "assistant", "content": text},
             "logprobs": [{"token": text, "logprob": logprob, "bytes": list(text.encode())}]}
            for text, logprob in pieces
        ] + [{"model": "qwen", "created_at": "2026-12-06T00:00:00Z", "done": True, "done_reason": "stop",
              "message": {"role": "assistant", "content": ""}}]  # fmt: skip
        return httpx.Response(200, text="\n".join(json.dumps(line) for line in lines))

    model = get_chat_model("ollama:qwen", resolve_settings())
    model._client = ollama.Client(transport=httpx.MockTransport(answer))  # type: ignore[attr-defined]

    text, finish, meta = reply_signals(model.invoke([HumanMessage("Capital of France?")]))

    assert asked[0]["logprobs"] is True
    assert (text, finish) == ("Paris.", "stop")
    assert meta["mean_token_logprob"] == pytest.approx(-0.8)
    assert meta["min_token_prob"] == pytest.approx(math.exp(-2.0))

    monkeypatch.setenv("HYBRID_OLLAMA_LOGPROBS", "false")
    model = get_chat_model("ollama:qwen", resolve_settings())
    model._client = ollama.Client(transport=httpx.MockTransport(answer))  # type: ignore[attr-defined]
    model.invoke([HumanMessage("Capital of France?")])
    assert not asked[-1].get("logprobs")


def test_openai_shaped_logprobs_count_too_and_a_models_own_win() -> None:
    from hybrid.answering import reply_signals

    openai_shaped = AIMessage(
        "Paris.",
        response_metadata={"finish_reason": "stop", "logprobs": {"content": [
            {"token": "Paris", "logprob": -0.5, "top_logprobs": []},
            {"token": ".", "logprob": -1.5, "top_logprobs": []},
        ]}},
    )  # fmt: skip
    _, _, meta = reply_signals(openai_shaped)
    assert (meta["mean_token_logprob"], meta["min_token_prob"]) == (-1.0, pytest.approx(math.exp(-1.5)))

    embedded = AIMessage(
        "Paris.",
        response_metadata={"mean_token_logprob": -0.2, "min_token_prob": 0.5, "logprobs": {"content": []}},
    )
    assert reply_signals(embedded)[2]["mean_token_logprob"] == -0.2
    assert (
        "mean_token_logprob"
        not in reply_signals(AIMessage("Paris.", response_metadata={"logprobs": None}))[2]
    )
