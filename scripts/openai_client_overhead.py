"""Client time of one `openai:` model call: LangChain's ChatOpenAI as it comes against the
factory's (body parameters handed past the OpenAI SDK's parameter walk, the answer read as its
JSON), in turns, against the instant stub.

    .venv/bin/python scripts/openai_client_overhead.py [--calls 400] [--port N]

Prints the median time of a call for a two-message question and a fourteen-message conversation
with sources, and the stub's own time seen by a bare HTTP client. The figures in
docs/benchmarks.md ("Where our time goes") come from this script.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import httpx
from langchain_core.messages import AIMessage, BaseMessage, HumanMessage, SystemMessage

from hybrid.evals.servers import free_port, running


def _timed(call: object, messages: list[BaseMessage]) -> float:
    began = time.perf_counter()
    call.invoke(messages)  # type: ignore[attr-defined]
    return (time.perf_counter() - began) * 1000


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--port", type=int, help="The stub's port [default: a free one].")
    args = parser.parse_args()
    port = args.port or free_port()
    url = f"http://127.0.0.1:{port}/v1"
    command = [sys.executable, "-m", "hybrid.evals.stub", "--port", str(port)]
    log = Path(tempfile.gettempdir()) / "openai-client-overhead-stub.log"
    with running(command, f"http://127.0.0.1:{port}/health", log):
        os.environ["HYBRID_OPENAI_BASE_URL"] = url
        from langchain_openai import ChatOpenAI

        from hybrid.models import get_chat_model
        from hybrid.settings import resolve_settings

        ours = get_chat_model("openai:stub", resolve_settings())
        same = ("model_name", "openai_api_base", "temperature", "max_tokens", "stream_usage")
        plain = ChatOpenAI(**{name: getattr(ours, name) for name in same}, api_key="unused")
        sources = "Answer from the sources.\n" + "[1] The Danube flows through Budapest and Vienna. " * 40
        conversation: list[BaseMessage] = [SystemMessage(sources)]
        for i in range(6):
            conversation += [HumanMessage(f"Question {i} about the rivers?"), AIMessage(f"Answer {i}.")]
        conversation.append(HumanMessage("And the longest?"))
        shapes = {
            "question (2 messages)": [SystemMessage("Answer briefly."), HumanMessage("Capital of France?")],
            "conversation (14 messages, sources)": conversation,
        }
        bare = httpx.Client()
        body = {"model": "stub", "messages": [{"role": "user", "content": "Capital of France?"}]}
        stub_ms = []
        for _ in range(args.calls):
            began = time.perf_counter()
            bare.post(f"{url}/chat/completions", json=body)
            stub_ms.append((time.perf_counter() - began) * 1000)
        print(f"stub, bare httpx: {statistics.median(stub_ms):.2f} ms")
        for shape, messages in shapes.items():
            for _ in range(30):  # warm-up
                _timed(plain, messages)
                _timed(ours, messages)
            times: dict[str, list[float]] = {"ChatOpenAI": [], "factory": []}
            for _ in range(args.calls):
                times["ChatOpenAI"].append(_timed(plain, messages))
                times["factory"].append(_timed(ours, messages))
            medians = {name: statistics.median(values) for name, values in times.items()}
            print(
                f"{shape}: ChatOpenAI {medians['ChatOpenAI']:.2f} ms, factory {medians['factory']:.2f} ms "
                f"({medians['factory'] / medians['ChatOpenAI']:.2f}x)"
            )


if __name__ == "__main__":
    main()
