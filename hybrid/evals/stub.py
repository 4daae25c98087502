"""An instant OpenAI-compatible upstream: the baseline `hybrid eval overhead` measures proxies against.

    python -m hybrid.evals.stub --port N [--host 127.0.0.1] [--answer TEXT]

POST /v1/chat/completions answers at once with the same short answer, non-streaming or as
server-sent events (`stream: true`, with a final usage chunk when `stream_options.include_usage`),
with `usage`, and with token log-probabilities when the request asks `logprobs: true` (our verifier
reads them when a provider gives them). GET /v1/models lists the model asked for last; GET /health
says how many completions it has served, so a benchmark can count the upstream calls a proxy made.

It checks no key and keeps no state beyond that count: whatever time it spends is the floor every
proxy in front of it adds to.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from typing import Any

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

DEFAULT_ANSWER = "Paris is the capital of France."
# A plausible, confident log-probability per token (the verifier reads their mean and minimum).
TOKEN_LOGPROB = -0.05


def _tokens(text: str) -> list[str]:
    """The answer in word-sized tokens, each with its leading space, as a tokenizer would give them."""
    words = text.split(" ")
    return [words[0], *(f" {word}" for word in words[1:])]


def _prompt_tokens(messages: Any) -> int:
    """A rough token count of the prompt (words), enough for `usage` to be plausible."""
    if not isinstance(messages, list):
        return 0
    total = 0
    for message in messages:
        content = message.get("content") if isinstance(message, dict) else None
        if isinstance(content, list):
            content = " ".join(p.get("text", "") for p in content if isinstance(p, dict))
        total += len(str(content or "").split()) + 4  # role and separators
    return total


def _logprob(token: str, top: int) -> dict[str, Any]:
    entry = {"token": token, "logprob": TOKEN_LOGPROB, "bytes": list(token.encode())}
    alternatives = [entry] + [
        {"token": f"{token}{n}", "logprob": TOKEN_LOGPROB - 3.0 - n, "bytes": list(f"{token}{n}".encode())}
        for n in range(1, top)
    ]
    return entry | {"top_logprobs": alternatives[:top]}


class Stub:
    """The application and its one counter."""

    def __init__(self, answer: str = DEFAULT_ANSWER) -> None:
        self.answer = answer
        self.tokens = _tokens(answer)
        self.served = 0
        self.model = "stub"
        self.app = Starlette(
            routes=[
                Route("/v1/chat/completions", self.chat, methods=["POST"]),
                Route("/v1/models", self.models, methods=["GET"]),
                Route("/health", self.health, methods=["GET"]),
            ]
        )

    async def chat(self, request: Request) -> Response:
        try:
            body = json.loads(await request.body())
        except ValueError:
            return JSONResponse(
                {"error": {"message": "the body is not JSON", "type": "invalid_request"}}, 400
            )
        if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
            return JSONResponse(
                {"error": {"message": "messages is required", "type": "invalid_request"}}, 400
            )
        self.served += 1
        self.model = str(body.get("model") or "stub")
        top = int(body.get("top_logprobs") or 0) if body.get("logprobs") else 0
        want_logprobs = bool(body.get("logprobs"))
        usage = {
            "prompt_tokens": _prompt_tokens(body["messages"]),
            "completion_tokens": len(self.tokens),
        }
        usage["total_tokens"] = usage["prompt_tokens"] + usage["completion_tokens"]
        head = {"id": f"chatcmpl-{uuid.uuid4().hex}", "created": int(time.time()), "model": self.model}
        if body.get("stream"):
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return StreamingResponse(
                self._events(head, want_logprobs, top, usage if include_usage else None),
                media_type="text/event-stream",
            )
        logprobs = {"content": [_logprob(t, top) for t in self.tokens], "refusal": None}
        return JSONResponse(
            head
            | {
                "object": "chat.completion",
                "choices": [
                    {
                        "index": 0,
                        "message": {"role": "assistant", "content": self.answer},
                        "logprobs": logprobs if want_logprobs else None,
                        "finish_reason": "stop",
                    }
                ],
                "usage": usage,
            }
        )

    async def _events(self, head: dict[str, Any], logprobs: bool, top: int, usage: dict[str, int] | None):
        def event(choices: list[dict[str, Any]], **extra: Any) -> str:
            chunk = head | {"object": "chat.completion.chunk", "choices": choices} | extra
            return f"data: {json.dumps(chunk)}\n\n"

        yield event([{"index": 0, "delta": {"role": "assistant", "content": ""}, "finish_reason": None}])
        for token in self.tokens:
            choice: dict[str, Any] = {"index": 0, "delta": {"content": token}, "finish_reason": None}
            if logprobs:
                choice["logprobs"] = {"content": [_logprob(token, top)], "refusal": None}
            yield event([choice])
        yield event([{"index": 0, "delta": {}, "finish_reason": "stop"}])
        if usage is not None:
            yield event([], usage=usage)
        yield "data: [DONE]\n\n"

    async def models(self, _request: Request) -> Response:
        model = {"id": self.model, "object": "model", "created": 0, "owned_by": "hybrid-stub"}
        return JSONResponse({"object": "list", "data": [model]})

    async def health(self, _request: Request) -> Response:
        return JSONResponse({"status": "ok", "completions": self.served})


def main(argv: list[str] | None = None) -> None:
    """Serve the stub with uvicorn: one process, no access log."""
    import uvicorn

    parser = argparse.ArgumentParser(prog="python -m hybrid.evals.stub", description=__doc__.split("\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--answer", default=DEFAULT_ANSWER, help="The answer every completion gives.")
    args = parser.parse_args(argv)
    uvicorn.run(Stub(args.answer).app, host=args.host, port=args.port, access_log=False, log_level="warning")


if __name__ == "__main__":
    main()
