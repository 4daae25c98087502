"""Bulk MiniLM throughput: passages embedded per second on one thread, as ingestion embeds them.

Run it at two commits to compare them on the same machine (docs/benchmarks.md quotes such pairs):

    python scripts/embedding_throughput.py --corpus $DATA/beir-scifact/corpus.jsonl
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--corpus", type=Path, required=True, help="BEIR corpus.jsonl (title, text)")
    parser.add_argument("--passages", type=int, default=256)
    args = parser.parse_args()

    from retrieval.embeddings import embed

    passages = []
    with args.corpus.open() as lines:
        for line in lines:
            row = json.loads(line)
            passages.append(f"{row.get('title', '')} {row['text']}")
            if len(passages) >= args.passages:
                break
    embed(passages[:8], batch_size=64, threads=1)  # sessions made, weights read
    began = time.perf_counter()
    embed(passages, batch_size=64, threads=1)
    seconds = time.perf_counter() - began
    print(json.dumps({"passages": len(passages), "passages_per_s": round(len(passages) / seconds, 1)}))


if __name__ == "__main__":
    main()
