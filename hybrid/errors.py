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


class ModelsUnreachable(HybridError):
    """No model of any tier the question may use could be reached: every one refused the
    connection, has an unknown host, or does not know the model (or the key). A configuration
    error, not a question for a reviewer; `hybrid doctor` says what to fix.

    `unreachable` lists each model as `{"tier", "model", "endpoint", "reason", "fix"}`;
    `retry_after_s` is when trying again may help (the models' cooldown)."""

    def __init__(
        self,
        message: str,
        *,
        unreachable: list[dict[str, str]] | None = None,
        thread_id: str | None = None,
        trace_id: str | None = None,
        retry_after_s: float = 30.0,
    ) -> None:
        super().__init__(message)
        self.unreachable = unreachable or []
        self.thread_id = thread_id
        self.trace_id = trace_id
        self.retry_after_s = retry_after_s


class InvalidPolicy(HybridError, ValueError):
    """The policy file does not validate; `problems` lists each error with its line and reason."""

    def __init__(self, path: str, problems: list[str]) -> None:
        self.path, self.problems = path, problems
        listed = "\n".join(f"  {problem}" for problem in problems)
        super().__init__(f"policy file {path} is invalid ({len(problems)} problem(s)):\n{listed}")


class Unauthenticated(HybridError, PermissionError):
    """No valid API key was given where one is required."""


class Forbidden(HybridError, PermissionError):
    """The caller's key may not read or change this (another tenant's data, or an admin-only action)."""


class PolicyRefused(HybridError):
    """A policy rule or a data-class restriction refuses the question; nothing ran."""

    def __init__(self, message: str, rule: str) -> None:
        self.rule = rule
        super().__init__(message)


class TooManyRequests(HybridError):
    """A limit is reached for now; `retry_after` says in how many seconds to try again."""

    def __init__(self, message: str, retry_after: int) -> None:
        self.retry_after = max(1, int(retry_after))
        super().__init__(message)


class BudgetExhausted(TooManyRequests):
    """The tenant's budget for the period is spent and its tier refuses until the next period."""


class RateLimited(TooManyRequests):
    """The key sent more requests than its tier's rate limit allows."""


class ClusterError(HybridError):
    """A local cluster (`hybrid cluster`) cannot start, or is not in the state asked for."""


class NotEnoughToLearn(HybridError, ValueError):
    """The labelled pairs cannot train a version (too few groups, or a tier whose drafts were all
    right or all wrong); nothing was written. More traffic or another question set fixes it."""
