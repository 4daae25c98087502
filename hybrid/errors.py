"""Errors a caller can act on. Each message names the problem and what to do about it."""

from __future__ import annotations


class HybridError(Exception):
    """Base class of every error Hybrid AI raises on purpose."""


class InvalidQuestion(HybridError, ValueError):
    """The question is empty, too long or not text; nothing was run or stored."""


class InvalidSetting(HybridError, ValueError):
    """A setting (environment variable or per-run override) has an unknown name or an invalid value."""


class UnknownModel(HybridError, ValueError):
    """A model spec names a provider or packaged model that does not exist."""


class GenerationPreempted(HybridError):
    """A background generation stopped so that a user's request could run (it is tried again later)."""


class ContextWindowExceeded(HybridError, ValueError):
    """A prompt does not fit a model's context window (it is never silently truncated)."""


class ReviewError(HybridError):
    """A conversation or review request cannot be served; the subclasses below say why."""


class ConversationNotFound(ReviewError, LookupError):
    """No conversation (or no such turn of one) has this id."""


class ConversationBusy(ReviewError):
    """The conversation waits for a reviewer; nothing more can be asked until the case is resolved."""


class CaseAlreadyResolved(ReviewError):
    """The review case is resolved, or being resolved by someone else, or was never opened."""


class InvalidDecision(ReviewError, ValueError):
    """A review decision is malformed or not allowed for this case (e.g. an edit without text)."""


class NoAnswer(ReviewError):
    """The conversation's turn has no answer to act on (it is pending review or was rejected)."""


class ReviewElsewhere(ReviewError):
    """The case belongs to a LangGraph server's run; resolve it through that server's API."""
