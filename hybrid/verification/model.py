"""The calibrated combiner: a logistic regression over the signals, P(answer is good), with reasons.

The artifact is one JSON file, `verifier.json`, in a folder (no pickle, no arrays file: 18
coefficients): version, feature names, coefficients and intercept over standardised features,
the means and scales of that standardisation, the training data and labelling rule, out-of-fold
metrics and the calibrated threshold. scikit-learn is needed to train (`training.py`), numpy alone
to score.

A signal that is missing for a draft (see `features`) takes the training mean, so it contributes
nothing, and its indicator feature carries whatever the training data taught about such drafts (a
weight of 0 when the training data had none: then the reasons say the signal was not measured).

Some checks are rules rather than weights, because they are certain or the training data cannot
teach them: a failed model call or an empty answer scores 0; a recomputed arithmetic result that
the answer lacks caps the score at `ARITHMETIC_WRONG_CAP`, and one it contains lifts it to at
least `ARITHMETIC_RIGHT_FLOOR`.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from hybrid import filecache
from hybrid.filecache import FileCache, mtimes
from hybrid.verification.features import DESCRIPTIONS, FEATURE_NAMES, Signals

ARTIFACT_VERSION = 1
ARITHMETIC_WRONG_CAP = 0.02
ARITHMETIC_RIGHT_FLOOR = 0.9
SCORE_DEFINITION = (
    "p_good = sigmoid(intercept + sum(coef * (x - mean) / scale)); a missing signal takes its mean; "
    "rules: model error or empty answer -> 0, wrong arithmetic -> at most 0.02, right arithmetic -> "
    "at least 0.9"
)
THRESHOLD_SEMANTICS = (
    "threshold.value is compared with p_good: at or above it the small model's draft is accepted. "
    "`hybrid verifier calibrate` chooses it on out-of-fold scores for a target precision or a "
    "maximum share of rejected drafts."
)


@dataclass(frozen=True)
class VerifierScore:
    """The learned verifier's judgement of one draft's signals."""

    p_good: float
    """Calibrated probability that the draft is a good answer."""
    contributions: list[tuple[str, float, bool]]
    """(feature, log-odds contribution, value above the training mean) of every measured feature,
    largest contribution first."""
    missing: list[str]
    """Features that could not be measured (they took the training mean)."""


class VerifierModel:
    """A trained verifier. Build with `training.fit_verifier` or `load`."""

    def __init__(self, meta: Mapping[str, Any]) -> None:
        self.meta = dict(meta)
        self.feature_names: tuple[str, ...] = tuple(self.meta["feature_names"])
        self.coef = np.asarray(self.meta["coefficients"], dtype=np.float64)
        self.intercept = float(self.meta["intercept"])
        self.means = np.asarray(self.meta["means"], dtype=np.float64)
        self.scales = np.asarray(self.meta["scales"], dtype=np.float64)
        if not (len(self.coef) == len(self.means) == len(self.scales) == len(self.feature_names)):
            raise ValueError("verifier.json: coefficients, means, scales and feature_names differ in length")
        unknown = sorted(set(self.feature_names) - set(FEATURE_NAMES))
        if unknown:
            raise ValueError(f"verifier.json: features this code does not compute: {', '.join(unknown)}")

    @property
    def covers_no_context(self) -> bool:
        """Whether the training data held drafts without retrieved passages (else they are out of
        the domain the model was calibrated on)."""
        data = self.meta.get("training_data") or {}
        return bool(data.get("without_passages", 0))

    @property
    def covers_no_logprobs(self) -> bool:
        """Whether the training data held drafts without token log-probabilities."""
        data = self.meta.get("training_data") or {}
        if "without_logprobs" in data:  # answers only (artefacts from before counted empty drafts)
            return int(data["without_logprobs"]) > 0
        return int(data.get("with_logprobs", 0)) < int(data.get("rows", 0))

    @property
    def threshold(self) -> float | None:
        """The calibrated acceptance threshold on p_good, None until calibrated."""
        record = self.meta.get("threshold")
        return float(record["value"]) if isinstance(record, dict) else None

    def matrix(self, rows: Sequence[Mapping[str, float | None]]) -> np.ndarray:
        """Feature matrix of signal dicts, missing values replaced by the training means."""
        x = np.empty((len(rows), len(self.feature_names)))
        for i, values in enumerate(rows):
            for j, name in enumerate(self.feature_names):
                value = values.get(name)
                x[i, j] = self.means[j] if value is None else float(value)
        return x

    def logits(self, x: np.ndarray) -> np.ndarray:
        """Log-odds of a good answer for rows of the feature matrix."""
        return self.intercept + ((x - self.means) / self.scales) @ self.coef

    def p_good(self, rows: Sequence[Mapping[str, float | None]]) -> np.ndarray:
        """P(good) for signal dicts (no rules applied)."""
        return 1.0 / (1.0 + np.exp(-self.logits(self.matrix(rows))))

    def score(self, signals: Signals) -> VerifierScore:
        """P(good) of one draft's signals and what moved it."""
        x = self.matrix([signals.values])[0]
        parts = ((x - self.means) / self.scales) * self.coef
        logit = self.intercept + float(parts.sum())
        missing = [n for n in self.feature_names if signals.values.get(n) is None]
        contributions = sorted(
            (
                (n, float(c), bool(v > m))
                for n, c, v, m in zip(self.feature_names, parts, x, self.means, strict=True)
                if n not in missing
            ),
            key=lambda item: -abs(item[1]),
        )
        return VerifierScore(1.0 / (1.0 + math.exp(-logit)), contributions, missing)

    # -- storage ------------------------------------------------------------------------------

    def save(self, folder: Path) -> Path:
        """Write `verifier.json` into `folder` (created)."""
        folder = Path(folder)
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / "verifier.json"
        target.write_text(json.dumps(self.meta, indent=1) + "\n")
        filecache.forget(folder)
        return target

    @classmethod
    def load(cls, folder: Path) -> VerifierModel:
        """The verifier saved in `folder`, read once per process (again when the file changes)."""
        path = Path(folder) / "verifier.json"
        return _LOADED.get(Path(folder), lambda: mtimes(path), lambda: cls._read(path))

    @classmethod
    def _read(cls, path: Path) -> VerifierModel:
        meta = json.loads(path.read_text())
        if meta.get("version") != ARTIFACT_VERSION:
            raise ValueError(
                f"{path}: verifier artifact version {meta.get('version')}, expected {ARTIFACT_VERSION}"
            )
        return cls(meta)

    def with_meta(self, **changes: Any) -> VerifierModel:
        """The same model with some `verifier.json` fields changed (e.g. a calibrated threshold)."""
        return VerifierModel({**self.meta, **changes})


_LOADED: FileCache[VerifierModel] = FileCache()


def describe(name: str, contribution: float, above_mean: bool) -> str:
    """What was measured, in words, and how it moved the score (log-odds, signed)."""
    high, low = DESCRIPTIONS.get(name, (f"high {name}", f"low {name}"))
    return f"{high if above_mean else low} {contribution:+.2f}"
