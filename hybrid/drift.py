"""Drift: the share of questions reaching the large model, and the share of small drafts the
verifier accepts, watched over the last `HYBRID_DRIFT_WINDOW` answered turns of each artefact
version in this process.

The band is what the serving version expects (its manifest's calibrated figures) plus or minus
`HYBRID_DRIFT_TOLERANCE`. Out of the band, `hybrid_drift{signal, version}` is 1 and a warning is
logged once (again when it comes back): this is the "spike in fallbacks to the large model" alarm.
The shares themselves are the `hybrid_large_share` and `hybrid_small_acceptance` gauges.
"""

from __future__ import annotations

import collections
import threading
from collections.abc import Mapping
from typing import Any

from hybrid import observability, registry
from hybrid.settings import Settings

_lock = threading.Lock()
_windows: dict[str, collections.deque[tuple[float, float | None]]] = {}
_expected: dict[str, dict[str, float | None]] = {}
_drifting: dict[tuple[str, str], bool] = {}


def _expectation(settings: Settings, version: str) -> dict[str, float | None]:
    """What the version's calibration expects of each signal (None: nothing to compare with)."""
    if version not in _expected:
        try:
            figures = (registry.manifest_of(settings, version).get("plan") or {}).get("expected") or {}
        except Exception:  # an unknown or pinned version: no band
            figures = {}

        def value(name: str) -> float | None:
            return (figures.get(name) or {}).get("value")

        delivered, started_large = value("small_delivered_share"), value("started_large_share")
        acceptance = None
        if delivered is not None and started_large is not None and started_large < 1:
            acceptance = delivered / (1 - started_large)
        _expected[version] = {"large_share": value("large_share"), "small_acceptance": acceptance}
    return _expected[version]


def observe(settings: Settings, values: Mapping[str, Any]) -> None:
    """Count one answered turn toward its version's window, and report drift."""
    version = ((values.get("route") or {}).get("versions") or {}).get("version") or "unknown"
    drafts = values.get("drafts") or []
    verifications = values.get("verifications") or []
    large = float(any(d["tier"] == "large" for d in drafts))
    small_checks = [v["passed"] for v in verifications if v["tier"] == "small"]
    accepted = float(small_checks[0]) if small_checks else None
    with _lock:
        window = _windows.setdefault(version, collections.deque(maxlen=settings.drift_window))
        window.append((large, accepted))
        shares = {
            "large_share": sum(w[0] for w in window) / len(window),
            "small_acceptance": _mean([w[1] for w in window if w[1] is not None]),
        }
        full = len(window) >= settings.drift_window
    observability.LARGE_SHARE.labels(version).set(shares["large_share"])
    if shares["small_acceptance"] is not None:
        observability.SMALL_ACCEPTANCE.labels(version).set(shares["small_acceptance"])
    if not full:
        return
    expected = _expectation(settings, version)
    for signal, value in shares.items():
        centre = expected.get(signal)
        if centre is None or value is None:
            continue
        out = abs(value - centre) > settings.drift_tolerance
        observability.DRIFT.labels(signal, version).set(float(out))
        with _lock:
            was = _drifting.get((signal, version), False)
            _drifting[(signal, version)] = out
        if out != was:
            observability.logger.warning(
                "%s of version %s is %.2f over the last %d answers; %s %.2f ± %.2f",
                signal.replace("_", " "),
                version,
                value,
                settings.drift_window,
                "outside its band" if out else "back inside its band",
                centre,
                settings.drift_tolerance,
            )


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def reset() -> None:
    with _lock:
        _windows.clear()
        _expected.clear()
        _drifting.clear()
