"""Wall and CPU time of one question through the Python API (`api.ask`), the models taken out:
both tiers are the instant stub of `hybrid eval overhead`, the cache is off, and every question is
new. What the server adds (HTTP, its thread pool) is left out, and so is most of the noise of
running a load generator and two proxies on the same cores.

Run it at two commits to compare them on the same machine, alternating (docs/benchmarks.md quotes
such pairs):

    PYTHONPATH=. python scripts/ask_cost.py --router learned --questions 300
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

from hybrid.evals.servers import free_port, running


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--router", choices=("learned", "heuristic"), default="learned")
    parser.add_argument("--questions", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=60)
    args = parser.parse_args()
    port = free_port()
    command = [sys.executable, "-m", "hybrid.evals.stub", "--port", str(port)]
    with (
        tempfile.TemporaryDirectory(prefix="ask-cost-") as data,
        running(command, f"http://127.0.0.1:{port}/health", Path(data) / "stub.log"),
    ):
        os.environ |= {
            "HYBRID_DATA_DIR": data,
            "HYBRID_CACHE": "off",
            "HYBRID_OPENAI_BASE_URL": f"http://127.0.0.1:{port}/v1",
            "HYBRID_SMALL_MODEL": "openai:small",
            "HYBRID_LARGE_MODEL": "openai:large",
            "HYBRID_ROUTER": args.router,
        }
        from hybrid import api

        api.prepare()
        for i in range(args.warmup):
            api.ask(f"Warm-up {i}: what is the capital of France?")
        cpu, wall = time.process_time(), time.perf_counter()
        for i in range(args.questions):
            api.ask(f"Question {i}: what is the capital of France, number {i * 7}?")
        wall_ms = (time.perf_counter() - wall) / args.questions * 1000
        cpu_ms = (time.process_time() - cpu) / args.questions * 1000
    print(json.dumps({"router": args.router, "wall_ms": round(wall_ms, 2), "cpu_ms": round(cpu_ms, 2)}))


if __name__ == "__main__":
    main()
