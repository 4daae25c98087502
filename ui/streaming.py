"""An answer as it is being made: the small model's draft streams in, marked as a draft, until the
verifier accepts it (verified) or rejects it (struck out, and the large model's answer streams in
below it). `LiveAnswer.feed` folds `api.stream` events; `render` draws the current state.

What was drawn is also kept (`LiveAnswer.shown`): these states pass in a moment on a fast machine,
and the chat keeps the record on the finished answer (`shown_marker`), where a test or a person
can read what the page went through after it was over.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import streamlit as st

from hybrid import api

TIERS = {"answer_small": "small", "escalate": "large"}
DraftState = Literal["drafting", "checking", "verified", "failed"]
SHOWN_AS: dict[DraftState, str] = {
    "drafting": "draft",
    "checking": "draft",
    "verified": "verified",
    "failed": "not-accepted",
}
"""A draft's state as the page shows it (its badge), in the record of what was shown."""


@dataclass
class LiveDraft:
    """One model's draft as the user sees it."""

    tier: str
    text: str = ""
    state: DraftState = "drafting"
    note: str = ""
    """Why it failed, or its score once verified."""


@dataclass
class LiveAnswer:
    """The drafts of one turn so far, and the final `Answer` once it arrives."""

    drafts: list[LiveDraft] = field(default_factory=list)
    step: str = "routing…"
    answer: api.Answer | None = None
    shown: list[str] = field(default_factory=list)
    """Every badge drawn, in order, once per change of a draft: `small:draft`, `small:verified`,
    `small:not-accepted`, `large:draft`, ..."""
    _last_shown: dict[int, str] = field(default_factory=dict)

    def _current(self, node: str) -> LiveDraft:
        tier = TIERS[node]
        if not self.drafts or self.drafts[-1].tier != tier or self.drafts[-1].state != "drafting":
            self.drafts.append(LiveDraft(tier=tier))
        return self.drafts[-1]

    def feed(self, event: api.Event) -> None:
        """Take one streamed event into account."""
        if event.kind == "answer":
            self.answer = event.answer
            return
        node = event.node or ""
        update = event.update or {}
        if event.kind == "token" and node in TIERS:
            self._current(node).text += event.text or ""
            self.step = f"the {TIERS[node]} model is writing…"
        elif node in TIERS:
            draft = self._current(node)
            finished = (update.get("drafts") or [{}])[-1]
            draft.text = draft.text or finished.get("text", "")  # a model that does not stream
            if finished.get("error"):
                draft.state, draft.note = "failed", f"the model failed: {finished['error']}"
            else:
                draft.state = "checking"
            self.step = "verifying…"
        elif node == "verify":
            check = (update.get("verifications") or [{}])[-1]
            draft = next((d for d in reversed(self.drafts) if d.state == "checking"), None)
            if draft is None:  # a failed call is judged too; it is already shown as failed
                return
            score, threshold = check.get("score", 0.0), check.get("threshold", 0.0)
            if check.get("passed"):
                draft.state, draft.note = "verified", f"verifier {score:.2f} ≥ {threshold:.2f}"
                self.step = "accepting…"
            else:
                reasons = check.get("reasons") or []
                draft.state = "failed"
                draft.note = f"verifier {score:.2f} < {threshold:.2f}" + (
                    f": {reasons[1]}" if len(reasons) > 1 else ""
                )
                self.step = "not good enough: asking the large model or a reviewer…"
        elif node == "retrieve":
            self.step = "searching the knowledge base…"
        elif node == "human_review":
            self.step = "sending to a reviewer…"

    def render(self) -> None:
        """Draw the drafts so far (call inside an emptied placeholder's container)."""
        for index, draft in enumerate(self.drafts):
            badge = f"{draft.tier}:{SHOWN_AS[draft.state]}"
            if self._last_shown.get(index) != badge:
                self._last_shown[index] = badge
                self.shown.append(badge)
            label = f"{draft.tier} model"
            if draft.state == "drafting":
                st.markdown(f":gray-badge[:material/edit_note: draft · {label}]")
                st.markdown(draft.text + " ▌")
            elif draft.state == "checking":
                st.markdown(f":gray-badge[:material/edit_note: draft · {label}]")
                st.markdown(draft.text)
            elif draft.state == "verified":
                st.markdown(f":green-badge[:material/verified: verified · {label}] {draft.note}")
                st.markdown(draft.text)
            else:
                st.markdown(f":red-badge[:material/close: not accepted · {label}] {draft.note}")
                if draft.text:
                    st.caption(f"~~{draft.text}~~")
        if self.answer is None:
            st.caption(f":material/progress_activity: {self.step}")


def shown_marker(shown: list[str]) -> str:
    """HTML that keeps, hidden in the page, what the live view showed while an answer was made: a
    `data-shown` attribute listing `LiveAnswer.shown`, space-separated."""
    return f'<span hidden class="shown-while-answering" data-shown="{" ".join(shown)}"></span>'
