"""The graph builder.

classify → [retrieve] → answer_small → verify → accept | escalate → verify → accept | human_review
(`interrupt`) → accept | end. A turn no model of any allowed tier could be reached for ends in
`unreachable` (no review case: a configuration error). `graph` is the uncompiled builder that
`langgraph dev` serves with its own persistence; the Python API compiles it with a SQLite
checkpointer.
"""

from __future__ import annotations

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph

from graphs import edges, nodes
from graphs.state import InputState, State
from hybrid.settings import RunContext


def build_graph() -> StateGraph:
    """The Hybrid AI state machine, uncompiled."""
    builder = StateGraph(State, input_schema=InputState, context_schema=RunContext)
    builder.add_node("classify", nodes.classify)
    builder.add_node("retrieve", nodes.retrieve)
    builder.add_node("answer_small", nodes.answer_small)
    builder.add_node("escalate", nodes.escalate)
    builder.add_node("verify", nodes.verify)
    builder.add_node("human_review", nodes.human_review)
    builder.add_node("accept", nodes.accept)
    builder.add_node("unreachable", nodes.unreachable)

    builder.add_edge(START, "classify")
    builder.add_conditional_edges("classify", edges.after_classify)
    builder.add_conditional_edges("retrieve", edges.after_retrieve)
    builder.add_edge("answer_small", "verify")
    builder.add_edge("escalate", "verify")
    builder.add_conditional_edges("verify", edges.after_verify)
    builder.add_conditional_edges("human_review", edges.after_review)
    builder.add_edge("accept", END)
    builder.add_edge("unreachable", END)
    return builder


def compile_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The graph compiled with a checkpointer (None: the caller's platform persists state)."""
    return build_graph().compile(checkpointer=checkpointer, name="hybrid")


# Served by `langgraph dev` (see langgraph.json), which refuses a graph with its own checkpointer.
graph = build_graph()
