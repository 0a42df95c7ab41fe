"""A canary rollout's settings, its per-interval observations, and the decision each interval takes.

Everything here is pure: :func:`decide` is a function of (progress so far, one interval's observation, settings,
the time), so the rules are tested over generated scenarios with a fake clock. The rules, in order:

1. Too little data is *inconclusive* and the step holds, never advances: fewer than ``min_requests`` canary
   requests, fewer than ``min_requests`` production requests when the p99 ratio is checked, or fewer than
   ``min_requests`` mirrored pairs when agreement is checked.
2. Otherwise the interval *fails* when the canary's error rate is above ``max_error_rate``, its p99 is more than
   ``max_p99_ratio`` times production's, or the mean agreement of mirrored pairs is below ``min_agreement``;
   else it *passes*.
3. ``threshold`` failed intervals (counted over the whole rollout) roll back.
4. A pass advances to the next step; a pass at the last step promotes (or waits for approval when the rollout
   was started with ``require_approval``).
5. A rollout that has not concluded by its deadline rolls back: no traffic never promotes.
"""

from __future__ import annotations

import bisect
import itertools
import math
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from honed.errors import InvalidArgument
from honed.fields import as_dict

LATENCY_BUCKETS_MS: tuple[float, ...] = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000)
"""Upper bounds of the latency histogram every observation uses; one more bucket holds everything slower."""

AGREEMENT_METRICS = ("top1", "cosine")

# Verdicts of one interval, and what the rollout does about them.
INCONCLUSIVE, PASS, FAIL = "inconclusive", "pass", "fail"
HOLD, ADVANCE, PROMOTE, ROLLBACK, AWAIT_APPROVAL = "hold", "advance", "promote", "rollback", "await_approval"


@dataclass(frozen=True)
class RolloutSettings:
    """How a rollout proceeds and what it demands of the canary; :meth:`validate` names any bad value."""

    steps: tuple[int, ...] = (5, 25, 50, 100)
    interval_s: float = 60.0
    mirror: float = 0.1
    max_error_rate: float = 0.01
    max_p99_ratio: float | None = 1.2
    min_agreement: float | None = 0.99
    min_requests: int = 200
    deadline_s: float = 1800.0
    threshold: int = 1
    agreement_metric: str = "top1"
    require_approval: bool = False

    def validate(self) -> RolloutSettings:
        steps = tuple(self.steps)
        if not steps:
            raise InvalidArgument("--steps needs at least one weight, e.g. 5,25,50,100")
        if any(not isinstance(s, int) or isinstance(s, bool) or s < 1 or s > 100 for s in steps):
            raise InvalidArgument(f"--steps are percentages of traffic from 1 to 100; got {_steps_text(steps)}")
        if any(b <= a for a, b in itertools.pairwise(steps)):
            raise InvalidArgument(f"--steps must increase, e.g. 5,25,50,100; got {_steps_text(steps)}")
        _finite_positive(self.interval_s, "--interval")
        _finite_positive(self.deadline_s, "--deadline")
        if self.deadline_s < self.interval_s * len(steps):
            raise InvalidArgument(
                f"--deadline ({self.deadline_s:g}s) leaves no time for {len(steps)} steps of "
                f"--interval {self.interval_s:g}s: give at least {self.interval_s * len(steps):g}s"
            )
        _fraction(self.mirror, "--mirror")
        _fraction(self.max_error_rate, "--max-error-rate")
        if self.max_p99_ratio is not None and (not math.isfinite(self.max_p99_ratio) or self.max_p99_ratio < 1.0):
            raise InvalidArgument(
                f"--max-p99-ratio must be at least 1.0 (canary p99 / production p99); got {self.max_p99_ratio!r}"
            )
        if self.min_agreement is not None:
            low = -1.0 if self.agreement_metric == "cosine" else 0.0
            if not math.isfinite(self.min_agreement) or not low <= self.min_agreement <= 1.0:
                raise InvalidArgument(f"--min-agreement must be between {low:g} and 1; got {self.min_agreement!r}")
            if self.mirror == 0:
                raise InvalidArgument("--min-agreement compares mirrored requests: give --mirror above 0")
        if isinstance(self.min_requests, bool) or not isinstance(self.min_requests, int) or self.min_requests < 1:
            raise InvalidArgument(f"--min-requests must be a whole number of at least 1; got {self.min_requests!r}")
        if isinstance(self.threshold, bool) or not isinstance(self.threshold, int) or self.threshold < 1:
            raise InvalidArgument(f"--threshold must be a whole number of at least 1; got {self.threshold!r}")
        if self.agreement_metric not in AGREEMENT_METRICS:
            raise InvalidArgument(
                f"unknown agreement metric {self.agreement_metric!r}: use one of {', '.join(AGREEMENT_METRICS)}"
            )
        return self

    def to_dict(self) -> dict[str, Any]:
        return {
            "steps": list(self.steps),
            "interval_s": self.interval_s,
            "mirror": self.mirror,
            "max_error_rate": self.max_error_rate,
            "max_p99_ratio": self.max_p99_ratio,
            "min_agreement": self.min_agreement,
            "min_requests": self.min_requests,
            "deadline_s": self.deadline_s,
            "threshold": self.threshold,
            "agreement_metric": self.agreement_metric,
            "require_approval": self.require_approval,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RolloutSettings:
        return cls(
            steps=tuple(int(s) for s in data["steps"]),
            interval_s=float(data["interval_s"]),
            mirror=float(data["mirror"]),
            max_error_rate=float(data["max_error_rate"]),
            max_p99_ratio=None if data.get("max_p99_ratio") is None else float(data["max_p99_ratio"]),
            min_agreement=None if data.get("min_agreement") is None else float(data["min_agreement"]),
            min_requests=int(data["min_requests"]),
            deadline_s=float(data["deadline_s"]),
            threshold=int(data.get("threshold", 1)),
            agreement_metric=str(data.get("agreement_metric", "top1")),
            require_approval=bool(data.get("require_approval", False)),
        )


def _steps_text(steps: tuple[Any, ...]) -> str:
    return ",".join(str(s) for s in steps)


def _finite_positive(value: float, flag: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or value <= 0:
        raise InvalidArgument(f"{flag} must be a duration longer than zero; got {value!r}")


def _fraction(value: float, flag: str) -> None:
    if not isinstance(value, int | float) or not math.isfinite(value) or not 0.0 <= value <= 1.0:
        raise InvalidArgument(f"{flag} must be a fraction between 0 and 1; got {value!r}")


@dataclass(frozen=True)
class VersionStats:
    """One version's requests, errors and latency histogram (counts per :data:`LATENCY_BUCKETS_MS` bucket)."""

    requests: int = 0
    errors: int = 0
    latency_counts: tuple[int, ...] = (0,) * (len(LATENCY_BUCKETS_MS) + 1)

    def __post_init__(self) -> None:
        if len(self.latency_counts) != len(LATENCY_BUCKETS_MS) + 1:
            raise InvalidArgument(f"a latency histogram has {len(LATENCY_BUCKETS_MS) + 1} buckets")
        if self.requests < 0 or self.errors < 0 or self.errors > self.requests or min(self.latency_counts) < 0:
            raise InvalidArgument("an observation's counts must be whole numbers, errors at most requests")

    @classmethod
    def of(cls, latencies_ms: list[float], errors: int = 0) -> VersionStats:
        """Stats of individual requests (their latencies in ms; ``errors`` of them failed)."""
        counts = [0] * (len(LATENCY_BUCKETS_MS) + 1)
        for ms in latencies_ms:
            counts[bucket_of(ms)] += 1
        return cls(len(latencies_ms), errors, tuple(counts))

    @property
    def error_rate(self) -> float | None:
        return None if self.requests == 0 else self.errors / self.requests

    def p99_ms(self) -> float | None:
        """The upper bound of the bucket holding the 99th percentile (``inf`` past the last bound)."""
        total = sum(self.latency_counts)
        if total == 0:
            return None
        rank = math.ceil(0.99 * total)
        seen = 0
        for i, n in enumerate(self.latency_counts):
            seen += n
            if seen >= rank:
                return LATENCY_BUCKETS_MS[i] if i < len(LATENCY_BUCKETS_MS) else math.inf
        return math.inf  # pragma: no cover - seen reaches total

    def __add__(self, other: VersionStats) -> VersionStats:
        return VersionStats(
            self.requests + other.requests,
            self.errors + other.errors,
            tuple(a + b for a, b in zip(self.latency_counts, other.latency_counts, strict=True)),
        )


def bucket_of(latency_ms: float) -> int:
    """The histogram bucket of one latency: the first whose upper bound is at least it (the last: slower)."""
    return bisect.bisect_left(LATENCY_BUCKETS_MS, latency_ms)


@dataclass(frozen=True)
class Observation:
    """One interval, summed over every server: each version's stats and the mirrored pairs' agreement."""

    production: VersionStats = field(default_factory=VersionStats)
    candidate: VersionStats = field(default_factory=VersionStats)
    pairs: int = 0
    agreement_sum: float = 0.0

    @property
    def agreement(self) -> float | None:
        return None if self.pairs == 0 else self.agreement_sum / self.pairs

    def __add__(self, other: Observation) -> Observation:
        return Observation(
            self.production + other.production,
            self.candidate + other.candidate,
            self.pairs + other.pairs,
            self.agreement_sum + other.agreement_sum,
        )


@dataclass(frozen=True)
class Progress:
    """Where a running rollout stands: its step (an index into ``steps``), failed intervals, and start time."""

    step: int
    failures: int
    started_at: datetime


@dataclass(frozen=True)
class Decision:
    verdict: str  # INCONCLUSIVE | PASS | FAIL
    action: str  # HOLD | ADVANCE | PROMOTE | ROLLBACK | AWAIT_APPROVAL
    step: int  # the step after the decision
    failures: int
    reasons: tuple[str, ...]
    figures: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)


def due(last_decision_at: datetime, settings: RolloutSettings, now: datetime) -> bool:
    """Whether an interval has passed since the last decision (or the start)."""
    return now - last_decision_at >= timedelta(seconds=settings.interval_s)


def figures(obs: Observation) -> dict[str, Any]:
    """The numbers a verdict rests on, as recorded with it."""
    prod_p99, cand_p99 = obs.production.p99_ms(), obs.candidate.p99_ms()
    ratio = None
    if prod_p99 is not None and cand_p99 is not None and prod_p99 > 0 and math.isfinite(prod_p99 + cand_p99):
        ratio = cand_p99 / prod_p99
    return {
        "production": {"requests": obs.production.requests, "errors": obs.production.errors, "p99_ms": prod_p99},
        "candidate": {"requests": obs.candidate.requests, "errors": obs.candidate.errors, "p99_ms": cand_p99},
        "candidate_error_rate": obs.candidate.error_rate,
        "p99_ratio": ratio,
        "pairs": obs.pairs,
        "agreement": obs.agreement,
    }


def evaluate(obs: Observation, settings: RolloutSettings) -> tuple[str, tuple[str, ...]]:
    """The interval's verdict and the reasons for it (rules 1 and 2 of the module docstring)."""
    need = settings.min_requests
    short: list[str] = []
    if obs.candidate.requests < need:
        short.append(f"{obs.candidate.requests} canary requests < --min-requests {need}")
    if settings.max_p99_ratio is not None and obs.production.requests < need:
        short.append(f"{obs.production.requests} production requests < --min-requests {need}")
    if settings.min_agreement is not None and obs.pairs < need:
        short.append(f"{obs.pairs} mirrored pairs < --min-requests {need}")
    if short:
        return INCONCLUSIVE, tuple(short)
    failed: list[str] = []
    rate = obs.candidate.error_rate or 0.0
    if rate > settings.max_error_rate:
        failed.append(f"canary error rate {rate:.4f} > {settings.max_error_rate:g}")
    if settings.max_p99_ratio is not None:
        prod, cand = obs.production.p99_ms(), obs.candidate.p99_ms()
        if prod is not None and cand is not None and cand > prod * settings.max_p99_ratio:
            failed.append(f"canary p99 {cand:g}ms > {settings.max_p99_ratio:g} x production p99 {prod:g}ms")
    agreement = obs.agreement
    # A mean of many float scores carries rounding error; a bound met to 1e-9 is met.
    if settings.min_agreement is not None and agreement is not None and agreement < settings.min_agreement - 1e-9:
        failed.append(f"agreement {agreement:.4f} ({settings.agreement_metric}) < {settings.min_agreement:g}")
    if failed:
        return FAIL, tuple(failed)
    return PASS, ("within every bound",)


def decide(progress: Progress, obs: Observation, settings: RolloutSettings, now: datetime) -> Decision:
    """What a running rollout does at the end of an interval (the module docstring's rules)."""
    verdict, reasons = evaluate(obs, settings)
    figs = {**figures(obs), "weight": settings.steps[progress.step]}
    step, failures = progress.step, progress.failures
    last = step == len(settings.steps) - 1
    if verdict == FAIL:
        failures += 1
        if failures >= settings.threshold:
            why = (*reasons, f"{failures} failed interval(s) reached --threshold {settings.threshold}")
            return Decision(verdict, ROLLBACK, step, failures, why, figs)
    if verdict == PASS and last:
        action = AWAIT_APPROVAL if settings.require_approval else PROMOTE
        return Decision(verdict, action, step, failures, reasons, figs)
    if now - progress.started_at >= timedelta(seconds=settings.deadline_s):
        why = (*reasons, f"the deadline of {settings.deadline_s:g}s passed before the rollout concluded")
        return Decision(verdict, ROLLBACK, step, failures, why, figs)
    if verdict == PASS:
        return Decision(verdict, ADVANCE, step + 1, failures, reasons, figs)
    return Decision(verdict, HOLD, step, failures, reasons, figs)
