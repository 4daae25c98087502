"""The registry of router and verifier versions: which artefacts decide a request, and why.

A version is one tuned set: a router and a verifier for each tier, with a manifest saying what it
was trained on (data, labels, the model specs of each tier), its expected metrics and who made
it. Versions live in the database (`hybrid_artifact_versions`, the folder packed as a tar.gz), so
every replica sharing the database sees the same ones; a process unpacks a version it serves
once, under `<data dir>/registry/<version>/`.

What serves a request, in order:

1. a folder set explicitly (`HYBRID_ROUTER_PATH`, `HYBRID_VERIFIER_PATH`,
   `HYBRID_LARGE_VERIFIER_PATH`) for that component;
2. `HYBRID_ARTIFACTS_VERSION`, a version pinned by configuration;
3. the canary, for its share of conversations (chosen by a hash of the conversation id, so a
   conversation stays on one version);
4. the promoted version;
5. `shipped`: the artefacts installed with the package (the repository's `data/`).

Promotions, canaries and rollbacks are events (`hybrid_artifact_events`), so the history says who
did what and when. A version whose artefacts were calibrated for other models than the ones
configured is stale: every route explanation says so, with the fix (`hybrid tune`).
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import re
import shutil
import tarfile
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import sqlalchemy as sa

from hybrid.database import artifact_events, artifact_versions, database_for
from hybrid.errors import HybridError
from hybrid.filecache import FileCache, mtimes
from hybrid.settings import Settings, shipped

SHIPPED = "shipped"
COMPONENTS = ("router", "small", "large")
_FOLDERS = {"router": "router", "small": "verifier-small", "large": "verifier-large"}
_SHIPPED_FOLDERS = {"router": "router/default", "small": "verifier/default", "large": "verifier/large"}
_VERSION = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}$")


class RegistryError(HybridError):
    """A registry operation that cannot be done: an unknown version, nothing to roll back to."""


@dataclass(frozen=True)
class ArtifactSet:
    """The artefacts deciding one request, where they came from, and whether they fit the models."""

    version: str
    paths: dict[str, str | None]
    """Folder of each component (`router`, `small`, `large`); None: that tier's heuristic."""
    origin: str
    """pinned (explicit folders), configured (HYBRID_ARTIFACTS_VERSION), canary, promoted or shipped."""
    calibrated_for: dict[str, str | None] = field(default_factory=dict)
    """The model spec each component was trained on (router: `small -> large`)."""
    stale: tuple[str, ...] = ()
    """Why the artefacts may not fit the configured models, one reason per component."""
    labels: dict[str, str] = field(default_factory=dict)
    """How reasons name each component: its version, or the folder's name when set explicitly."""

    def path(self, component: str) -> Path | None:
        value = self.paths.get(component)
        return Path(value) if value else None

    def record(self) -> dict[str, Any]:
        """What the route decision, the audit row and the answer carry."""
        return {
            "version": self.version,
            "origin": self.origin,
            "canary": self.origin == "canary",
            "paths": dict(self.paths),
            "calibrated_for": dict(self.calibrated_for),
            "stale": list(self.stale),
            "labels": dict(self.labels),
        }


# ---------------------------------------------------------------------------------------------
# What an artefact folder says about itself
# ---------------------------------------------------------------------------------------------


def _meta(folder: Path | None, name: str) -> dict[str, Any]:
    if folder is None:
        return {}
    try:
        return json.loads((folder / name).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}


def calibrated_for(component: str, folder: Path | None) -> str | None:
    """The model spec(s) a router or verifier folder records having been trained on."""
    if folder is None:
        return None
    description = folder / ("router.json" if component == "router" else "verifier.json")
    try:
        return _calibration.get(
            description, lambda: mtimes(description), lambda: _calibrated(component, description)
        )
    except OSError:  # no description: trained on nothing we can name
        return None


def _calibrated(component: str, description: Path) -> str | None:
    meta = _meta(description.parent, description.name)
    if component == "router":
        models = meta.get("models") or {}
        if models.get("small") and models.get("large"):
            return f"{models['small']} -> {models['large']}"
        return None
    return meta.get("model")


_calibration: FileCache[str | None] = FileCache()


def staleness(calibration: Mapping[str, str | None], settings: Settings) -> tuple[str, ...]:
    """Reasons the artefacts do not fit the configured models (empty when they do)."""
    serving = {"small": settings.small_spec, "large": settings.large_spec}
    reasons = []
    for component, trained in calibration.items():
        if component == "router":
            wanted = f"{serving['small']} -> {serving['large']}"
            what = "router"
        else:
            wanted = serving[component]
            what = f"{component}-tier verifier"
        if trained is None:
            reasons.append(f"{what}: not calibrated for any model pair we know of (serving {wanted})")
        elif trained != wanted:
            reasons.append(f"{what} calibrated for {trained}, serving {wanted}")
    return tuple(reasons)


def _folder_or_none(path: Path) -> Path | None:
    return path if path.is_dir() and any(path.iterdir()) else None


@functools.cache
def shipped_paths() -> dict[str, Path | None]:
    """The artefacts installed with the package."""
    return {component: _folder_or_none(shipped(name)) for component, name in _SHIPPED_FOLDERS.items()}


# ---------------------------------------------------------------------------------------------
# State: versions and events, read through a short cache
# ---------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class State:
    current: str
    current_event: dict[str, Any] | None
    canary: tuple[str, float] | None
    history: tuple[str, ...]
    """Promoted versions, oldest first (the last is current)."""


_state_cache: dict[str, tuple[float, State]] = {}
_cache_lock = threading.Lock()


def _events(settings: Settings) -> list[dict[str, Any]]:
    with database_for(settings).engine.connect() as connection:
        rows = connection.execute(sa.select(artifact_events).order_by(artifact_events.c.id)).all()
    return [dict(row._mapping) for row in rows]


def _fold(events: list[dict[str, Any]]) -> State:
    stack: list[str] = []
    current_event = None
    canary: tuple[str, float] | None = None
    for event in events:
        action = event["action"]
        if action == "promote":
            stack.append(event["version"])
            current_event, canary = event, None
        elif action == "rollback":
            if stack:
                stack.pop()
            current_event, canary = event, None
        elif action == "canary":
            canary = (event["version"], float(event["share"] or 0.0))
        elif action == "canary_stop":
            canary = None
    return State(stack[-1] if stack else SHIPPED, current_event, canary, tuple(stack))


def state(settings: Settings, *, fresh: bool = False) -> State:
    """The registry's state, re-read at most every `registry_refresh_s` seconds per process."""
    key = settings.checkpoint_url or str(settings.database_path)
    now = time.monotonic()
    with _cache_lock:
        cached = _state_cache.get(key)
        if cached and not fresh and now - cached[0] < settings.registry_refresh_s:
            return cached[1]
    folded = _fold(_events(settings))
    with _cache_lock:
        _state_cache[key] = (now, folded)
    return folded


def forget_state() -> None:
    with _cache_lock:
        _state_cache.clear()


# ---------------------------------------------------------------------------------------------
# Versions
# ---------------------------------------------------------------------------------------------


def _pack(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.add(path, arcname=str(path.relative_to(folder)))
    return buffer.getvalue()


def _manifest(folder: Path) -> dict[str, Any]:
    return _meta(folder, "manifest.json")


def new_version_id(settings: Settings) -> str:
    """The next free `vN`."""
    taken = {v["version"] for v in versions(settings)}
    number = 1
    while f"v{number}" in taken:
        number += 1
    return f"v{number}"


def add_version(
    settings: Settings, folder: Path, *, version: str | None = None, actor: str = "anonymous"
) -> str:
    """Store a tuned folder (router/, verifier-small/, verifier-large/, manifest.json) as a new version."""
    folder = Path(folder)
    if not (folder / "manifest.json").is_file():
        raise RegistryError(f"{folder} has no manifest.json: not a tuned artefact set")
    version = version or new_version_id(settings)
    if not _VERSION.match(version) or version == SHIPPED:
        raise RegistryError(f"{version!r} is not a usable version name")
    manifest = {**_manifest(folder), "version": version}
    values = {
        "version": version,
        "created_at": datetime.now(UTC),
        "created_by": actor,
        "manifest": manifest,
        "archive": _pack(folder),
    }
    with database_for(settings).engine.begin() as connection:
        exists = connection.execute(
            sa.select(artifact_versions.c.version).where(artifact_versions.c.version == version)
        ).first()
        if exists:
            raise RegistryError(f"version {version} already exists")
        connection.execute(sa.insert(artifact_versions).values(**values))
    return version


def versions(settings: Settings) -> list[dict[str, Any]]:
    """Every stored version (without its archive), oldest first."""
    columns = [c for c in artifact_versions.c if c.name != "archive"]
    with database_for(settings).engine.connect() as connection:
        rows = connection.execute(sa.select(*columns).order_by(artifact_versions.c.created_at)).all()
    return [dict(row._mapping) for row in rows]


def manifest_of(settings: Settings, version: str) -> dict[str, Any]:
    """A version's manifest (the shipped one's comes from the package)."""
    if version == SHIPPED:
        recorded = _meta(shipped("."), "manifest.json")  # written when the defaults were tuned
        return {
            **recorded,
            "version": SHIPPED,
            "calibrated_for": {c: calibrated_for(c, p) for c, p in shipped_paths().items()},
            "trained_on": recorded.get("trained_on")
            or "see data/router/default/README.md and data/verifier/*/README.md",
        }
    with database_for(settings).engine.connect() as connection:
        row = connection.execute(
            sa.select(artifact_versions.c.manifest).where(artifact_versions.c.version == version)
        ).first()
    if row is None:
        raise RegistryError(f"no version {version!r} in the registry (hybrid tune list shows them)")
    return dict(row.manifest)


def version_folder(settings: Settings, version: str) -> Path:
    """A version's artefacts on this machine, unpacked from the database the first time."""
    target = settings.data_dir / "registry" / version
    if (target / "manifest.json").is_file():
        return target
    with database_for(settings).engine.connect() as connection:
        row = connection.execute(
            sa.select(artifact_versions.c.archive).where(artifact_versions.c.version == version)
        ).first()
    if row is None:
        raise RegistryError(f"no version {version!r} in the registry (hybrid tune list shows them)")
    partial = target.with_name(f".{version}.{hashlib.sha256(str(time.time_ns()).encode()).hexdigest()[:8]}")
    partial.mkdir(parents=True)
    with tarfile.open(fileobj=io.BytesIO(row.archive), mode="r:gz") as archive:
        archive.extractall(partial, filter="data")
    try:
        partial.rename(target)
    except OSError:  # another process unpacked it first
        shutil.rmtree(partial, ignore_errors=True)
    return target


def version_paths(settings: Settings, version: str) -> dict[str, Path | None]:
    """Each component's folder in a version (shipped: the package's; None: that tier has none)."""
    if version == SHIPPED:
        return shipped_paths()
    folder = version_folder(settings, version)
    return {c: _folder_or_none(folder / name) for c, name in _FOLDERS.items()}


def _record_event(settings: Settings, action: str, version: str, actor: str, **extra: Any) -> None:
    with database_for(settings).engine.begin() as connection:
        connection.execute(
            sa.insert(artifact_events).values(
                at=datetime.now(UTC), action=action, version=version, actor=actor, **extra
            )
        )
    forget_state()


def _known(settings: Settings, version: str) -> None:
    if version != SHIPPED:
        manifest_of(settings, version)  # raises for an unknown version


def promote(settings: Settings, version: str, *, actor: str, reason: str | None = None) -> None:
    """Make `version` serve every request (it also ends any canary)."""
    _known(settings, version)
    _record_event(settings, "promote", version, actor, reason=reason)


def rollback(settings: Settings, *, actor: str, reason: str | None = None) -> str:
    """Serve the version that was current before the latest promotion; returns it."""
    current = state(settings, fresh=True)
    if not current.history:
        raise RegistryError("nothing to roll back: no version was ever promoted (shipped serves)")
    _record_event(settings, "rollback", current.current, actor, reason=reason)
    return state(settings, fresh=True).current


def start_canary(settings: Settings, version: str, share: float, *, actor: str) -> None:
    """Serve `version` to `share` of conversations (the promoted version serves the rest)."""
    if not 0 < share <= 1:
        raise RegistryError(f"a canary share is in (0, 1], not {share}")
    _known(settings, version)
    _record_event(settings, "canary", version, actor, share=share)


def stop_canary(settings: Settings, *, actor: str) -> None:
    canary = state(settings, fresh=True).canary
    if canary is None:
        raise RegistryError("no canary is running")
    _record_event(settings, "canary_stop", canary[0], actor)


def history(settings: Settings) -> list[dict[str, Any]]:
    """Every promotion, canary and rollback, oldest first."""
    return _events(settings)


# ---------------------------------------------------------------------------------------------
# Resolution per request
# ---------------------------------------------------------------------------------------------


def in_canary(key: str, share: float) -> bool:
    """Whether a conversation falls in a canary's share (stable: the same id, the same answer)."""
    bucket = int(hashlib.sha256(key.encode()).hexdigest()[:8], 16) / 0xFFFFFFFF
    return bucket < share


def _chosen_version(settings: Settings, key: str | None) -> tuple[str, str]:
    if settings.artifacts_version:
        return settings.artifacts_version, "configured"
    current = state(settings)
    if current.canary and key and in_canary(key, current.canary[1]):
        return current.canary[0], "canary"
    return current.current, "shipped" if current.current == SHIPPED else "promoted"


def resolve(settings: Settings, key: str | None = None) -> ArtifactSet:
    """The artefacts that decide a request of conversation `key`."""
    explicit = {
        "router": settings.router_path,
        "small": settings.verifier_path,
        "large": settings.large_verifier_path,
    }
    if all(explicit.values()):
        version, origin, paths = "pinned", "pinned", dict(explicit)
    else:
        version, origin = _chosen_version(settings, key)
        try:
            paths = version_paths(settings, version)
        except RegistryError:
            if origin == "configured":
                raise
            version, origin, paths = SHIPPED, "shipped", shipped_paths()
        paths = {c: explicit[c] or paths[c] for c in COMPONENTS}
        if any(explicit.values()):
            origin = f"{origin}, partly pinned"
    calibration = {c: calibrated_for(c, paths[c]) for c in COMPONENTS if paths[c] is not None}
    labels = {c: explicit[c].name if explicit[c] else version for c in COMPONENTS}  # type: ignore[union-attr]
    return ArtifactSet(
        labels=labels,
        version=version,
        paths={c: str(p) if p else None for c, p in paths.items()},
        origin=origin,
        calibrated_for=calibration,
        stale=staleness(calibration, settings),
    )
