"""The policy as it applies to one turn: who asks (tenant, tier), what the rules decided, how far
the threshold moves, how the tenant stands against its budget; and the budget guard around each
model call.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime

from hybrid import costs, observability
from hybrid.errors import BudgetExhausted, PolicyRefused
from hybrid.policy import budgets, shifts
from hybrid.policy.loading import LoadedPolicy, current_policy
from hybrid.policy.rules import Embed, RequestFacts, Verdict, evaluate
from hybrid.policy.schema import Budget, Tier
from hybrid.sensitivity import find_sensitive, sensitivity_level
from hybrid.settings import Settings


@dataclass(frozen=True)
class TurnPolicy:
    """What the policy says about one turn, before any model runs."""

    loaded: LoadedPolicy
    tenant: str
    """The conversation's owner ("" for none)."""
    facts: RequestFacts
    tier: Tier | None
    verdict: Verdict
    budget: Budget | None
    standing: budgets.Standing | None
    shift: shifts.Shift

    @property
    def tier_name(self) -> str | None:
        return self.facts.tier

    @property
    def small_only(self) -> str | None:
        """Why the large tier is skipped for budget reasons, if it is."""
        if self._spent("small_only") and self.standing is not None:
            return f"budget of {self._whose()} spent ({self.standing.describe()})"
        return None

    def _spent(self, mode: str) -> bool:
        """Whether the budget is spent and its tier does `mode` (small_only or refuse) then."""
        return bool(
            self.budget and self.standing and self.standing.exhausted and self.budget.when_spent == mode
        )

    def _whose(self) -> str:
        return f"tenant {self.tenant}" if self.tenant else "requests without a tenant"

    def refusal(self) -> PolicyRefused | BudgetExhausted | None:
        """What refuses the turn before anything runs: a policy refusal, or a spent budget whose
        tier refuses (with Retry-After); None if nothing does."""
        verdict = self.verdict
        if verdict.refusal is not None:
            return PolicyRefused(verdict.refusal, verdict.refused_by or "")
        if self._spent("refuse") and self.standing is not None:
            return BudgetExhausted(
                f"the budget of {self._whose()} is spent ({self.standing.describe()}); "
                f"retry in {self.standing.retry_after} s, when the next period starts",
                self.standing.retry_after,
            )
        return None

    def screen(self) -> None:
        """Raise `refusal()`, if there is one, and count it."""
        refused = self.refusal()
        if isinstance(refused, PolicyRefused):
            observability.POLICY_DECISIONS.labels(refused.rule, "refuse").inc()
        elif refused is not None:
            observability.LIMITED.labels("budget").inc()
        if refused is not None:
            raise refused

    def recorded(self) -> dict[str, str]:
        """What the route records about the policy (`RouteDecision.policies`)."""
        tier = self.tier
        out = {
            "policy": self.loaded.version,
            "tenant": self.tenant,
            "tier": self.tier_name or "",
            "data_class": self.verdict.data_class,
            "rule": self.verdict.rule.name if self.verdict.rule else "",
        }
        if tier is not None:
            review = tier.review
            out |= {
                "review": "allowed" if review.allowed else review.instead,
                "prompts": tier.retention.prompts,
                "answers": tier.retention.answers,
            }
            if not review.allowed:
                out["review_message"] = review.message
        if self.shift.parts:
            out["threshold_shift"] = f"{self.shift.total:+.4f}"
        if self.standing is not None:
            out["budget"] = self.standing.describe()
        return out


def facts_for(settings: Settings, loaded: LoadedPolicy, tenant: str | None) -> RequestFacts:
    return RequestFacts(
        tenant=tenant or None,
        tier=loaded.tier_of(tenant or None),
        user=settings.user_id,
        metadata={name.lower(): value for name, value in settings.request_metadata.items()},
    )


def for_turn(
    settings: Settings,
    question: str,
    tenant: str | None,
    *,
    large_in_flight: int = 0,
    tier: str | None = None,
    embed: Embed | None = None,
    now: datetime | None = None,
    preview: bool = False,
) -> TurnPolicy | None:
    """The policy for a question of `tenant`'s (None or "": no tenant); None without a policy.

    `tier` stands in for the tenant's tier (`hybrid policy explain --tier`); a `preview` leaves
    the load shift as it was."""
    loaded = current_policy(settings)
    if loaded is None:
        return None
    facts = facts_for(settings, loaded, tenant)
    if tier is not None:
        facts = RequestFacts(facts.tenant, tier, facts.user, facts.metadata)
    tier_config = loaded.tier(facts.tier)
    verdict = evaluate(loaded, question, sensitivity_level(find_sensitive(question)), facts, embed=embed)
    budget = (
        loaded.budget_of(tenant or None) if tier is None else (tier_config.budget if tier_config else None)
    )
    standing = budgets.standing(settings, tenant or "", budget, now) if budget else None
    parts: list[tuple[str, float, str]] = []
    if tier_config is not None and facts.tier:
        if tier_config.threshold_offset:
            parts.append(("tier", tier_config.threshold_offset, f"{facts.tier} tier offset"))
        if tier_config.latency_objective_s is not None or tier_config.queue_objective is not None:
            amount, why = shifts.load_shift(facts.tier, tier_config, large_in_flight, commit=not preview)
            if amount:
                parts.append(("load", amount, why))
    if budget is not None and standing is not None:
        rise = budgets.step_down(standing.used, budget)
        observability.THRESHOLD_SHIFT.labels(facts.tier or "", "budget").set(rise)
        if rise:
            parts.append(("budget", rise, standing.describe()))
    shift = shifts.Shift(round(sum(amount for _, amount, _ in parts), 4), tuple(parts))
    return TurnPolicy(loaded, tenant or "", facts, tier_config, verdict, budget, standing, shift)


@dataclass
class CallGuard:
    """A model call's place in its tenant's budget: held before, settled after."""

    settings: Settings
    tenant: str
    held: budgets.Hold | None
    counted: bool

    def settle(self, cost: float) -> None:
        if self.held is not None:
            budgets.settle(self.settings, self.held, cost)
        elif self.counted and cost > 0:
            budgets.hold(self.settings, self.tenant, None, cost)


def most_cost(
    settings: Settings, specs: Sequence[str], prompt: str, messages: int, deadline_at: float
) -> float:
    """The most a call to any of `specs` can cost: every byte of the prompt a token (no tokenizer
    makes fewer bytes a token), a few tokens of chat template per message, the longest answer
    allowed, and compute until the request's deadline."""
    input_tokens = len(prompt.encode()) + 16 * messages
    seconds = max(0.0, deadline_at - time.time())
    return max(
        costs.call_cost(spec, input_tokens, settings.max_answer_tokens, seconds, settings) for spec in specs
    )


_admitted: dict[str, budgets.Hold] = {}
_admitted_lock = threading.Lock()


def admit(settings: Settings, tenant: str, *, thread_id: str, prompt: str, messages: int) -> None:
    """Before a turn runs (in the façade): when the tenant's tier refuses once its budget is spent,
    hold the most the turn's first model call can cost (`prompt`: all the text it may carry), so a
    turn that starts can make that call; the call uses this hold. `BudgetExhausted`, with the
    seconds until the next period, when the budget cannot cover it."""
    loaded = current_policy(settings)
    budget = loaded.budget_of(tenant or None) if loaded else None
    if budget is None or budget.when_spent != "refuse":
        return
    specs = [*settings.small_specs, *settings.large_specs]
    amount = most_cost(settings, specs, prompt, messages, time.time() + settings.request_deadline_s)
    now = datetime.now(UTC)
    held = budgets.hold(settings, tenant, budget, amount, now)
    if held is None:
        observability.LIMITED.labels("budget").inc()
        spent = budgets.spent(settings, tenant, now)
        short = [name for name, cap in budgets.limits(budget).items() if spent[name] + amount > cap]
        retry = max(budgets.seconds_to_next(name, now) for name in short or ["daily"])
        whose = f"tenant {tenant}" if tenant else "requests without a tenant"
        figures = ", ".join(
            f"{spent[name]:.4f} of {cap:.4f} {name}" for name, cap in budgets.limits(budget).items()
        )
        raise BudgetExhausted(
            f"the budget of {whose} cannot cover another question ({figures} spent or held, "
            f"up to {amount:.6f} needed); retry in {retry} s, when the next period starts",
            retry,
        )
    with _admitted_lock:
        _admitted[thread_id] = held


def release_admission(settings: Settings, thread_id: str) -> None:
    """After the turn: give back an admission hold no call used (a cached answer, a refusal)."""
    with _admitted_lock:
        held = _admitted.pop(thread_id, None)
    if held is not None:
        budgets.settle(settings, held, 0.0)


def guard_call(
    settings: Settings,
    tenant: str | None,
    *,
    model_tier: str,
    specs: Sequence[str],
    prompt: str,
    messages: int,
    deadline_at: float,
    thread_id: str | None = None,
) -> tuple[CallGuard | None, str | None]:
    """Before a call: hold its most possible cost when the tenant's budget guards it (every call
    when the tier refuses once spent, large calls when it goes small-only); the first call of a
    turn the façade admitted uses the admission's hold. Returns the guard to settle after the
    call, or why the call may not be made."""
    with _admitted_lock:
        admitted = _admitted.pop(thread_id, None) if thread_id else None
    loaded = current_policy(settings) if tenant is not None or admitted is not None else None
    owner = admitted.tenant if admitted is not None else (tenant or "")
    budget = loaded.budget_of(owner or None) if loaded else None
    if budget is None:
        if admitted is not None:  # the policy changed under the turn: nothing to guard any more
            budgets.settle(settings, admitted, 0.0)
        return None, None
    if budget.when_spent == "small_only" and model_tier == "small" and admitted is None:
        return CallGuard(settings, owner, None, counted=True), None
    amount = most_cost(settings, specs, prompt, messages, deadline_at)
    if admitted is not None and amount <= admitted.amount:
        return CallGuard(settings, owner, admitted, counted=True), None
    now = datetime.now(UTC)
    if admitted is not None and budgets.periods(now) == admitted.periods:
        # Top the admission's hold up to this call's most: one hold, settled once.
        topped = budgets.hold(settings, owner, budget, amount - admitted.amount, now)
        held = budgets.Hold(owner, amount, admitted.periods) if topped is not None else None
    else:
        held = budgets.hold(settings, owner, budget, amount, now)
    if admitted is not None and (held is None or held.periods != admitted.periods):
        budgets.settle(settings, admitted, 0.0)  # unused (or of a period that has ended)
    if held is None:
        observability.LIMITED.labels("budget").inc()
        whose = f"tenant {owner}" if owner else "requests without a tenant"
        return None, f"budget of {whose} cannot cover this {model_tier} call (up to {amount:.6f})"
    return CallGuard(settings, owner, held, counted=True), None
