"""Tenants' budgets: what each spent this UTC day and month, how close that is to the budget, and
holds that keep replicas from overspending.

A model call that a budget guards first *holds* its most possible cost: one statement adds it to
the tenant's spend only if the total stays within the budget (an upsert whose update has a
`WHERE`; PostgreSQL and SQLite both apply it atomically, so of two replicas racing for the last
of a budget one gets it). After the call the hold is settled to the real cost. A call that
cannot hold is not made. A process that dies between the two leaves its hold counted: the budget
is under-used, never overspent.
"""

from __future__ import annotations

import calendar
import math
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import sqlalchemy as sa

from hybrid.database import database_for, tenant_spend
from hybrid.policy.schema import Budget
from hybrid.settings import Settings


def periods(now: datetime) -> dict[str, str]:
    """The period keys of a moment: its UTC day and month."""
    moment = now.astimezone(UTC)
    return {"daily": moment.strftime("%Y-%m-%d"), "monthly": moment.strftime("%Y-%m")}


def seconds_to_next(period: str, now: datetime) -> int:
    """Seconds until the next UTC day or month begins (what Retry-After says)."""
    moment = now.astimezone(UTC)
    if period == "daily":
        start = datetime(moment.year, moment.month, moment.day, tzinfo=UTC) + timedelta(days=1)
    else:
        days = calendar.monthrange(moment.year, moment.month)[1]
        start = datetime(moment.year, moment.month, 1, tzinfo=UTC) + timedelta(days=days)
    return max(1, math.ceil((start - moment).total_seconds()))


def limits(budget: Budget) -> dict[str, float]:
    """The limited periods of a budget and their limits."""
    return {name: limit for name in ("daily", "monthly") if (limit := getattr(budget, name)) is not None}


def spent(settings: Settings, tenant: str, now: datetime) -> dict[str, float]:
    """What a tenant spent (and holds) this day and this month."""
    keys = periods(now)
    query = sa.select(tenant_spend.c.period, tenant_spend.c.cost).where(
        tenant_spend.c.tenant == tenant, tenant_spend.c.period.in_(list(keys.values()))
    )
    with database_for(settings).engine.connect() as connection:
        found = {row.period: float(row.cost) for row in connection.execute(query)}
    return {name: found.get(key, 0.0) for name, key in keys.items()}


@dataclass(frozen=True)
class Standing:
    """How a tenant stands against its budget."""

    used: float
    """The largest share of a limit spent, in [0, 1+]."""
    period: str | None
    """The period of that share (daily or monthly)."""
    spent: dict[str, float]
    limits: dict[str, float]
    exhausted: bool
    retry_after: int
    """Seconds until every spent period has started again (0 while the budget lasts)."""

    def describe(self) -> str:
        if self.period is None:
            return "no budget"
        figures = ", ".join(
            f"{self.spent[name]:.4f} of {limit:.4f} {name}" for name, limit in self.limits.items()
        )
        return f"{self.used:.0%} of the {self.period} budget spent ({figures})"


def standing(settings: Settings, tenant: str, budget: Budget, now: datetime | None = None) -> Standing:
    """A tenant's standing against its budget now."""
    moment = now or datetime.now(UTC)
    return standing_of(spent(settings, tenant, moment), budget, moment)


def standing_of(spent_now: dict[str, float], budget: Budget, now: datetime) -> Standing:
    """The arithmetic of `standing`, from figures already read."""
    caps = limits(budget)
    shares = {name: spent_now.get(name, 0.0) / limit for name, limit in caps.items()}
    period = max(shares, key=lambda name: shares[name]) if shares else None
    used = shares[period] if period else 0.0
    over = [name for name, share in shares.items() if share >= 1.0]
    return Standing(
        used=used,
        period=period,
        spent={name: spent_now.get(name, 0.0) for name in caps},
        limits=caps,
        exhausted=bool(over),
        retry_after=max((seconds_to_next(name, now) for name in over), default=0),
    )


def step_down(used: float, budget: Budget) -> float:
    """How far the routing threshold rises at this share of the budget spent: nothing until
    `step_down_from`, then a smoothstep to `max_rise` at the budget (no jump anywhere)."""
    if used <= budget.step_down_from:
        return 0.0
    x = min(1.0, (used - budget.step_down_from) / (1.0 - budget.step_down_from))
    return budget.max_rise * x * x * (3 - 2 * x)


def _upsert(engine: sa.Engine) -> type:
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    return insert  # type: ignore[return-value]


class _WouldExceed(Exception):
    pass


@dataclass(frozen=True)
class Hold:
    """Cost added to a tenant's spend before a call; settled to the call's real cost after it."""

    tenant: str
    amount: float
    periods: dict[str, str]
    """The period keys it was added to (the call may end after midnight)."""


def hold(
    settings: Settings, tenant: str, budget: Budget | None, amount: float, now: datetime | None = None
) -> Hold | None:
    """Add `amount` to the tenant's spend if every limited period stays within its limit (all or
    nothing); None if it would not. Without a budget, the amount is just added."""
    moment = now or datetime.now(UTC)
    keys = periods(moment)
    caps = limits(budget) if budget else {}
    if any(amount > limit for limit in caps.values()):
        return None
    engine = database_for(settings).engine
    insert = _upsert(engine)
    try:
        with engine.begin() as connection:
            # Day before month in every transaction: concurrent holders take the rows in one order.
            for name in ("daily", "monthly"):
                statement = insert(tenant_spend).values(tenant=tenant, period=keys[name], cost=amount)
                new_cost = tenant_spend.c.cost + statement.excluded.cost
                statement = statement.on_conflict_do_update(
                    index_elements=["tenant", "period"],
                    set_={"cost": new_cost},
                    where=(new_cost <= caps[name]) if name in caps else None,
                )
                if connection.execute(statement.returning(tenant_spend.c.cost)).first() is None:
                    raise _WouldExceed  # rolls back the other period's part too
    except _WouldExceed:
        return None
    return Hold(tenant, amount, keys)


def settle(settings: Settings, held: Hold, cost: float) -> None:
    """Replace a hold by what the call really cost."""
    difference = cost - held.amount
    if abs(difference) < 1e-12:
        return
    with database_for(settings).engine.begin() as connection:
        for name in ("daily", "monthly"):
            connection.execute(
                sa.update(tenant_spend)
                .where(tenant_spend.c.tenant == held.tenant, tenant_spend.c.period == held.periods[name])
                .values(cost=tenant_spend.c.cost + difference)
            )
