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


def _accepted(values: Mapping[str, Any], verifications: list, drafts: list) -> list[str]:
    """What happened to an answer accepted without a reviewer."""
    answered = next(
        (d for d in reversed(drafts) if d["model"] == values.get("answered_by") and d["text"]), None
    )
    index = drafts.index(answered) if answered in drafts else len(drafts) - 1
    verification = verifications[min(index, len(verifications) - 1)]
    parts = []
    if verification["tier"] == "large" and index > 0:
        first = verifications[0]
        parts.append(f"escalated to the large model ({first['tier']} answer failed: {_problem(first)})")
    parts.append(f"{verification['tier']} model {verification['model']} answered, {_verdict(verification)}")
    if not verification["passed"]:
        large_down = next((d for d in drafts if d["tier"] == "large" and d.get("error_kind")), None)
        instead = (values.get("route") or {}).get("policies", {}).get("review")
        if large_down is not None:
            parts.append(f"large tier down ({large_down['error']}): small answer given unverified, by policy")
        elif instead == "unverified":
            parts.append("given unverified instead of asking a person (not part of this service tier)")
        else:
            parts.append("accepted unverified because the route was forced")
    return parts


def _unreachable(drafts: list) -> str:
    """The models of the drafts that could not be reached, where, and why."""
    seen = dict.fromkeys(
        f"{a['model']} at {a.get('endpoint') or '?'}: {a['unreachable']}"
        for d in drafts
        for a in d.get("attempts") or []
        if a.get("unreachable")
    )
    return "; ".join(seen)


def explain(values: Mapping[str, Any], pending: bool) -> str:
    """Why the query went where it went, in one line."""
    route = values.get("route")
    if not route:
        return "not routed yet"
    parts: list[str] = []
    verifications = values.get("verifications") or []
    drafts = values.get("drafts") or []
    review = values.get("review")

    if values.get("status") == "unreachable":
        parts.append(f"no model could be reached ({_unreachable(drafts)}); run `hybrid doctor`")
    elif pending:
        rule = (route.get("policies") or {}).get("rule")
        why = (
            "route forced to human review"
            if route["route"] == "human" and route["forced"]
            else f"policy rule {rule!r} asks a person"
            if route["route"] == "human" and rule
            else (
                f"{verifications[-1]['tier']} answer failed: {_problem(verifications[-1])}"
                if verifications
                else "no tier may answer this query"
            )
        )
        parts.append(f"waiting for human review ({why})")
    elif review:
        if review["action"] == "reject" and review["reviewer"].startswith("policy:"):
            tier = review["reviewer"].removeprefix("policy:")
            parts.append(f"rejected without review (no human review in the {tier} tier): {review['reason']}")
        elif review["action"] == "reject":
            parts.append(
                f"rejected by reviewer {review['reviewer']}"
                + (f": {review['reason']}" if review["reason"] else "")
            )
        elif review["action"] == "edit":
            parts.append(f"answer written by reviewer {review['reviewer']}")
        elif review["action"] == "escalate" and verifications:
            verdict = _verdict(verifications[-1])
            parts.append(f"reviewer {review['reviewer']} escalated; large model answered, {verdict}")
        else:
            parts.append(f"reviewer {review['reviewer']} approved the answer of {values.get('answered_by')}")
    elif values.get("cached"):
        hit = values["cached"]
        match = "exact match" if hit["kind"] == "exact" else f"near-duplicate {hit['similarity']:.3f}"
        parts.append(f"served from the cache ({match}; first answered by {hit['answered_by']})")
    elif verifications:
        parts += _accepted(values, verifications, drafts)
        if route["route"] == "human" and route.get("policies", {}).get("review") == "unverified":
            parts.append("no person saw it: human review is not part of this service tier")
    down = [d for d in drafts if d.get("error_kind") == "unreachable"]
    if down and values.get("status") != "unreachable":
        tiers = " and ".join(dict.fromkeys(d["tier"] for d in down))
        parts.append(f"{tiers} tier unreachable ({_unreachable(down)})")
    return "; ".join(parts + _circumstances(values, route, drafts))


def _circumstances(values: Mapping[str, Any], route: Mapping[str, Any], drafts: list) -> list[str]:
    """What else shaped the turn: fallbacks, the router's reason, retrieval, artefact versions."""
    parts: list[str] = []
    fallbacks = [d for d in drafts if d.get("fallback")]
    if fallbacks:
        skipped = {a["model"] for d in fallbacks for a in d.get("attempts", []) if a["outcome"] != "ok"}
        used = ", ".join(d["model"] for d in fallbacks)
        parts.append(f"fallback to {used} after {', '.join(sorted(skipped))} failed")

    parts.append("router: " + route["reasons"][0])
    retrieval = values.get("retrieval")
    if retrieval:
        parts.append(f"{len(retrieval['hits'])} source(s), best {retrieval['confidence']:.2f}")
    elif not route["needs_kb"]:
        parts.append("no retrieval")
    versions = route.get("versions") or {}
    if versions.get("stale"):
        parts.append(
            f"STALE artefacts {versions['version']} ({'; '.join(versions['stale'])}): run `hybrid tune`"
        )
    elif versions.get("origin") == "canary":
        parts.append(f"canary {versions['version']}")
    return parts
