"""Per-identity rate limits: a token bucket per principal, and per principal and model where the policy says so.

The ``limits`` section of an access policy (:mod:`honed.serve.access`)::

    limits:
      default: {rps: 50, burst: 100}          # every principal without an entry of its own
      principals:
        batch-job: {rps: 500}                 # burst defaults to max(1, rps)
        fraud-app:
          rps: 20
          burst: 40
          models: {"fraud-*": {rps: 5, burst: 10}}   # infer and metadata calls on those models, on top

A bucket holds up to ``burst`` requests and refills at ``rps`` per second. A request of a principal takes one from
the principal's bucket and, when it names a model matching one of the principal's ``models`` patterns, one from
that pattern's bucket (every model the pattern matches shares it, so a caller cannot make buckets by inventing
model names). Over either limit the request is :class:`RateLimited` (429 with ``Retry-After`` /
RESOURCE_EXHAUSTED) and takes nothing from either bucket. A principal no entry names and no ``default`` covers is
not limited. :class:`RateLimiter` keeps the buckets; :meth:`RateLimiter.configure` swaps in new limits (on a policy
reload) keeping every bucket whose limit still exists, so a reload neither refills nor empties them.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from fnmatch import fnmatchcase
from typing import Any, Literal

from honed.errors import InvalidArgument, Overloaded

PRINCIPAL_BUCKET = ""
"""The ``model`` label of a refusal by the principal's own bucket (not a per-model one)."""


@dataclass(frozen=True)
class Rate:
    """A token bucket's shape: ``rps`` requests per second on average, ``burst`` at once."""

    rps: float
    burst: float

    def __post_init__(self) -> None:
        for name in ("rps", "burst"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise InvalidArgument(f"{name} must be a number, got {value!r}")
        if self.rps <= 0:
            raise InvalidArgument(f"rps must be > 0 (remove the principal's grants to stop it), got {self.rps}")
        if self.burst < 1:
            raise InvalidArgument(f"burst must be >= 1 request, got {self.burst}")

    @classmethod
    def from_dict(cls, where: str, doc: Any) -> Rate:
        if not isinstance(doc, dict) or "rps" not in doc or set(doc) - {"rps", "burst"}:
            raise InvalidArgument(f"{where}: a limit is a mapping {{rps: N, burst: N}} (burst optional)")
        rps = doc["rps"]
        burst: Any = doc.get("burst", max(1, rps) if isinstance(rps, int | float) else rps)
        try:
            return cls(rps, burst)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None

    def to_dict(self) -> dict[str, float]:
        return {"rps": self.rps, "burst": self.burst}


@dataclass(frozen=True)
class PrincipalLimits:
    """One principal's limits: its own bucket (None: the policy's default) and per-model-pattern buckets."""

    rate: Rate | None = None
    models: tuple[tuple[str, Rate], ...] = ()

    def model_pattern(self, model: str | None) -> tuple[str, Rate] | None:
        """The first of this principal's model patterns ``model`` matches, with its rate."""
        if model is None:
            return None
        return next(((p, r) for p, r in self.models if fnmatchcase(model, p)), None)


@dataclass(frozen=True)
class RateLimits:
    """Every rate limit of one policy (see the module docstring for the file form)."""

    default: Rate | None = None
    principals: tuple[tuple[str, PrincipalLimits], ...] = ()
    _by_name: dict[str, PrincipalLimits] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_by_name", dict(self.principals))

    def of(self, principal: str) -> PrincipalLimits | None:
        return self._by_name.get(principal)

    def rate(self, principal: str) -> Rate | None:
        """The rate of ``principal``'s own bucket (None: unlimited)."""
        own = self._by_name.get(principal)
        return own.rate if own is not None and own.rate is not None else self.default

    @classmethod
    def from_dict(cls, doc: Any) -> RateLimits:
        if doc is None:
            return cls()
        if not isinstance(doc, dict) or set(doc) - {"default", "principals"}:
            raise InvalidArgument("'limits' is a mapping with 'default' and/or 'principals'")
        default = Rate.from_dict("limits.default", doc["default"]) if doc.get("default") is not None else None
        entries = doc.get("principals") or {}
        if not isinstance(entries, dict):
            raise InvalidArgument("limits.principals maps principal names to {rps, burst, models}")
        principals: list[tuple[str, PrincipalLimits]] = []
        for name, entry in entries.items():
            where = f"limits.principals.{name}"
            if not isinstance(entry, dict) or set(entry) - {"rps", "burst", "models"}:
                raise InvalidArgument(f"{where}: give rps (and burst), and/or models: {{PATTERN: {{rps, burst}}}}")
            own = {k: v for k, v in entry.items() if k != "models"}
            rate = Rate.from_dict(where, own) if own else None
            models = entry.get("models") or {}
            if not isinstance(models, dict) or not all(isinstance(p, str) and p for p in models):
                raise InvalidArgument(f"{where}.models maps model names or patterns to {{rps, burst}}")
            per_model = tuple((p, Rate.from_dict(f"{where}.models.{p}", r)) for p, r in models.items())
            principals.append((str(name), PrincipalLimits(rate, per_model)))
        return cls(default, tuple(principals))

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        if self.default is not None:
            out["default"] = self.default.to_dict()
        if self.principals:
            entries: dict[str, Any] = {}
            for name, limits in self.principals:
                entry: dict[str, Any] = limits.rate.to_dict() if limits.rate is not None else {}
                if limits.models:
                    entry["models"] = {p: r.to_dict() for p, r in limits.models}
                entries[name] = entry
            out["principals"] = entries
        return out


class RateLimited(Overloaded):
    """A principal over one of its rate limits; retry after ``retry_after_s``."""

    def __init__(self, message: str, retry_after_s: float, principal: str, model: str) -> None:
        super().__init__(message, retry_after_s)
        self.principal = principal
        self.model = model


class _Bucket:
    __slots__ = ("level", "rate", "stamp")

    def __init__(self, rate: Rate, now: float) -> None:
        self.rate = rate
        self.level = rate.burst
        self.stamp = now

    def refill(self, now: float) -> float:
        self.level = min(self.rate.burst, self.level + max(0.0, now - self.stamp) * self.rate.rps)
        self.stamp = now
        return self.level

    def wait_s(self) -> float:
        """Seconds until the bucket holds one request again."""
        return max(0.0, 1.0 - self.level) / self.rate.rps


Admission = Literal["all", "principal", "model", "none"]
"""Which of a caller's rate limits a request takes its share of, see :meth:`DataPlane.authorize`."""


class RateLimiter:
    """The token buckets of one server; :meth:`admit` is the one check (thread-safe)."""

    def __init__(
        self,
        limits: RateLimits | None = None,
        *,
        clock: Callable[[], float] = time.monotonic,
        on_limited: Callable[[str, str], None] | None = None,
    ) -> None:
        self._clock = clock
        self._on_limited = on_limited
        self._limits = limits or RateLimits()
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    @property
    def limits(self) -> RateLimits:
        return self._limits

    def configure(self, limits: RateLimits) -> None:
        """Use ``limits`` from now on; buckets whose limit is gone are dropped, the rest keep their level (capped
        at a new burst)."""
        with self._lock:
            self._limits = limits
            kept: dict[tuple[str, str], _Bucket] = {}
            for key, bucket in self._buckets.items():
                rate = self._rate(key)
                if rate is not None:
                    bucket.rate = rate
                    bucket.level = min(bucket.level, rate.burst)
                    kept[key] = bucket
            self._buckets = kept

    def _rate(self, key: tuple[str, str]) -> Rate | None:
        principal, pattern = key
        if pattern == PRINCIPAL_BUCKET:
            return self._limits.rate(principal)
        own = self._limits.of(principal)
        return dict(own.models).get(pattern) if own is not None else None

    def admit(self, principal: str, model: str | None = None, *, own: bool = True) -> None:
        """Take one request from ``principal``'s bucket (and its model pattern's), or raise :class:`RateLimited`.

        ``own=False`` takes from the model pattern's bucket alone: for a request whose principal was admitted
        before its model was known (gRPC admits from the metadata, before the message names the model)."""
        limits = self._limits
        keys: list[tuple[tuple[str, str], Rate]] = []
        rate = limits.rate(principal) if own else None
        if rate is not None:
            keys.append(((principal, PRINCIPAL_BUCKET), rate))
        theirs = limits.of(principal)
        matched = theirs.model_pattern(model) if theirs is not None else None
        if matched is not None:
            keys.append(((principal, matched[0]), matched[1]))
        if not keys:
            return
        now = self._clock()
        with self._lock:
            buckets = []
            for key, key_rate in keys:
                bucket = self._buckets.get(key)
                if bucket is None:
                    bucket = self._buckets[key] = _Bucket(key_rate, now)
                buckets.append((key, bucket))
            for (_, pattern), bucket in buckets:
                if bucket.refill(now) < 1.0:
                    refused, wait = pattern, bucket.wait_s()
                    break
            else:
                for _, bucket in buckets:
                    bucket.level -= 1.0
                return
        if self._on_limited is not None:
            self._on_limited(principal, refused)
        what = f"its limit on models {refused!r}" if refused != PRINCIPAL_BUCKET else "its rate limit"
        retry = max(1, math.ceil(wait))  # whole seconds, as Retry-After says it: one message per principal and limit
        raise RateLimited(f"principal {principal!r} is over {what}; retry after {retry} s", wait, principal, refused)


__all__ = ["PRINCIPAL_BUCKET", "Admission", "PrincipalLimits", "Rate", "RateLimited", "RateLimiter", "RateLimits"]
