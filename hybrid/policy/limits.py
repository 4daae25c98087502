"""Per-key rate limits, shared by every replica: the generic cell rate algorithm (GCRA) in one row
per key.

A tier allowing `requests` per `per_s` seconds spaces requests `per_s / requests` apart and lets
a key run up to `requests` ahead of that pace. The row keeps the key's theoretical arrival time
(TAT); one upsert both tests and advances it, so two replicas cannot both let the last request
through. A refused request is told when the next one would pass (Retry-After).
"""

from __future__ import annotations

import math
import time

import sqlalchemy as sa

from hybrid.database import database_for, rate_limits
from hybrid.errors import RateLimited
from hybrid.policy.schema import RateLimit
from hybrid.settings import Settings


def take(settings: Settings, key_id: str, limit: RateLimit, now: float | None = None) -> None:
    """Count one request of a key against its limit; `RateLimited` if it is over."""
    moment = time.time() if now is None else now
    interval = limit.per_s / limit.requests
    engine = database_for(settings).engine
    if engine.dialect.name == "postgresql":
        from sqlalchemy.dialects.postgresql import insert
    else:
        from sqlalchemy.dialects.sqlite import insert
    base = sa.case((rate_limits.c.tat > moment, rate_limits.c.tat), else_=sa.literal(moment))
    statement = insert(rate_limits).values(key_id=key_id, tat=moment + interval)
    statement = statement.on_conflict_do_update(
        index_elements=["key_id"],
        set_={"tat": base + interval},
        where=base + interval - moment <= limit.per_s,
    )
    with engine.begin() as connection:
        if connection.execute(statement.returning(rate_limits.c.tat)).first() is not None:
            return
        tat = connection.execute(
            sa.select(rate_limits.c.tat).where(rate_limits.c.key_id == key_id)
        ).scalar_one()
    wait = max(tat, moment) + interval - limit.per_s - moment
    raise RateLimited(
        f"rate limit of {limit.requests} requests per {limit.per_s:g} s reached for this key; "
        f"retry in {math.ceil(wait)} s",
        math.ceil(wait),
    )
