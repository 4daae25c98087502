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


class ContextWindowExceeded(HybridError, ValueError):
    """A prompt does not fit a model's context window (it is never silently truncated)."""


class ReviewError(HybridError):
    """A review decision cannot be applied: no such case, already resolved, or malformed."""


class ClusterError(HybridError):
    """A local cluster (`hybrid cluster`) cannot start, or is not in the state asked for."""
