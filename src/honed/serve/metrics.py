"""Prometheus metrics of the server: one :class:`ServeMetrics` per server, over its own registry.

Per-model series are labelled by ``model`` and ``version``; latencies are histograms (never summaries) so they can
be aggregated across servers and turned into any quantile by the scraper.

Which series exist, their types, label names and help texts are :data:`honed.serve.contract.METRICS`, the one
list the deploy artifacts (manifests, the Grafana dashboard) read too; this module only registers and feeds them.

``reason`` of a residency refusal is one of :data:`RESIDENCY_REASONS`: ``undeclared`` (the request declares no
residency and the server requires one), ``invalid`` (the declaration is not a jurisdiction code),
``not_approved`` (the server is not approved for the declared jurisdiction) or ``placement`` (a model version
whose residency excludes this server was refused at load).

Hooks for the dataplane (request level; the executor records queue, compute, batch and busy itself)::

    bound = metrics.model(name, version)      # cache-friendly handle for one model version
    with bound.request():                     # counts in-flight; on exit observes duration and outcome
        outputs = await executor.infer(...)   # the outcome comes from the exception leaving the block

or, where an adapter times requests itself, ``metrics.observe_request(name, version, outcome, seconds)``.
An ``outcome`` is one of :data:`OUTCOMES`; :func:`outcome_of` maps an exception (or ``None``) to it.
``render()`` returns the exposition body and its content type for ``GET /metrics``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    ProcessCollector,
    generate_latest,
)

from honed.errors import (
    DataError,
    DeadlineExceeded,
    InvalidArgument,
    NotFound,
    Overloaded,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from honed.serve import contract
from honed.serve.contract import LATENCY_BUCKETS_S, OUTCOMES, RESIDENCY_REASONS, SHED_REASONS, Metric

__all__ = ["OUTCOMES", "RESIDENCY_REASONS", "ModelMetrics", "ServeMetrics", "outcome_of"]

_BATCH_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024)


def _family(metric: Metric) -> tuple[str, str, tuple[str, ...]]:
    """A contract metric as prometheus_client's (name, documentation, label names); counters drop ``_total``,
    which prometheus_client appends itself."""
    name = metric.name.removesuffix("_total") if metric.type == "counter" else metric.name
    return name, metric.help, metric.labels


def outcome_of(exc: BaseException | None) -> str:
    """The ``outcome`` label for a request that ended with ``exc`` (``None`` for success)."""
    if exc is None:
        return "success"
    if isinstance(exc, asyncio.CancelledError):
        return "cancelled"
    if isinstance(exc, InvalidArgument | DataError):
        return "invalid"
    if isinstance(exc, NotFound):
        return "not_found"
    if isinstance(exc, Overloaded):
        return "overloaded"
    if isinstance(exc, Unavailable):
        return "unavailable"
    if isinstance(exc, DeadlineExceeded):
        return "timeout"
    if isinstance(exc, Unauthenticated | PermissionDenied):
        return "denied"
    return "error"


class ServeMetrics:
    """All of a server's metrics, on a registry of its own (so servers and tests never share series)."""

    def __init__(self, registry: CollectorRegistry | None = None, *, clock: Callable[[], float] = time.monotonic):
        self.registry = registry if registry is not None else CollectorRegistry(auto_describe=True)
        self._clock = clock
        r = self.registry
        self.requests = Counter(*_family(contract.REQUESTS), registry=r)
        self.request_duration = Histogram(*_family(contract.REQUEST_DURATION), buckets=LATENCY_BUCKETS_S, registry=r)
        self.queue_duration = Histogram(*_family(contract.QUEUE_DURATION), buckets=LATENCY_BUCKETS_S, registry=r)
        self.compute_duration = Histogram(*_family(contract.COMPUTE_DURATION), buckets=LATENCY_BUCKETS_S, registry=r)
        self.batch_size = Histogram(*_family(contract.BATCH_SIZE), buckets=_BATCH_BUCKETS, registry=r)
        self.queue_depth = Gauge(*_family(contract.QUEUE_DEPTH), registry=r)
        self.inflight = Gauge(*_family(contract.INFLIGHT), registry=r)
        self.busy_seconds = Counter(*_family(contract.BUSY_SECONDS), registry=r)
        self.busy_ratio = Gauge(*_family(contract.BUSY_RATIO), registry=r)
        self.residency_refusals = Counter(*_family(contract.RESIDENCY_REFUSALS), registry=r)
        self.auth_refusals = Counter(*_family(contract.AUTH_REFUSALS), registry=r)
        self.rate_limits = Counter(*_family(contract.RATE_LIMITED), registry=r)
        self.policy_reloads = Counter(*_family(contract.POLICY_RELOADS), registry=r)
        self.shed_requests = Counter(*_family(contract.SHED), registry=r)
        self.feature_fetch_duration = Histogram(
            *_family(contract.FEATURE_FETCH_DURATION), buckets=LATENCY_BUCKETS_S, registry=r
        )
        with contextlib.suppress(ValueError):  # the process's CPU and memory (contract.PROCESS_CPU, ...)
            ProcessCollector(registry=r)  # unless the registry holds them already
        self.rollout_step = Gauge(*_family(contract.ROLLOUT_STEP), registry=r)
        self.rollout_weight = Gauge(*_family(contract.ROLLOUT_WEIGHT), registry=r)
        self.rollout_verdicts = Counter(*_family(contract.ROLLOUT_VERDICTS), registry=r)
        self.rollout_agreement = Gauge(*_family(contract.ROLLOUT_AGREEMENT), registry=r)
        self.rollout_mirror_dropped = Counter(*_family(contract.ROLLOUT_MIRROR_DROPPED), registry=r)
        self.rollout_registry_reachable = Gauge(*_family(contract.ROLLOUT_REGISTRY_REACHABLE), registry=r)
        self._models: dict[tuple[str, str], ModelMetrics] = {}
        self._lock = threading.Lock()

    def auth_refused(self, reason: str) -> None:
        """Count one request the access policy refused (``reason``: one of ``contract.AUTH_REASONS``)."""
        self.auth_refusals.labels(reason).inc()

    def rate_limited(self, principal: str, model: str) -> None:
        """Count one request refused for ``principal``'s rate limit (``model``: the limit's pattern, or "")."""
        self.rate_limits.labels(principal, model).inc()

    def policy_reloaded(self, result: str) -> None:
        """Count one access policy reload (``result``: one of ``contract.RELOAD_RESULTS``)."""
        if result not in contract.RELOAD_RESULTS:
            raise ValueError(f"unknown reload result {result!r}; use one of {', '.join(contract.RELOAD_RESULTS)}")
        self.policy_reloads.labels(result).inc()

    def residency_refused(self, model: str, reason: str) -> None:
        """Count one residency refusal (``reason`` from :data:`RESIDENCY_REASONS`)."""
        if reason not in RESIDENCY_REASONS:
            raise ValueError(f"unknown residency reason {reason!r}; use one of {', '.join(RESIDENCY_REASONS)}")
        self.residency_refusals.labels(model, reason).inc()

    def model(self, name: str, version: str) -> ModelMetrics:
        """The handle for one model version's series (created on first use, then cached)."""
        key = (name, version)
        bound = self._models.get(key)
        if bound is None:
            with self._lock:
                bound = self._models.get(key)
                if bound is None:
                    bound = ModelMetrics(self, name, version)
                    self._models[key] = bound
        return bound

    def observe_request(self, name: str, version: str, outcome: str, seconds: float) -> None:
        """Record one answered request that an adapter timed itself."""
        self.model(name, version).observe_request(outcome, seconds)

    def render(self) -> tuple[bytes, str]:
        """The Prometheus text exposition of every series, and its content type."""
        for bound in list(self._models.values()):
            bound.update_busy_ratio()
        return generate_latest(self.registry), CONTENT_TYPE_LATEST


class ModelMetrics:
    """One model version's series, with the label lookups done once."""

    def __init__(self, parent: ServeMetrics, name: str, version: str) -> None:
        self._parent = parent
        self._clock = parent._clock
        self.name = name
        self.version = version
        self._outcomes = {o: parent.requests.labels(name, version, o) for o in OUTCOMES}
        self._request = parent.request_duration.labels(name, version)
        self._queue = parent.queue_duration.labels(name, version)
        self._compute = parent.compute_duration.labels(name, version)
        self._batch = parent.batch_size.labels(name, version)
        self._depth = parent.queue_depth.labels(name, version)
        self._inflight_now = 0  # read at scrape time: no locked increment on every request
        parent.inflight.labels(name, version).set_function(lambda: self._inflight_now)
        self._busy = parent.busy_seconds.labels(name, version)
        self._ratio = parent.busy_ratio.labels(name, version)
        self._instances = 1
        self._busy_total = 0.0
        self._busy_mark = 0.0
        self._time_mark = self._clock()
        self._lock = threading.Lock()

    @contextmanager
    def request(self) -> Iterator[None]:
        """Count the block as one in-flight request; on exit record its duration and outcome."""
        start = self._clock()
        self._inflight_now += 1
        exc: BaseException | None = None
        try:
            yield
        except BaseException as raised:
            exc = raised
            raise
        finally:
            self._inflight_now -= 1
            self.observe_request(outcome_of(exc), self._clock() - start)

    def observe_request(self, outcome: str, seconds: float) -> None:
        counter = self._outcomes.get(outcome)
        if counter is None:
            raise ValueError(f"unknown outcome {outcome!r}; use one of {', '.join(OUTCOMES)}")
        counter.inc()
        self._request.observe(seconds)

    def observe_queue(self, seconds: float) -> None:
        self._queue.observe(seconds)

    def observe_batch(self, rows: int, compute_seconds: float) -> None:
        """One model run of ``rows`` rows that took ``compute_seconds`` on one instance."""
        self._batch.observe(rows)
        self._compute.observe(compute_seconds)
        self._busy.inc(compute_seconds)
        with self._lock:
            self._busy_total += compute_seconds

    def observe_feature_fetch(self, seconds: float) -> None:
        """One request's fetch of its features from the model's feature store."""
        self._parent.feature_fetch_duration.labels(self.name, self.version).observe(seconds)

    def set_queue_depth(self, depth: int) -> None:
        self._depth.set(depth)

    def shed(self, reason: str) -> None:
        """Count one request answered without running (``reason`` from ``contract.SHED_REASONS``)."""
        if reason not in SHED_REASONS:
            raise ValueError(f"unknown shed reason {reason!r}; use one of {', '.join(SHED_REASONS)}")
        self._parent.shed_requests.labels(self.name, reason).inc()

    def set_instances(self, count: int) -> None:
        """How many instances serve this model (the busy ratio's denominator)."""
        self._instances = max(1, count)

    def update_busy_ratio(self) -> None:
        """Set the busy ratio over the time since the previous update (called on each scrape)."""
        now = self._clock()
        with self._lock:
            elapsed = now - self._time_mark
            if elapsed <= 0:
                return
            busy = self._busy_total - self._busy_mark
            self._busy_mark, self._time_mark = self._busy_total, now
        self._ratio.set(min(1.0, max(0.0, busy / (elapsed * self._instances))))
