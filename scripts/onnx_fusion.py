"""MiniLM's ONNX graphs with each layer's operators fused (as served) against the same export left
unfused: the router's half of one question's pass (median wall time, one thread, one text at a
time, as the server embeds a question), with the caches warm and with them cold (a request's other
work evicts the weights between two questions, so the served pass runs cold), and how far the two
graphs' vectors lie apart.

    python scripts/onnx_fusion.py [--passes 300]

Both variants are exported into a temporary folder (about a minute, torch included). The figures
in docs/benchmarks.md ("Fused operators") come from this script.
"""

from __future__ import annotations

import argparse
import statistics
import tempfile
import time
from pathlib import Path

import numpy as np

from retrieval import embeddings

_QUESTIONS = [
    "What is the capital of France?",
    "Natalia sold clips to 48 of her friends in April, and then she sold half as many clips in May. "
    "How many clips did Natalia sell altogether in April and May?",
    "Which statement about a ball's acceleration at the top of its flight is correct?",
    "Explain why the sky is blue in two sentences.",
]


def _passes(encoder: embeddings.OnnxMiniLM, passes: int, cold: bool) -> float:
    run = encoder._session("early", 1).run
    feeds = [encoder._feed(f"{i} {q}") for i, q in enumerate(_QUESTIONS * 3)]
    evict = np.ones(8_000_000)  # 64 MB, more than this machine's caches
    for feed in feeds:
        run(None, feed)
    walls = []
    for i in range(passes):
        if cold:
            evict += 1.0
        started = time.perf_counter()
        run(None, feeds[i % len(feeds)])
        walls.append(time.perf_counter() - started)
    return statistics.median(walls) * 1e3


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--passes", type=int, default=300)
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as folder:
        encoders = {}
        for name, fuse in (("unfused", False), ("fused", True)):
            graphs = embeddings.prepare_onnx(Path(folder) / name, fuse=fuse)
            encoders[name] = embeddings.OnnxMiniLM(graphs, embeddings.model_path())
        texts = [f"{i} {q}" for i, q in enumerate(_QUESTIONS * 10)]
        vectors = {name: encoder.encode(texts, 1, 1) for name, encoder in encoders.items()}
        for layer in ("early", "final"):
            a, b = (getattr(vectors[name], layer) for name in ("unfused", "fused"))
            lowest = np.einsum("ij,ij->i", a, b).min()
            print(f"{layer} vectors: lowest cosine between the two graphs {lowest:.5f}")
        for cold in (False, True):
            # Alternate the two, three rounds each, so a change in the machine's load hits both.
            times: dict[str, list[float]] = {name: [] for name in encoders}
            for _ in range(3):
                for name, encoder in encoders.items():
                    times[name].append(_passes(encoder, args.passes, cold))
            medians = {name: statistics.median(t) for name, t in times.items()}
            print(
                f"early half, caches {'cold' if cold else 'warm'}: unfused {medians['unfused']:.3f} ms, "
                f"fused {medians['fused']:.3f} ms ({medians['fused'] / medians['unfused']:.2f}x)"
            )


if __name__ == "__main__":
    main()
