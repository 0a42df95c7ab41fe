"""Anomalies in the serving fleet's live series: request rate, error ratio and p99 latency per model and version.

The detectors are the simulator's (:mod:`honed.plan.anomaly`): a trailing-window modified z-score on the MAD
(floored at a fraction of the median, so a nearly constant series does not flag changes too small to matter),
judged on the series with its season removed (robust STL) once the window holds two seasons. Consecutive
anomalous points are one :class:`Anomaly`: when it started and ended, the value that deviated most, the
baseline it deviated from (the window's median just before) and its score. Request rate counts both ways (a
jump and a drop); the error ratio and p99 only upwards (getting better is no alarm).
"""

from __future__ import annotations

import math
import statistics
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from honed.errors import InvalidArgument
from honed.fields import as_dict
from honed.plan.anomaly import THRESHOLD, AnomalyDetector, deseasonalized
from honed.plan.prometheus import MODEL_LABELS, PrometheusReader, Series


@dataclass(frozen=True)
class SeriesRule:
    """How one kind of series is judged."""

    name: str
    unit: str
    upward_only: bool
    mad_floor: float
    """Fraction of the median the MAD is floored at."""
    min_change: float
    """An absolute change from the baseline below this is never an anomaly (in ``unit``)."""


RULES = {
    "request_rate": SeriesRule("request_rate", "req/s", upward_only=False, mad_floor=0.05, min_change=0.0),
    "error_ratio": SeriesRule("error_ratio", "fraction", upward_only=True, mad_floor=0.05, min_change=0.01),
    "p99_ms": SeriesRule("p99_ms", "ms", upward_only=True, mad_floor=0.05, min_change=0.0),
}


@dataclass(frozen=True)
class Anomaly:
    """One run of consecutive anomalous points of one series."""

    series: str
    model: str
    version: str
    start: float
    end: float
    """Unix seconds of the first and last anomalous point."""
    at: float
    """When the value deviated most."""
    value: float
    baseline: float
    modified_z: float
    points: int
    unit: str

    @property
    def change(self) -> float:
        """value / baseline - 1 (inf from a zero baseline)."""
        if self.baseline == 0:
            return math.copysign(math.inf, self.value) if self.value else 0.0
        return self.value / self.baseline - 1.0

    def to_dict(self) -> dict[str, Any]:
        change, z = self.change, self.modified_z
        return as_dict(self) | {
            "value": round(self.value, 6),
            "baseline": round(self.baseline, 6),
            "change": round(change, 4) if math.isfinite(change) else None,
            "modified_z": round(z, 2) if math.isfinite(z) else None,
        }


@dataclass(frozen=True)
class AnomalyReport:
    """What ``honed plan anomalies`` found over a window."""

    prometheus: str
    since_s: float
    step_s: float
    season_s: float
    until: float
    """Unix seconds the window ends at."""
    checked: tuple[str, ...]
    """``series model/version`` of every series judged."""
    anomalies: tuple[Anomaly, ...]

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self) | {"threshold": THRESHOLD}


def detect(
    times: Sequence[float],
    values: Sequence[float],
    rule: SeriesRule,
    *,
    model: str = "",
    version: str = "",
    window: int = 60,
    min_history: int = 10,
    season_points: int | None = None,
) -> list[Anomaly]:
    """The anomalies of one series (sample times and values), judged by ``rule``."""
    if len(times) != len(values):
        raise InvalidArgument("a series needs as many times as values")
    adjusted = deseasonalized(values, season_points)
    detector = AnomalyDetector(window=window, min_history=min_history, mad_floor=rule.mad_floor)
    runs: list[Anomaly] = []
    current: Anomaly | None = None
    for t, raw, value in zip(times, values, adjusted, strict=True):
        baseline = statistics.median(detector.values) if detector.values else value
        score, flagged = detector.observe(value)
        flagged = flagged and (score > 0 or not rule.upward_only) and abs(value - baseline) >= rule.min_change
        if not flagged:
            if current is not None:
                runs.append(current)
                current = None
            continue
        if current is None:
            # The baseline in the raw series' terms: the adjusted median plus this point's seasonal part.
            current = Anomaly(rule.name, model, version, t, t, t, raw, baseline + (raw - value), score, 1, rule.unit)
        else:
            worse = abs(score) > abs(current.modified_z)
            current = Anomaly(
                rule.name,
                model,
                version,
                current.start,
                t,
                t if worse else current.at,
                raw if worse else current.value,
                current.baseline,
                score if worse else current.modified_z,
                current.points + 1,
                rule.unit,
            )
    if current is not None:
        runs.append(current)
    return runs


def _ratio(errors: list[Series], requests: list[Series]) -> list[Series]:
    """Failed / answered requests per step, where any were answered."""
    err = {s.key(*MODEL_LABELS): dict(zip(s.times, s.values, strict=True)) for s in errors}
    out = []
    for s in requests:
        failed = err.get(s.key(*MODEL_LABELS), {})
        pairs = [(t, failed.get(t, 0.0) / v) for t, v in zip(s.times, s.values, strict=True) if v > 0]
        out.append(Series(s.labels, tuple(t for t, _ in pairs), tuple(r for _, r in pairs)))
    return out


def _ms(series: list[Series]) -> list[Series]:
    return [Series(s.labels, s.times, tuple(v * 1000.0 for v in s.values)) for s in series]


def live_anomalies(
    reader: PrometheusReader,
    *,
    since_s: float,
    season_s: float = 86400.0,
    window: int = 60,
    models: Sequence[str] = (),
    until: float | None = None,
) -> AnomalyReport:
    """Judge every model's request rate, error ratio and p99 over the ``since_s`` seconds up to ``until`` (now)."""
    _, end, step = reader.window(since_s, end=until)
    # One end and one step for every query, so the series' samples fall on the same timestamps.
    requests = reader.request_rates(since_s, step_s=step, end=end)
    found: dict[str, list[Series]] = {
        "request_rate": requests,
        "error_ratio": _ratio(reader.error_rates(since_s, step_s=step, end=end), requests),
        "p99_ms": _ms(reader.latency_quantiles(0.99, since_s, step_s=step, end=end)),
    }
    season_points = round(season_s / step) if season_s > 0 else None
    checked: list[str] = []
    anomalies: list[Anomaly] = []
    by_name: dict[str, int] = defaultdict(int)
    for name, series in found.items():
        for s in sorted(series, key=lambda s: s.key(*MODEL_LABELS)):
            if models and s.model not in models:
                continue
            by_name[s.model] += 1
            checked.append(f"{name} {s.model}/{s.version}")
            anomalies.extend(
                detect(
                    s.times,
                    s.values,
                    RULES[name],
                    model=s.model,
                    version=s.version,
                    window=window,
                    season_points=season_points,
                )
            )
    missing = [m for m in models if not by_name.get(m)]
    if missing:
        raise InvalidArgument(
            f"Prometheus at {reader.url} has no series of model(s) {', '.join(missing)} over the last {since_s:g} s"
        )
    anomalies.sort(key=lambda a: (a.start, a.series, a.model, a.version))
    return AnomalyReport(reader.url, since_s, step, season_s, end, tuple(checked), tuple(anomalies))
