"""Summary statistics the benchmarks share."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def percentile(values: Sequence[float], q: float) -> float:
    """numpy's percentile (`q` in [0, 100], linear interpolation); 0.0 for no values."""
    return float(np.percentile(values, q)) if len(values) else 0.0
