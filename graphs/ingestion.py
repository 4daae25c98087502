"""The ingestion graph, served by `langgraph dev` beside the question graph.

Input: paths to files or folders on the server's machine; output: the ingestion report.
"""

from __future__ import annotations

from typing import Any, NotRequired

from langgraph.graph import END, START, StateGraph
from typing_extensions import TypedDict

from hybrid.settings import resolve_settings


class IngestionInput(TypedDict):
    paths: list[str]
    """Files and folders to ingest."""
    collection: NotRequired[str | None]
    """Collection to add to (default: the configured one)."""
    sync: NotRequired[bool]
    """Also remove chunks of files under `paths` that are gone or changed."""


class IngestionState(IngestionInput):
    report: NotRequired[dict[str, Any]]
    """What the ingestion did: files, chunks added, unchanged, removed, failed (with reasons)."""


def ingest(state: IngestionState) -> dict[str, Any]:
    """Ingest the paths and record the report."""
    from retrieval.ingest import ingest as run_ingest

    if not state.get("paths"):
        raise ValueError("no paths to ingest")
    report = run_ingest(
        state["paths"], resolve_settings(), collection=state.get("collection"), sync=bool(state.get("sync"))
    )
    return {"report": report.model_dump() | {"ok": report.ok}}


def build_ingestion_graph() -> StateGraph:
    """A one-step graph around the ingestion pipeline."""
    builder = StateGraph(IngestionState, input_schema=IngestionInput)
    builder.add_node("ingest", ingest)
    builder.add_edge(START, "ingest")
    builder.add_edge("ingest", END)
    return builder


graph = build_ingestion_graph()
