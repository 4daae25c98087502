"""Who is asking: an API key resolved to a tenant, its service tier, or an admin.

Keys are stored as SHA-256 hashes (`sha256:<hex>`): a key is a long random token, so its hash
reveals nothing and a leaked policy file grants nothing. `HYBRID_API_KEYS` (plain keys) stay what
they were before policies: keys that see everything, i.e. admin keys.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass

from hybrid.errors import Forbidden, Unauthenticated
from hybrid.policy.loading import current_policy
from hybrid.settings import Settings


def hash_key(key: str) -> str:
    """The form a key is listed in a policy file."""
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()


def new_key() -> tuple[str, str]:
    """A fresh random key and its hash."""
    key = "hy-" + secrets.token_urlsafe(32)
    return key, hash_key(key)


@dataclass(frozen=True)
class Caller:
    """The identity a request acts as."""

    tenant: str | None
    """The tenant whose data it sees; None: every tenant's (an admin, or no keys configured)."""
    tier: str | None
    """Its service tier (a tenant's, or the policy's default tier)."""
    key_id: str | None = None
    """A short, non-secret id of the key (the start of its hash): rate limits and logs."""

    @property
    def admin(self) -> bool:
        return self.tenant is None

    @property
    def owner(self) -> str:
        """What the conversations it starts are recorded as belonging to ("" for no tenant)."""
        return self.tenant or ""

    def describe(self) -> str:
        return f"tenant {self.tenant} ({self.tier} tier)" if self.tenant else "admin"


def keys_configured(settings: Settings) -> bool:
    """Whether requests must present a key (any in `HYBRID_API_KEYS` or the policy file)."""
    loaded = current_policy(settings)
    return bool(settings.api_key_list) or bool(loaded and loaded.has_keys)


def operator(settings: Settings) -> Caller:
    """The caller of in-process code (the Python API, the CLI) that gives no key: it already holds
    the database, so it sees everything; its questions get the policy's default tier."""
    loaded = current_policy(settings)
    return Caller(None, loaded.policy.default_tier if loaded else None)


def authenticate(settings: Settings, key: str | None) -> Caller:
    """The caller a key stands for. No key: the operator (in-process callers; `hybrid serve`
    refuses requests without one when keys are configured). An unknown key raises
    `Unauthenticated`."""
    if key is None:
        return operator(settings)
    loaded = current_policy(settings)
    digest = hash_key(key)
    key_id = digest[7:19]
    if loaded is not None:
        # Looked up by hash: what the lookup's timing could reveal is about hashes, not keys.
        found = loaded.keys.get(digest)
        if found is not None:
            tenant, admin = found
            tier = loaded.policy.default_tier if admin else loaded.tier_of(tenant)
            return Caller(None if admin else tenant, tier, key_id)
    # As bytes: compare_digest refuses str with non-ASCII characters (a TypeError, a 500).
    if any(hmac.compare_digest(key.encode(), plain.encode()) for plain in settings.api_key_list):
        return Caller(None, loaded.policy.default_tier if loaded else None, key_id)
    raise Unauthenticated("invalid API key")


def require_admin(caller: Caller, what: str) -> None:
    if not caller.admin:
        raise Forbidden(f"only an admin key may {what}")
