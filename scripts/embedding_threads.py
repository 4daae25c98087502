"""One question's pass through MiniLM's early half (the router's three layers) on one ONNX Runtime
thread against two, by the question's length in tokens: median wall time and mean CPU time, one
text at a time, as the server embeds a question. With `--beside-llamacpp`, again while the
packaged SmolLM2 generates on both cores in another process, as the embedded default serves.

    python scripts/embedding_threads.py [--beside-llamacpp] [--passes 80]

The figures in docs/benchmarks.md ("One thread for a short text") come from this script. The
threads are forced here: the encoder itself runs a text of up to `_ONE_THREAD_TOKENS` tokens on one.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
import time

_TEXT = (
    "The following are multiple choice questions about high school physics. A ball is thrown upward "
    "with an initial speed and reaches a maximum height before falling back. Which statement about "
    "its acceleration is correct? A. zero at the top B. constant downward C. increases D. decreases. "
)
_GENERATE = """
from llama_cpp import Llama
from hybrid.models.llamacpp import resolve_gguf
model = Llama(model_path=str(resolve_gguf("smollm2-135m-instruct")), n_threads=2, n_ctx=512, verbose=False)
while True:
    model.create_completion("Tell me a long story about rivers.", max_tokens=256)
"""


def _measure(passes: int) -> None:
    from retrieval import embeddings

    encoder = embeddings.encoder()
    if not isinstance(encoder, embeddings.OnnxMiniLM):
        sys.exit("no ONNX graph: MiniLM runs in torch here (see the log)")
    session = encoder._session
    for words in (20, 40, 60, 90, 140):
        text = " ".join((_TEXT * 5).split()[:words])
        tokens = encoder._feed(text)["input_ids"].shape[1]
        row = [f"{tokens:4d} tokens"]
        for threads in (1, 2):
            run = session("early", threads).run
            for i in range(5):
                run(None, encoder._feed(f"{i} {text}"))
            walls, cpu = [], time.process_time()
            for i in range(passes):
                feed = encoder._feed(f"{i} {text}")
                began = time.perf_counter()
                run(None, feed)
                walls.append((time.perf_counter() - began) * 1000)
            cpu_ms = (time.process_time() - cpu) / passes * 1000
            row.append(f"{threads} thread(s): {statistics.median(walls):.2f} ms wall, {cpu_ms:.2f} ms CPU")
        print(" | ".join(row), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--passes", type=int, default=80)
    parser.add_argument("--beside-llamacpp", action="store_true")
    args = parser.parse_args()
    if not args.beside_llamacpp:
        _measure(args.passes)
        return
    generator = subprocess.Popen([sys.executable, "-c", _GENERATE], stderr=subprocess.DEVNULL)
    try:
        time.sleep(8)  # loaded and generating
        if generator.poll() is not None:
            sys.exit("llama.cpp did not start (is the SmolLM2 package installed? `make setup`)")
        _measure(args.passes)
    finally:
        generator.kill()


if __name__ == "__main__":
    main()
