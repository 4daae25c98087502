"""An OpenAI-compatible server for one GGUF: llama-cpp-python's own, which also serves base models.

    python -m hybrid.models.openai_server --model NAME_OR_PATH --model_alias NAME --port N [...]

NAME_OR_PATH is a packaged model (`smollm2-135m-instruct`, `gemma-3-270m`) or a GGUF file; any
other option is llama_cpp.server's.

A GGUF with a chat template is served through it, as `python -m llama_cpp.server` does. A base
model without one (Gemma-3-270M) only echoes chat markup, so it gets the `hybrid-transcript` chat
format: the conversation as the few-shot `Q:`/`A:` transcript our embedded provider prompts it with
(`render_transcript`), ending at the next `Q:`. Clients keep speaking chat completions, and the
model answers as it does in-process.
"""

from __future__ import annotations

import contextlib
import io
import sys
from pathlib import Path
from typing import Any

TRANSCRIPT_FORMAT = "hybrid-transcript"


def has_chat_template(path: Path) -> bool:
    """Whether a GGUF carries a chat template (read from its metadata, without loading the weights)."""
    from llama_cpp import Llama

    with contextlib.redirect_stderr(io.StringIO()):
        vocab = Llama(model_path=str(path), vocab_only=True, verbose=False)
    try:
        return bool(vocab.metadata.get("tokenizer.chat_template"))
    finally:
        vocab.close()


def format_transcript(messages: list[dict[str, Any]], **_kwargs: Any) -> Any:
    """llama-cpp-python's chat formatter for `hybrid-transcript`: OpenAI messages as our transcript."""
    from langchain_core.messages import AIMessage, HumanMessage, SystemMessage
    from llama_cpp.llama_chat_format import ChatFormatterResponse

    from hybrid.models.llamacpp import COMPLETION_STOPS, render_transcript

    kinds = {"system": SystemMessage, "developer": SystemMessage, "assistant": AIMessage}

    def text_of(content: Any) -> str:
        if isinstance(content, list):  # content parts: the text ones
            return "".join(part.get("text", "") for part in content if isinstance(part, dict))
        return str(content or "")

    converted = [kinds.get(m["role"], HumanMessage)(content=text_of(m.get("content"))) for m in messages]
    return ChatFormatterResponse(prompt=render_transcript(converted), stop=list(COMPLETION_STOPS))


def register_transcript_format() -> None:
    """Register `hybrid-transcript` with llama-cpp-python's chat formats."""
    from llama_cpp import llama_chat_format

    llama_chat_format.register_chat_format(TRANSCRIPT_FORMAT)(format_transcript)


def command(model_path: Path, alias: str, port: int, *, threads: int = 1, n_ctx: int = 2048) -> list[str]:
    """The command line that serves `model_path` as model `alias` on 127.0.0.1:`port`."""
    return [
        sys.executable, "-m", "hybrid.models.openai_server", "--model", str(model_path),
        "--model_alias", alias, "--host", "127.0.0.1", "--port", str(port),
        "--n_threads", str(threads), "--n_threads_batch", str(threads), "--n_ctx", str(n_ctx),
    ]  # fmt: skip


def main(argv: list[str]) -> None:
    """Serve with llama-cpp-python's server; base models get the transcript format."""
    from hybrid.privacy import disable_telemetry

    disable_telemetry()
    from hybrid.models.llamacpp import resolve_gguf

    args = list(argv)
    model = None
    if "--model" in args:  # a packaged model's name, or a GGUF's path
        at = args.index("--model") + 1
        model = resolve_gguf(args[at])
        args[at] = str(model)
    if "--chat_format" not in args and model is not None and not has_chat_template(model):
        args += ["--chat_format", TRANSCRIPT_FORMAT]
    register_transcript_format()
    from llama_cpp.server.__main__ import main as serve

    sys.argv = ["llama_cpp.server", *args]
    serve()


if __name__ == "__main__":
    main(sys.argv[1:])
