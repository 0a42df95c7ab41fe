"""A Grafana dashboard for honed serve's metrics (names and label values from :mod:`honed.serve.contract`)."""

from __future__ import annotations

from typing import Any

from honed.serve.contract import SUCCESS, metric_names


def _quantile(metric: str, q: float) -> str:
    return f"histogram_quantile({q}, sum by (le, model) (rate({metric}_bucket[$__rate_interval])))"


PANELS: list[tuple[str, str, list[tuple[str, str]]]] = [
    (
        "Request latency (p50, p99)",
        "s",
        [
            (_quantile("honed_request_duration_seconds", 0.5), "p50 {{model}}"),
            (_quantile("honed_request_duration_seconds", 0.99), "p99 {{model}}"),
        ],
    ),
    (
        "Requests per second by outcome",
        "reqps",
        [("sum by (model, outcome) (rate(honed_requests_total[$__rate_interval]))", "{{model}} {{outcome}}")],
    ),
    ("Queue wait p99", "s", [(_quantile("honed_queue_duration_seconds", 0.99), "{{model}}")]),
    ("Compute time per batch p99", "s", [(_quantile("honed_compute_duration_seconds", 0.99), "{{model}}")]),
    (
        "Mean batch size",
        "none",
        [
            (
                "sum by (model) (rate(honed_batch_size_sum[$__rate_interval])) / "
                "sum by (model) (rate(honed_batch_size_count[$__rate_interval]))",
                "{{model}}",
            )
        ],
    ),
    ("Queue depth", "none", [("sum by (model) (honed_queue_depth)", "{{model}}")]),
    ("In-flight requests", "none", [("sum by (model) (honed_inflight_requests)", "{{model}}")]),
    (
        "Error ratio",
        "percentunit",
        [
            (
                f'sum by (model) (rate(honed_requests_total{{outcome!="{SUCCESS}"}}[$__rate_interval])) / '
                "sum by (model) (rate(honed_requests_total[$__rate_interval]))",
                "{{model}}",
            )
        ],
    ),
    (
        "Rollout: canary weight and step",
        "none",
        [
            ("max by (model, version) (honed_rollout_weight)", "weight % {{model}} v{{version}}"),
            ("max by (model) (honed_rollout_step)", "step {{model}}"),
        ],
    ),
    (
        "Rollout: verdicts and agreement",
        "none",
        [
            ("sum by (model, verdict) (increase(honed_rollout_verdicts_total[$__range]))", "{{model}} {{verdict}}"),
            ("max by (model, version) (honed_rollout_agreement)", "agreement {{model}} v{{version}}"),
            (
                "sum by (model) (rate(honed_rollout_mirror_dropped_total[$__rate_interval]))",
                "mirror dropped/s {{model}}",
            ),
        ],
    ),
]


def dashboard() -> dict[str, Any]:
    """The dashboard JSON (import it in Grafana; pick the Prometheus data source when asked)."""
    panels = []
    for i, (title, unit, queries) in enumerate(PANELS):
        panels.append(
            {
                "id": i + 1,
                "type": "timeseries",
                "title": title,
                "datasource": {"type": "prometheus", "uid": "${datasource}"},
                "gridPos": {"h": 8, "w": 12, "x": 12 * (i % 2), "y": 8 * (i // 2)},
                "fieldConfig": {"defaults": {"unit": unit}, "overrides": []},
                "targets": [
                    {"refId": chr(ord("A") + j), "expr": expr, "legendFormat": legend}
                    for j, (expr, legend) in enumerate(queries)
                ],
            }
        )
    return {
        "title": "honed serve",
        "uid": "honed-serve",
        "tags": ["honed"],
        "schemaVersion": 39,
        "time": {"from": "now-6h", "to": "now"},
        "refresh": "30s",
        "templating": {
            "list": [{"name": "datasource", "type": "datasource", "query": "prometheus", "label": "Prometheus"}]
        },
        "panels": panels,
        "description": "honed serve metrics: " + ", ".join(sorted(metric_names())),
    }
