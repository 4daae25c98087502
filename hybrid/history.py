"""A conversation's earlier turns, as the router and the answering models see them."""

from __future__ import annotations

import itertools
from collections.abc import Sequence

from langchain_core.messages import AIMessage, AnyMessage, HumanMessage


def conversation_turns(messages: Sequence[AnyMessage], limit: int) -> list[tuple[str, str]]:
    """The last `limit` answered (question, answer) pairs of a conversation."""
    pairs: list[tuple[str, str]] = []
    for earlier, later in itertools.pairwise(messages):
        if isinstance(earlier, HumanMessage) and isinstance(later, AIMessage):
            pairs.append((earlier.text, later.text))
    return pairs[-limit:] if limit else []


def questions_asked(messages: Sequence[AnyMessage]) -> list[str]:
    """Every question of a conversation, in order."""
    return [m.text for m in messages if isinstance(m, HumanMessage)]


def turn_number(messages: Sequence[AnyMessage]) -> int:
    """Which turn a conversation is on: the number of questions asked so far."""
    return sum(isinstance(m, HumanMessage) for m in messages)
