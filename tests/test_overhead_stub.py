"""The instant upstream of `hybrid eval overhead`, through the clients our model factory uses:
LangChain's ChatOpenAI (what `openai:` specs become) and the OpenAI client itself."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from hybrid.evals.stub import DEFAULT_ANSWER, TOKEN_LOGPROB, Stub

pytestmark = pytest.mark.unit


def _client(stub: Stub) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=stub.app), base_url="http://stub")


def test_chat_openai_reads_answer_usage_and_logprobs_with_and_without_streaming() -> None:
    from langchain_openai import ChatOpenAI

    stub = Stub()

    async def run() -> tuple:
        async with _client(stub) as http:
            model = ChatOpenAI(
                model="tiny",
                base_url="http://stub/v1",
                api_key="unused",
                http_async_client=http,
                stream_usage=True,
                logprobs=True,
            )
            whole = await model.ainvoke("What is the capital of France?")
            chunks = [chunk async for chunk in model.astream("What is the capital of Italy?")]
        return whole, chunks

    whole, chunks = asyncio.run(run())

    assert whole.content == DEFAULT_ANSWER
    assert whole.usage_metadata["output_tokens"] == len(DEFAULT_ANSWER.split())
    assert whole.usage_metadata["input_tokens"] > 0
    tokens = whole.response_metadata["logprobs"]["content"]
    assert "".join(t["token"] for t in tokens) == DEFAULT_ANSWER
    assert {t["logprob"] for t in tokens} == {TOKEN_LOGPROB}

    streamed = chunks[0]
    for chunk in chunks[1:]:
        streamed += chunk
    assert streamed.content == DEFAULT_ANSWER
    assert streamed.usage_metadata["output_tokens"] == len(DEFAULT_ANSWER.split())  # the final usage chunk
    assert "".join(t["token"] for t in streamed.response_metadata["logprobs"]["content"]) == DEFAULT_ANSWER
    assert stub.served == 2


def test_openai_client_sees_top_logprobs_models_and_no_logprobs_unless_asked() -> None:
    from openai import AsyncOpenAI

    stub = Stub(answer="Rome.")

    async def run() -> tuple:
        async with _client(stub) as http:
            client = AsyncOpenAI(base_url="http://stub/v1", api_key="unused", http_client=http)
            plain = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Capital of Italy?"}]
            )
            ranked = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Capital?"}], logprobs=True, top_logprobs=3
            )
            stream = await client.chat.completions.create(
                model="m", messages=[{"role": "user", "content": "Capital?"}], stream=True
            )
            chunks = [chunk async for chunk in stream]
            models = await client.models.list()
            health = (await http.get("/health")).json()
        return plain, ranked, chunks, models, health

    plain, ranked, chunks, models, health = asyncio.run(run())

    assert plain.choices[0].message.content == "Rome."
    assert plain.choices[0].logprobs is None
    assert plain.usage.total_tokens == plain.usage.prompt_tokens + plain.usage.completion_tokens
    (token,) = ranked.choices[0].logprobs.content
    assert token.top_logprobs[0].token == "Rome."
    assert len(token.top_logprobs) == 3
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "Rome."
    assert all(c.usage is None for c in chunks)  # usage only when stream_options asks for it
    assert [m.id for m in models.data] == ["m"]
    assert health == {"status": "ok", "completions": 3}


def test_a_request_without_messages_is_refused_and_not_counted() -> None:
    stub = Stub()

    async def run() -> httpx.Response:
        async with _client(stub) as http:
            return await http.post("/v1/chat/completions", json={"model": "m"})

    assert asyncio.run(run()).status_code == 400
    assert stub.served == 0
