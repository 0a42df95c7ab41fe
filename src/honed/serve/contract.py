"""What honed serve promises the world outside it: default ports, probe and metrics paths, and its metric series.

The server reads these (:mod:`honed.serve.http` routes the paths, :mod:`honed.serve.metrics` registers the
series) and so do the deploy artifacts (manifests, Dockerfile, Grafana dashboard), so a probe, a scrape config or
a dashboard query cannot name something the server does not answer. Importing this module loads nothing beyond
the standard library.

Metric names are the exposed names (a counter's carries its ``_total``); every label a series carries is listed.
Beside each counter and histogram the exposition also carries its ``<name without _total>_created`` timestamp
gauge, which no dashboard needs and this list leaves out.
"""

from __future__ import annotations

from dataclasses import dataclass

HTTP_PORT = 8000
"""The V2 REST port a deployed server listens on (and ``honed serve``'s default)."""
GRPC_PORT = 8001
"""The V2 gRPC port a deployed server listens on (and ``honed serve``'s default)."""
METRICS_PORT = 8002
"""The port of the listener that answers :data:`METRICS_PATH` and nothing else (``honed serve --metrics``), which a
deployed server opens so that a scraper can be let reach the metrics without reaching the models."""

LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
METRICS_PATH = "/metrics"
"""The Prometheus scrape path, on the HTTP port and on the metrics listener (:data:`METRICS_PORT`)."""

SUCCESS = "success"
"""The ``outcome`` of an answered request that succeeded; every other outcome is a failure."""

OUTCOMES = (
    SUCCESS,
    "invalid",
    "not_found",
    "overloaded",
    "unavailable",
    "timeout",
    "cancelled",
    "denied",
    "error",
)
"""Every value of the ``outcome`` label of ``honed_requests_total``."""

RESIDENCY_REASONS = ("undeclared", "invalid", "not_approved", "placement")
"""Every value of the ``reason`` label of ``honed_residency_refusals_total``."""

AUTH_REASONS = ("missing", "malformed", "unknown", "invalid", "revoked", "forbidden")
"""Every value of the ``reason`` label of ``honed_auth_refusals_total``."""

RELOAD_RESULTS = ("success", "failure")
"""Every value of the ``result`` label of ``honed_access_policy_reloads_total``."""

SHED_REASONS = ("estimate", "queue_time", "queue_full")
"""Every value of the ``reason`` label of ``honed_shed_total``: refused on arrival because by the batcher's estimate
it would wait longer than the model's queue-time bound, waited that long anyway, or found its queue full."""


LATENCY_BUCKETS_S: tuple[float, ...] = (
    0.0001,
    0.00025,
    0.0005,
    0.001,
    0.002,
    0.004,
    0.008,
    0.016,
    0.032,
    0.064,
    0.128,
    0.256,
    0.512,
    1.024,
    2.048,
    4.096,
    10.0,
)
"""The bucket bounds (seconds) of every duration histogram the server exports: an alert on a latency SLO
can only name one of these as its ``le``."""


@dataclass(frozen=True)
class Metric:
    """One exported series family: its exposed name, Prometheus type, label names and help text."""

    name: str
    type: str
    labels: tuple[str, ...]
    help: str


_MODEL = ("model", "version")

REQUESTS = Metric("honed_requests_total", "counter", (*_MODEL, "outcome"), "Answered requests by outcome.")
REQUEST_DURATION = Metric(
    "honed_request_duration_seconds",
    "histogram",
    _MODEL,
    "Time from the dataplane receiving a request to answering it.",
)
QUEUE_DURATION = Metric(
    "honed_queue_duration_seconds", "histogram", _MODEL, "Time a request waited in the batch queue."
)
COMPUTE_DURATION = Metric("honed_compute_duration_seconds", "histogram", _MODEL, "Time of one model run (one batch).")
BATCH_SIZE = Metric("honed_batch_size", "histogram", _MODEL, "Rows per model run.")
QUEUE_DEPTH = Metric("honed_queue_depth", "gauge", _MODEL, "Requests waiting in the batch queue.")
INFLIGHT = Metric("honed_inflight_requests", "gauge", _MODEL, "Requests received and not yet answered.")
BUSY_SECONDS = Metric(
    "honed_instance_busy_seconds_total", "counter", _MODEL, "Summed busy time of the model's instances."
)
BUSY_RATIO = Metric(
    "honed_instance_busy_ratio",
    "gauge",
    _MODEL,
    "Share of time the model's instances were busy since the previous scrape (0..1).",
)
RESIDENCY_REFUSALS = Metric(
    "honed_residency_refusals_total",
    "counter",
    ("model", "reason"),
    "Requests and model loads refused for data residency.",
)
AUTH_REFUSALS = Metric(
    "honed_auth_refusals_total",
    "counter",
    ("reason",),
    "Requests refused by the access policy (reason: missing, malformed, unknown, invalid, revoked or forbidden).",
)
RATE_LIMITED = Metric(
    "honed_rate_limited_total",
    "counter",
    ("principal", "model"),
    "Requests refused for a principal's rate limit (model: the limit's model pattern, empty for the principal's own).",
)
POLICY_RELOADS = Metric(
    "honed_access_policy_reloads_total",
    "counter",
    ("result",),
    "Access policy reloads (SIGHUP or a changed file) by result: success, or failure (the old policy stays).",
)
SHED = Metric(
    "honed_shed_total",
    "counter",
    ("model", "reason"),
    "Requests answered without running (reason: estimate, would wait past the model's queue-time bound; "
    "queue_time, waited past it; queue_full).",
)

FEATURE_FETCH_DURATION = Metric(
    "honed_feature_fetch_duration_seconds",
    "histogram",
    _MODEL,
    "Time one request spent fetching its features from the model's feature store (Feast), before batching.",
)

PROCESS_CPU = Metric(
    "process_cpu_seconds_total",
    "counter",
    (),
    "Total user and system CPU time spent in seconds.",
)
"""The server process's CPU time, from prometheus_client's standard process collector (Linux; with it come the
collector's other ``process_*`` families: memory, open file descriptors, start time). ``honed plan --prometheus``
reads CPU per replica from it."""

ROLLOUT_STEP = Metric(
    "honed_rollout_step", "gauge", ("model",), "The active rollout's step (1 = the first weight; 0: no rollout)."
)
ROLLOUT_WEIGHT = Metric(
    "honed_rollout_weight", "gauge", _MODEL, "Percent of unversioned requests routed to the version by a rollout."
)
ROLLOUT_VERDICTS = Metric(
    "honed_rollout_verdicts_total",
    "counter",
    ("model", "verdict"),
    "Rollout interval verdicts this server took as controller (pass, fail or inconclusive).",
)
ROLLOUT_AGREEMENT = Metric(
    "honed_rollout_agreement",
    "gauge",
    _MODEL,
    "Mean agreement of mirrored pairs with the candidate version in the last decided interval (0..1).",
)
ROLLOUT_MIRROR_DROPPED = Metric(
    "honed_rollout_mirror_dropped_total",
    "counter",
    ("model",),
    "Mirrored requests dropped because the mirror queue was full (production answers never wait for them).",
)
ROLLOUT_REGISTRY_REACHABLE = Metric(
    "honed_rollout_registry_reachable",
    "gauge",
    (),
    "1 while the registry answered the last rollout poll, 0 when it did not (the last weights are kept).",
)

METRICS: tuple[Metric, ...] = (
    REQUESTS,
    REQUEST_DURATION,
    QUEUE_DURATION,
    COMPUTE_DURATION,
    BATCH_SIZE,
    QUEUE_DEPTH,
    INFLIGHT,
    BUSY_SECONDS,
    BUSY_RATIO,
    RESIDENCY_REFUSALS,
    AUTH_REFUSALS,
    RATE_LIMITED,
    POLICY_RELOADS,
    SHED,
    FEATURE_FETCH_DURATION,
    PROCESS_CPU,
    ROLLOUT_STEP,
    ROLLOUT_WEIGHT,
    ROLLOUT_VERDICTS,
    ROLLOUT_AGREEMENT,
    ROLLOUT_MIRROR_DROPPED,
    ROLLOUT_REGISTRY_REACHABLE,
)
"""Every series family the server exports, and nothing else named ``honed_*``."""


def metric_names() -> frozenset[str]:
    """The exposed names of every metric in :data:`METRICS` (what a dashboard query may name)."""
    return frozenset(m.name for m in METRICS)
