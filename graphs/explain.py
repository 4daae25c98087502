"""One-line explanations of what the graph did with a query, built from the recorded decisions."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def _verdict(verification: Mapping[str, Any]) -> str:
    comparison = ">=" if verification["passed"] else "<"
    return f"verifier {verification['score']:.2f} {comparison} {verification['threshold']:.2f}"


def _problem(verification: Mapping[str, Any]) -> str:
    # reasons[0] is the score line; the next one is the main problem found.
    return verification["reasons"][1] if len(verification["reasons"]) > 1 else "low score"


def explain(values: Mapping[str, Any], pending: bool) -> str:
    """Why the query went where it went, in one line."""
    route = values.get("route")
    if not route:
        return "not routed yet"
    parts: list[str] = []
    verifications = values.get("verifications") or []
    review = values.get("review")

    if pending:
        why = (
            "route forced to human review"
            if route["route"] == "human" and route["forced"]
            else (
                f"{verifications[-1]['tier']} answer failed: {_problem(verifications[-1])}"
                if verifications
                else "no tier may answer this query"
            )
        )
        parts.append(f"waiting for human review ({why})")
    elif review:
        if review["action"] == "reject":
            parts.append(
                f"rejected by reviewer {review['reviewer']}"
                + (f": {review['reason']}" if review["reason"] else "")
            )
        elif review["action"] == "edit":
            parts.append(f"answer written by reviewer {review['reviewer']}")
        else:
            parts.append(f"reviewer {review['reviewer']} approved the answer of {values.get('answered_by')}")
    elif verifications:
        last = verifications[-1]
        tier = last["tier"]
        if tier == "large" and len(verifications) > 1:
            first = verifications[0]
            parts.append(f"escalated to the large model ({first['tier']} answer failed: {_problem(first)})")
        parts.append(f"{tier} model {last['model']} answered, {_verdict(last)}")
        if not last["passed"]:
            parts.append("accepted unverified because the route was forced")

    parts.append("router: " + route["reasons"][0])
    retrieval = values.get("retrieval")
    if retrieval:
        parts.append(f"{len(retrieval['hits'])} source(s), best {retrieval['confidence']:.2f}")
    elif not route["needs_kb"]:
        parts.append("no retrieval")
    return "; ".join(parts)
