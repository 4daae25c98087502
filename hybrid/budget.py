"""Daily cost budgets, overall and per user: when one is spent, the large tier is skipped by policy."""

from __future__ import annotations

from datetime import UTC, datetime

import sqlalchemy as sa

from hybrid.database import database_for, spend
from hybrid.settings import Settings


def _today() -> str:
    return datetime.now(UTC).date().isoformat()


def add_spend(settings: Settings, cost: float) -> None:
    """Add a model call's estimated cost to today's spend (of the run's user, if any)."""
    if cost <= 0:
        return
    engine = database_for(settings).engine
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    statement = insert(spend).values(day=_today(), user_id=settings.user_id or "", cost=cost)
    statement = statement.on_conflict_do_update(
        index_elements=["day", "user_id"], set_={"cost": spend.c.cost + statement.excluded.cost}
    )
    with engine.begin() as connection:
        connection.execute(statement)


def spent_today(settings: Settings, user_id: str | None = None) -> float:
    """Today's spend: everyone's, or one user's."""
    query = sa.select(sa.func.coalesce(sa.func.sum(spend.c.cost), 0.0)).where(spend.c.day == _today())
    if user_id is not None:
        query = query.where(spend.c.user_id == user_id)
    with database_for(settings).engine.connect() as connection:
        return float(connection.execute(query).scalar_one())


def exhausted(settings: Settings) -> str | None:
    """Why the large tier must be skipped today, or None while the budgets last."""
    if settings.daily_budget is not None:
        total = spent_today(settings)
        if total >= settings.daily_budget:
            return f"daily budget spent ({total:.4f} of {settings.daily_budget:.4f})"
    if settings.user_daily_budget is not None and settings.user_id:
        mine = spent_today(settings, settings.user_id)
        if mine >= settings.user_daily_budget:
            limit = settings.user_daily_budget
            return f"daily budget of user {settings.user_id} spent ({mine:.4f} of {limit:.4f})"
    return None
