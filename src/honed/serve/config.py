"""How one model is served: batching knobs, instances, threads, core pinning and runtime, as validated data.

A serving config is a value, like :class:`~honed.runtime.RuntimeConfig`: the model repository reads it from a
per-model config file with :meth:`ModelServingConfig.from_dict` (unknown keys and bad values raise
:class:`~honed.errors.InvalidArgument`) and writes it back with :meth:`ModelServingConfig.to_dict`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field, replace
from typing import Any

from honed.errors import InvalidArgument
from honed.fields import known_keys
from honed.runtime import RuntimeConfig
from honed.serve.features import FeatureConfig

DEFAULT_MAX_QUEUE_TIME_MS = 1000.0
"""The queue-time bound of a model that sets none: past a second in the queue a typical interactive client has
given up (or should retry elsewhere), while a batch of a model fast enough to serve online takes far less, so
ordinary queueing behind busy instances stays well under it. A model whose single run takes close to a second
needs a larger bound (or ``null``: none)."""

PinCores = bool | tuple[tuple[int, ...], ...]
"""``False`` (no pinning), ``True`` (honed spreads instances over the process's cores) or one core list per instance."""


@dataclass(frozen=True)
class BatchingConfig:
    """Dynamic batching for one model.

    ``max_batch_size`` is the most rows (first-dimension entries) one model run takes; a single request may
    carry up to that many rows. ``max_queue_delay_ms`` is the longest a request waits for company, and it is
    only spent while every instance is busy or to fill one of ``preferred_batch_sizes`` when more requests are
    expected in time: a request that finds an idle instance runs at once. ``max_queue_size`` bounds the number
    of queued requests; past it, callers get :class:`~honed.errors.Overloaded` with a retry-after estimate.
    ``max_queue_time_ms`` bounds how long a request may wait in the queue (default
    :data:`DEFAULT_MAX_QUEUE_TIME_MS`; ``None`` sets no bound): a request that would wait longer, by the
    batcher's estimate of the work queued ahead of it, is refused on arrival, and one that has waited that long
    anyway is shed; both are :class:`~honed.errors.QueueTimeExceeded` (429 with ``Retry-After`` /
    RESOURCE_EXHAUSTED), so under overload clients get a quick refusal instead of a late answer.
    With ``enabled=False`` every request runs on its own (``max_batch_size`` still limits its rows).
    """

    enabled: bool = True
    max_batch_size: int = 32
    max_queue_delay_ms: float = 2.0
    preferred_batch_sizes: tuple[int, ...] = ()
    max_queue_size: int = 1024
    max_queue_time_ms: float | None = DEFAULT_MAX_QUEUE_TIME_MS

    def __post_init__(self) -> None:
        if not isinstance(self.enabled, bool):
            raise InvalidArgument(f"batching.enabled must be true or false, got {self.enabled!r}")
        _whole("batching.max_batch_size", self.max_batch_size, minimum=1)
        _whole("batching.max_queue_size", self.max_queue_size, minimum=1)
        delay = self.max_queue_delay_ms
        if isinstance(delay, bool) or not isinstance(delay, int | float) or not math.isfinite(delay) or delay < 0:
            raise InvalidArgument(f"batching.max_queue_delay_ms must be a number >= 0, got {delay!r}")
        object.__setattr__(self, "max_queue_delay_ms", float(delay))
        bound = self.max_queue_time_ms
        if bound is not None:
            if isinstance(bound, bool) or not isinstance(bound, int | float) or not math.isfinite(bound) or bound <= 0:
                raise InvalidArgument(f"batching.max_queue_time_ms must be a number > 0 (or null), got {bound!r}")
            object.__setattr__(self, "max_queue_time_ms", float(bound))
        sizes = self.preferred_batch_sizes
        if isinstance(sizes, str | bytes) or not isinstance(sizes, list | tuple):
            raise InvalidArgument(f"batching.preferred_batch_sizes must be a list of whole numbers, got {sizes!r}")
        for size in sizes:
            _whole("batching.preferred_batch_sizes entry", size, minimum=1)
            if size > self.max_batch_size:
                raise InvalidArgument(
                    f"batching.preferred_batch_sizes has {size}, above max_batch_size {self.max_batch_size}"
                )
        object.__setattr__(self, "preferred_batch_sizes", tuple(sorted(set(sizes))))

    @property
    def max_queue_delay_s(self) -> float:
        return self.max_queue_delay_ms / 1000.0

    @property
    def max_queue_time_s(self) -> float | None:
        return None if self.max_queue_time_ms is None else self.max_queue_time_ms / 1000.0

    def to_dict(self) -> dict[str, Any]:
        return {
            "enabled": self.enabled,
            "max_batch_size": self.max_batch_size,
            "max_queue_delay_ms": self.max_queue_delay_ms,
            "preferred_batch_sizes": list(self.preferred_batch_sizes),
            "max_queue_size": self.max_queue_size,
            "max_queue_time_ms": self.max_queue_time_ms,
        }

    @classmethod
    def from_dict(cls, data: Any) -> BatchingConfig:
        values = known_keys("batching", data, cls)
        if isinstance(values.get("preferred_batch_sizes"), list):
            values["preferred_batch_sizes"] = tuple(values["preferred_batch_sizes"])
        return cls(**values)


@dataclass(frozen=True)
class ModelServingConfig:
    """Everything that decides how one model is served.

    ``instances`` sessions run side by side, each in its own thread with ``threads_per_instance`` intra-op
    threads (this overrides ``runtime.intra_op_threads``). ``pin_cores`` pins each instance's threads: ``True``
    gives instance *i* the next ``threads_per_instance`` cores the process may run on (wrapping around), or
    give one explicit core list per instance. ``warmup`` runs each instance once at batch 1 and at the largest
    batch before the model reports ready. ``features`` names the Feast feature server that supplies some inputs
    from entity keys in the request (:mod:`honed.serve.features`; None: the request gives every input).
    """

    batching: BatchingConfig = field(default_factory=BatchingConfig)
    instances: int = 1
    threads_per_instance: int = 1
    pin_cores: PinCores = False
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    warmup: bool = True
    features: FeatureConfig | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.batching, BatchingConfig):
            raise InvalidArgument("batching must be a BatchingConfig")
        if not isinstance(self.runtime, RuntimeConfig):
            raise InvalidArgument("runtime must be a RuntimeConfig")
        _whole("instances", self.instances, minimum=1)
        _whole("threads_per_instance", self.threads_per_instance, minimum=1)
        if not isinstance(self.warmup, bool):
            raise InvalidArgument(f"warmup must be true or false, got {self.warmup!r}")
        if self.features is not None and not isinstance(self.features, FeatureConfig):
            raise InvalidArgument("features must be a FeatureConfig")
        pin = self.pin_cores
        if not isinstance(pin, bool):
            if isinstance(pin, str | bytes) or not isinstance(pin, list | tuple):
                raise InvalidArgument(f"pin_cores must be true, false or one list of CPU ids per instance; got {pin!r}")
            lists: list[tuple[int, ...]] = []
            for cores in pin:
                if isinstance(cores, str | bytes) or not isinstance(cores, list | tuple) or not cores:
                    raise InvalidArgument(
                        f"pin_cores must hold one non-empty list of CPU ids per instance; got {pin!r}"
                    )
                for core in cores:
                    _whole("pin_cores CPU id", core, minimum=0)
                if len(set(cores)) != len(cores):
                    raise InvalidArgument(f"pin_cores lists a CPU twice for one instance: {list(cores)!r}")
                lists.append(tuple(cores))
            if len(lists) != self.instances:
                raise InvalidArgument(
                    f"pin_cores gives {len(lists)} core list(s) but instances is {self.instances}; "
                    "give one per instance"
                )
            object.__setattr__(self, "pin_cores", tuple(lists))

    def with_(self, **changes: Any) -> ModelServingConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        pin: bool | list[list[int]] = (
            self.pin_cores if isinstance(self.pin_cores, bool) else [list(c) for c in self.pin_cores]
        )
        return {
            "batching": self.batching.to_dict(),
            "instances": self.instances,
            "threads_per_instance": self.threads_per_instance,
            "pin_cores": pin,
            "runtime": self.runtime.to_dict(),
            "warmup": self.warmup,
            **({"features": self.features.to_dict()} if self.features is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any) -> ModelServingConfig:
        values = known_keys("serving config", data, cls)
        if "batching" in values:
            values["batching"] = BatchingConfig.from_dict(values["batching"])
        if values.get("features") is not None:
            values["features"] = FeatureConfig.from_dict(values["features"])
        if "runtime" in values:
            runtime = values["runtime"]
            if not isinstance(runtime, dict):
                raise InvalidArgument(f"runtime must be a mapping of runtime settings, got {runtime!r}")
            try:
                values["runtime"] = RuntimeConfig.from_dict(runtime)
            except TypeError as exc:  # a setting of the wrong type that RuntimeConfig cannot even compare
                raise InvalidArgument(f"bad runtime setting: {exc}") from None
        return cls(**values)


def _whole(name: str, value: Any, *, minimum: int) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise InvalidArgument(f"{name} must be a whole number >= {minimum}, got {value!r}")
