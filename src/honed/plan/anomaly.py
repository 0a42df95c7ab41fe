"""Anomaly detection on load and latency: the modified z-score on the median absolute deviation.

``M = 0.6745 * (x - median) / MAD`` over a trailing window (Iglewicz and Hoaglin); ``|M| > 3.5`` is an
anomaly. When the MAD is zero the mean absolute deviation stands in (scaled by 1.253314); when that is zero
too, any value off the median is anomalous. A detector may floor the MAD at a fraction of the median so a
nearly constant series (a latency with little jitter) does not flag changes too small to matter.
An anomaly freezes scale-in for a hold period; the autoscaling policy reports every one.

:func:`deseasonalized` removes a recurring pattern (STL, robust to outliers) from a series at least two seasons
long, so a daily peak is not an anomaly while a step or a spike still is.
"""

from __future__ import annotations

import math
import statistics
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

THRESHOLD = 3.5


def modified_z(history: Sequence[float], value: float, mad_floor: float = 0.0) -> float:
    """The modified z-score of ``value`` against ``history`` (0.0 for an empty history).

    ``mad_floor`` (a fraction of |median|) keeps a nearly constant series from flagging tiny changes.
    """
    if not history:
        return 0.0
    med = statistics.median(history)
    mad = max(statistics.median(abs(v - med) for v in history), mad_floor * abs(med))
    if mad > 0:
        return 0.6745 * (value - med) / mad
    mean_ad = sum(abs(v - med) for v in history) / len(history)
    if mean_ad > 0:
        return (value - med) / (1.253314 * mean_ad)
    return 0.0 if value == med else math.copysign(math.inf, value - med)


@dataclass
class AnomalyDetector:
    """Trailing-window detector over one series; :meth:`observe` returns the score and whether it is anomalous."""

    window: int = 60
    min_history: int = 10
    threshold: float = THRESHOLD
    mad_floor: float = 0.0
    values: deque[float] = field(default_factory=deque)

    def observe(self, value: float) -> tuple[float, bool]:
        score = modified_z(list(self.values), value, self.mad_floor) if len(self.values) >= self.min_history else 0.0
        self.values.append(value)
        while len(self.values) > self.window:
            self.values.popleft()
        return score, abs(score) > self.threshold


SEASON_POINTS = 96
"""The pattern is estimated on at most this many points a season (block means), as STL's cost grows with it."""


def deseasonalized(values: Sequence[float], period: int | None) -> list[float]:
    """``values`` minus their seasonal component (robust STL) when two full ``period``-point seasons exist.

    Each season from the third on is adjusted with the seasonal pattern STL finds in the seasons before it,
    so a step late in the series cannot bend the pattern it is judged against; the first two seasons are
    adjusted with their own. A long season is estimated on block means (:data:`SEASON_POINTS` a season).
    Shorter series, or ``period`` under 2, come back unchanged.
    """
    if not period or period < 2 or len(values) < 2 * period:
        return list(values)
    from statsmodels.tsa.seasonal import STL

    block = math.ceil(period / SEASON_POINTS)

    def pattern(upto: int) -> list[float]:
        coarse = [statistics.fmean(values[j : j + block]) for j in range(0, upto - block + 1, block)]
        result: Any = STL(coarse, period=max(2, round(period / block)), robust=True).fit()
        seasonal = [float(x) for x in result.seasonal]
        return [seasonal[min(i // block, len(seasonal) - 1)] for i in range(upto)]

    first = pattern(2 * period)
    out = [float(v) - first[i] for i, v in enumerate(values[: 2 * period])]
    for start in range(2 * period, len(values), period):
        last = pattern(start)[-period:]
        out.extend(float(v) - last[i] for i, v in enumerate(values[start : start + period]))
    return out
