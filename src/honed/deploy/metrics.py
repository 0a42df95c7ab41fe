"""The one list of honed serve's Prometheus metrics that deploy artifacts (the Grafana dashboard) may query.

Reconcile this with ``honed.serve.metrics`` when serve changes: the dashboard test checks that every query
names only metrics listed here. Every series carries the labels ``model`` and ``version``;
``honed_requests_total`` adds ``outcome``.
"""

from __future__ import annotations

SERVE_METRICS: dict[str, str] = {
    "honed_request_duration_seconds": "histogram",
    "honed_queue_duration_seconds": "histogram",
    "honed_compute_duration_seconds": "histogram",
    "honed_batch_size": "histogram",
    "honed_requests_total": "counter",
    "honed_queue_depth": "gauge",
    "honed_inflight_requests": "gauge",
}

HTTP_PORT = 8000
GRPC_PORT = 8001
METRICS_PATH = "/metrics"
LIVE_PATH = "/v2/health/live"
READY_PATH = "/v2/health/ready"
