"""Keys and tenancy for `langgraph dev`: the same API keys, tenants and conversation owners as
`hybrid serve`, through LangGraph's custom auth (`auth` in langgraph.json; `hybrid dev` writes it).

Without keys configured every request is the operator's, as before. With keys, a request needs
one (`Authorization: Bearer <key>`, or the SDK's `x-api-key`), a thread a tenant creates is
recorded as that tenant's in Hybrid's own table (the one the façade, the server and the web app
check), and any other tenant's read, update, run or delete of it gets 403. Tenants run on
threads they created (a stateless run would belong to no one). Only admins manage assistants,
crons and the store.
"""

from __future__ import annotations

import asyncio
from typing import Any

from langgraph_sdk import Auth

from hybrid.errors import Forbidden, Unauthenticated
from hybrid.policy import authenticate, current_policy, keys_configured
from hybrid.policy import tenancy as _tenancy
from hybrid.policy.callers import Caller
from hybrid.settings import resolve_settings

auth = Auth()

_ADMIN = "admin"


def _key(headers: dict[bytes, bytes]) -> str | None:
    raw = headers.get(b"authorization", b"").decode().strip()
    if raw.lower().startswith("bearer "):
        return raw[7:].strip() or None
    return headers.get(b"x-api-key", b"").decode().strip() or None


def _resolve(headers: dict[bytes, bytes]) -> dict[str, Any]:
    settings = resolve_settings()
    if not keys_configured(settings):
        return {"identity": "operator", "permissions": [_ADMIN]}
    key = _key(headers)
    if key is None:
        raise Auth.exceptions.HTTPException(status_code=401, detail="missing API key (Authorization: Bearer)")
    try:
        caller = authenticate(settings, key)
    except Unauthenticated as exc:
        raise Auth.exceptions.HTTPException(status_code=401, detail=str(exc)) from None
    if caller.admin:
        return {"identity": f"admin:{caller.key_id}", "permissions": [_ADMIN]}
    return {"identity": f"tenant:{caller.tenant}", "permissions": [f"tier:{caller.tier}"]}


@auth.authenticate
async def _authenticate(headers: dict[bytes, bytes]) -> dict[str, Any]:
    return await asyncio.to_thread(_resolve, headers)


def _caller(ctx: Auth.types.AuthContext) -> Caller:
    if _ADMIN in ctx.permissions:
        return Caller(None, None)
    tier = next((p.removeprefix("tier:") for p in ctx.permissions if p.startswith("tier:")), None)
    return Caller(ctx.user.identity.removeprefix("tenant:"), tier)


def _check(caller: Caller, thread_id: Any) -> None:
    try:
        _tenancy.check(resolve_settings(), caller, str(thread_id))
    except Forbidden as exc:
        raise Auth.exceptions.HTTPException(status_code=403, detail=str(exc)) from None


@auth.on.threads.create
async def _thread_created(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    caller = _caller(ctx)
    thread_id = str(value["thread_id"])
    if not caller.admin:
        value.setdefault("metadata", {})["tenant"] = caller.tenant
    recorded = await asyncio.to_thread(_tenancy.record, resolve_settings(), thread_id, caller.owner)
    if not recorded:  # it exists: only its owner (or an admin) may use it again
        await asyncio.to_thread(_check, caller, thread_id)


@auth.on.threads.search
async def _threads_searched(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> dict[str, str] | None:
    caller = _caller(ctx)
    return None if caller.admin else {"tenant": caller.owner}  # filters on the thread's metadata


def _check_context(caller: Caller, kwargs: dict[str, Any] | None) -> None:
    """A tenant's run may set only the per-run settings its tier allows, as through the façade."""
    context = (kwargs or {}).get("context") or {}
    given = {name for name, value in context.items() if value is not None} - {"request_metadata"}
    if caller.admin or not given:
        return
    loaded = current_policy(resolve_settings())
    tier = loaded.tier(caller.tier) if loaded else None
    refused = sorted(given - set(tier.allowed_overrides if tier else ()))
    if refused:
        raise Auth.exceptions.HTTPException(
            status_code=403,
            detail=f"the {caller.tier or 'default'} tier may not set {', '.join(refused)} per run",
        )


@auth.on.threads
async def _thread_used(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Read, update, delete, and runs on a thread: its owner's, or an admin's."""
    caller = _caller(ctx)
    if ctx.action == "create_run":
        await asyncio.to_thread(_check_context, caller, value.get("kwargs"))
    thread_id = value.get("thread_id")
    if thread_id is None and not caller.admin:
        # A stateless run's thread is no one's: its turn would get the default tier, not the
        # tenant's. Tenants create a thread first.
        raise Auth.exceptions.HTTPException(status_code=403, detail="create a thread first, then run on it")
    if thread_id is not None:
        await asyncio.to_thread(_check, caller, thread_id)


@auth.on.assistants.read
async def _assistant_read(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    return None  # every key may run the graphs


@auth.on.assistants.search
async def _assistants_searched(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    return None


@auth.on
async def _admins_only(ctx: Auth.types.AuthContext, value: dict[str, Any]) -> None:
    """Everything else (assistants changed, crons, the store): admins only."""
    if not _caller(ctx).admin:
        raise Auth.exceptions.HTTPException(status_code=403, detail="only an admin key may do this")
