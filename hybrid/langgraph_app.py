"""What `langgraph dev` (and LangGraph Platform) imports, as named in `langgraph.json`.

An entry point like the `hybrid` command and the server: telemetry goes off first, before the
graph modules bring in the libraries that would send it, then the graphs are exported as built.
"""

from __future__ import annotations

from hybrid.privacy import disable_telemetry

disable_telemetry()

from graphs.graph import graph  # noqa: E402
from graphs.ingestion import graph as ingest  # noqa: E402

__all__ = ["graph", "ingest"]
