"""Load traces for simulation: seeded generators (diurnal, burst, ramp, spike, diurnal-burst) and CSV files.

A trace is per-minute requests/s over ``days`` days (``times`` in seconds from midnight UTC of day 0).
Every generator takes a ``seed`` and returns the same trace for the same arguments.

* ``diurnal``: a daily cycle between ``base`` (night) and ``peak`` (afternoon), with noise;
* ``burst``: a flat ``base`` with random bursts to ``peak`` (a few per day, 5-20 minutes each);
* ``ramp``: a linear ramp from ``base`` to ``peak`` over the trace;
* ``spike``: a flat ``base`` with one short spike to ``peak`` per day;
* ``diurnal-burst``: the diurnal cycle plus recurring daily bursts at fixed times (scheduled jobs, a
  daily campaign) and random ones.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from honed.errors import InvalidArgument

GENERATORS = ("diurnal", "burst", "ramp", "spike", "diurnal-burst")


@dataclass(frozen=True)
class Trace:
    name: str
    times: np.ndarray
    rates: np.ndarray

    @property
    def step_s(self) -> float:
        return float(self.times[1] - self.times[0]) if len(self.times) > 1 else 60.0


def _diurnal(minutes: np.ndarray, base: float, peak: float) -> np.ndarray:
    # Low at 04:00, high at 16:00; a squared cosine keeps the night flat and the ramp steep, like user traffic.
    phase = (minutes % 1440) / 1440.0
    shape = (0.5 - 0.5 * np.cos(2 * math.pi * (phase - 4 / 24))) ** 2
    return base + (peak - base) * shape


def _bursts(rng: np.random.Generator, n: int, per_day: float, base: float, peak: float) -> np.ndarray:
    out = np.zeros(n)
    count = rng.poisson(per_day * n / 1440)
    for _ in range(count):
        start = int(rng.integers(0, n))
        length = int(rng.integers(5, 21))
        height = float(rng.uniform(0.5, 1.0)) * (peak - base)
        out[start : start + length] += height
    return out


def generate(
    kind: str, *, days: float = 3.0, base: float = 50.0, peak: float = 400.0, seed: int = 0, noise: float = 0.05
) -> Trace:
    """A seeded synthetic trace; see the module docstring for the shapes."""
    if kind not in GENERATORS:
        raise InvalidArgument(f"unknown trace {kind!r}; built-in traces: {', '.join(GENERATORS)} (or a CSV path)")
    if days <= 0 or base < 0 or peak <= 0 or peak < base:
        raise InvalidArgument("trace needs days > 0 and 0 <= base <= peak, peak > 0")
    rng = np.random.default_rng(seed)
    n = max(2, round(days * 1440))
    minutes = np.arange(n, dtype=float)
    if kind == "diurnal":
        rates = _diurnal(minutes, base, peak)
    elif kind == "burst":
        rates = base + _bursts(rng, n, 6, base, peak)
    elif kind == "ramp":
        rates = base + (peak - base) * minutes / (n - 1)
    elif kind == "spike":
        rates = np.full(n, base)
        for day in range(math.ceil(days)):
            start = day * 1440 + int(rng.integers(8 * 60, 20 * 60))
            rates[start : start + 3] = peak
    else:
        diurnal_peak = base + 0.65 * (peak - base)
        rates = _diurnal(minutes, base, diurnal_peak)
        # Recurring daily bursts (a scheduled job at 09:30, a campaign at 13:00) and a few random ones.
        for day in range(math.ceil(days)):
            for at, length in ((9 * 60 + 30, 20), (13 * 60, 30)):
                s = day * 1440 + at
                rates[s : s + length] += 0.35 * (peak - base)
        rates = rates + _bursts(rng, n, 1, base, 0.6 * peak)
    rates = np.maximum(rates * (1 + noise * rng.standard_normal(n)), 0.0)
    return Trace(kind, minutes * 60.0, rates)


def from_csv(path: str | Path) -> Trace:
    from honed.plan.predictive import load_history

    times, rates = load_history(path)
    t = np.asarray(times, dtype=float)
    return Trace(Path(path).stem, t - t[0] + (t[0] % 86400), np.asarray(rates, dtype=float))


def resolve(spec: str, *, seed: int = 0, days: float = 3.0, base: float = 50.0, peak: float = 400.0) -> Trace:
    """A built-in generator name, or the path of a CSV trace."""
    if spec in GENERATORS:
        return generate(spec, days=days, base=base, peak=peak, seed=seed)
    if Path(spec).is_file():
        return from_csv(spec)
    raise InvalidArgument(f"trace {spec!r} is neither a built-in ({', '.join(GENERATORS)}) nor a CSV file")


def write_csv(trace: Trace, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = ["time_s,requests_per_s"] + [f"{t:.0f},{r:.3f}" for t, r in zip(trace.times, trace.rates, strict=True)]
    p.write_text("\n".join(lines) + "\n", encoding="utf-8")
    return p
