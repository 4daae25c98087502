"""The graph builder.

classify → [retrieve] → answer_small → verify → accept | escalate → verify → accept | human_review
(`interrupt`) → accept | end. A turn no model of any allowed tier could be reached for ends in
`unreachable` (no review case: a configuration error). `graph` is the uncompiled builder that
`langgraph dev` serves with its own persistence; the Python API compiles it with a SQLite
checkpointer.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, get_args, get_type_hints

from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.graph import END, START, StateGraph
from langgraph.graph.state import CompiledStateGraph
from langgraph.runtime import Runtime
from langgraph.types import Command

from graphs import edges, nodes
from graphs.executor import share_background_pool
from graphs.state import InputState, State
from hybrid.settings import RunContext

Edge = Callable[[State], str]


def _then(node: nodes.Node, edge: Edge) -> Callable[[State, Runtime[Any]], Command]:
    """`node`, going on to the node `edge` picks from the state its update leaves.

    The same choice as a conditional edge after the node, made without LangGraph reading the whole
    state back for it (a branch copies every channel to apply the step's writes first, on each
    turn). Edges read only fields without a reducer (not `messages`), so the state with the update
    laid over it is the state they would have read."""

    @functools.wraps(node)
    def routed(state: State, runtime: Runtime[Any]) -> Command:
        update = node(state, runtime)
        return Command(update=update, goto=edge({**state, **update}))  # type: ignore[typeddict-item]

    return routed


def _targets(edge: Edge) -> tuple[str, ...]:
    """The nodes an edge function may pick (its `Literal` return type), drawn as the node's edges."""
    return get_args(get_type_hints(edge)["return"])


def build_graph() -> StateGraph:
    """The Hybrid AI state machine, uncompiled."""
    builder = StateGraph(State, input_schema=InputState, context_schema=RunContext)
    for name, node, edge in (
        ("classify", nodes.classify, edges.after_classify),
        ("retrieve", nodes.retrieve, edges.after_retrieve),
        ("verify", nodes.verify, edges.after_verify),
        ("human_review", nodes.human_review, edges.after_review),
    ):
        builder.add_node(name, _then(node, edge), destinations=_targets(edge))
    builder.add_node("answer_small", nodes.answer_small)
    builder.add_node("escalate", nodes.escalate)
    builder.add_node("accept", nodes.accept)
    builder.add_node("unreachable", nodes.unreachable)

    builder.add_edge(START, "classify")
    builder.add_edge("answer_small", "verify")
    builder.add_edge("escalate", "verify")
    builder.add_edge("accept", END)
    builder.add_edge("unreachable", END)
    return builder


def compile_graph(checkpointer: BaseCheckpointSaver | None = None) -> CompiledStateGraph:
    """The graph compiled with a checkpointer (None: the caller's platform persists state)."""
    share_background_pool()  # a run's final checkpoint is saved without starting a thread
    return build_graph().compile(checkpointer=checkpointer, name="hybrid")


# Served by `langgraph dev` (see langgraph.json), which refuses a graph with its own checkpointer.
graph = build_graph()
