"""Alert rules for a plan's deployments, as a ``monitoring.coreos.com/v1`` PrometheusRule per namespace.

Per deployment (its ``model`` label is the deployment's name, as ``honed plan --prometheus`` reads it):

* **SLO burn** in the SRE workbook's multi-window, multi-burn-rate style: a page when the last hour *and* the
  last 5 minutes burn the error budget 14.4 times as fast as it allows (2% of a 30-day budget in one hour), a
  ticket when the last 6 hours *and* 30 minutes burn it 6 times as fast (5% in 6 hours); the short window makes the
  alert stop soon after the burn does. Two SLOs: availability (server-side failures, the ``outcome`` values in
  :data:`SERVER_FAILURES`, over all answered requests of ``honed_requests_total``; budget ``1 - objective``) and
  latency (requests slower than the deployment's ``slo_p99_ms``, from ``honed_request_duration_seconds``' bucket at
  the largest bound not above it; budget 1%, since the SLO is a p99);
* **rollback**: a rollout interval judged ``fail`` by the controller (``honed_rollout_verdicts_total``), which rolls
  the candidate back;
* **anomaly**: the request rate over 30 minutes more than :data:`ANOMALY_FACTOR` times, or less than its inverse, the
  same window one week earlier (weekly seasonality), when that window carried traffic.

Metric names, labels and outcomes come from :mod:`honed.serve.contract`; every expression is checked with
``promtool check rules`` in the tests.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from honed.deploy.k8s import labels
from honed.errors import InvalidArgument
from honed.plan.document import Placement, Plan
from honed.serve.contract import LATENCY_BUCKETS_S, REQUEST_DURATION, REQUESTS, ROLLOUT_VERDICTS

SERVER_FAILURES = ("overloaded", "unavailable", "timeout", "error")
"""Outcomes that spend the availability budget; a client's own mistakes (invalid, not_found, denied, cancelled)
do not."""
BURN_WINDOWS: tuple[tuple[str, str, float, str, str], ...] = (
    ("1h", "5m", 14.4, "page", "2m"),
    ("6h", "30m", 6.0, "ticket", "15m"),
)
"""(long window, short window, burn rate, severity, for) per alert, after the SRE workbook's recommendation."""
LATENCY_OBJECTIVE = 0.99
"""The latency SLO is a p99: 1% of requests may be slower than ``slo_p99_ms``."""
ANOMALY_FACTOR = 3.0
ANOMALY_WINDOW = "30m"
DEFAULT_OBJECTIVE = 0.999


def check_objective(objective: float) -> None:
    if not 0.0 < objective < 1.0:
        raise InvalidArgument(f"--slo-objective must be between 0 and 1 (e.g. 0.999), got {objective:g}")


def latency_bound_s(slo_p99_ms: float) -> float:
    """The largest histogram bound not above the SLO (a slower request cannot hide below it); the smallest bound
    for an SLO below every bound."""
    slo_s = slo_p99_ms / 1000.0
    below = [b for b in LATENCY_BUCKETS_S if b <= slo_s + 1e-12]
    return below[-1] if below else LATENCY_BUCKETS_S[0]


def le_matcher(bound_s: float) -> str:
    """``le`` as the Python client writes it (``0.016``, ``10.0``) or as Prometheus 3 normalises it (``10``)."""
    forms = dict.fromkeys((repr(float(bound_s)), f"{bound_s:g}"))
    return "|".join(f.replace(".", "\\\\.") for f in forms)


def _sel(metric: str, model: str, *extra: str) -> str:
    return f"{metric}{{{','.join([f'model={_quote(model)}', *extra])}}}"


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def error_ratio(model: str, window: str) -> str:
    failed = _sel(REQUESTS.name, model, f'outcome=~"{"|".join(SERVER_FAILURES)}"')
    every = _sel(REQUESTS.name, model)
    return f"(sum(rate({failed}[{window}])) or vector(0)) / sum(rate({every}[{window}]))"


def slow_ratio(model: str, window: str, bound_s: float) -> str:
    fast = _sel(f"{REQUEST_DURATION.name}_bucket", model, f'le=~"{le_matcher(bound_s)}"')
    every = _sel(f"{REQUEST_DURATION.name}_count", model)
    return f"1 - sum(rate({fast}[{window}])) / sum(rate({every}[{window}]))"


def _burn_rules(
    placement: Placement, slo: str, ratio: Any, budget: float, what: str, objective: float
) -> list[dict[str, Any]]:
    name = placement.deployment
    rules = []
    for long, short, rate, severity, for_ in BURN_WINDOWS:
        threshold = f"{rate * budget:.6g}"
        rules.append(
            {
                "alert": f"HonedSLOBurn{slo}",
                "expr": f"({ratio(long)}) > {threshold}\nand\n({ratio(short)}) > {threshold}",
                "for": for_,
                "labels": {"severity": severity, "deployment": name, "slo": slo.lower()},
                "annotations": {
                    "summary": f"{name}: requests that {what} burn the error budget {rate:g}x too fast "
                    f"over {long} and {short}",
                    "description": f"Objective {objective:g}: more than {threshold} of requests {what} over the "
                    f"last {long} and {short}; at this rate the 30-day budget is gone in {30 / rate:.1f} days.",
                },
            }
        )
    return rules


def rules(placement: Placement, objective: float = DEFAULT_OBJECTIVE) -> list[dict[str, Any]]:
    """Every alert rule of one deployment."""
    name = placement.deployment
    bound = latency_bound_s(placement.slo_p99_ms)
    every = _sel(REQUESTS.name, name)
    out = _burn_rules(
        placement, "Availability", lambda w: error_ratio(name, w), 1 - objective, "fail on the server", objective
    )
    out += _burn_rules(
        placement,
        "Latency",
        lambda w: slow_ratio(name, w, bound),
        1 - LATENCY_OBJECTIVE,
        f"take longer than {bound * 1000:g} ms",
        LATENCY_OBJECTIVE,
    )
    failed = _sel(ROLLOUT_VERDICTS.name, name, 'verdict="fail"')
    now = f"sum(rate({every}[{ANOMALY_WINDOW}]))"
    before = f"sum(rate({every}[{ANOMALY_WINDOW}] offset 1w))"
    out += [
        {
            "alert": "HonedRolloutRollback",
            "expr": f"sum(increase({failed}[10m])) > 0",
            "labels": {"severity": "ticket", "deployment": name},
            "annotations": {
                "summary": f"{name}: a rollout interval failed and the candidate was rolled back",
                "description": "See `honed rollout status` for the verdict's reasons.",
            },
        },
        {
            "alert": "HonedRequestRateAnomaly",
            "expr": f"({now} > {ANOMALY_FACTOR:g} * {before} or {now} < {before} / {ANOMALY_FACTOR:g})\n"
            f"and {before} > 0",
            "for": "15m",
            "labels": {"severity": "ticket", "deployment": name},
            "annotations": {
                "summary": f"{name}: request rate off its value one week ago by more than {ANOMALY_FACTOR:g}x",
                "description": "`honed plan anomalies --prometheus URL` says what deviated, when and how much.",
            },
        },
    ]
    return out


def prometheus_rules(plan: Plan, objective: float = DEFAULT_OBJECTIVE) -> list[dict[str, Any]]:
    """One PrometheusRule per namespace, one rule group per deployment."""
    check_objective(objective)
    by_ns: dict[str, list[Placement]] = {}
    for p in plan.placements:
        by_ns.setdefault(p.namespace, []).append(p)
    return [rule_object(ns, group, objective) for ns, group in sorted(by_ns.items())]


def rule_object(namespace: str, placements: Sequence[Placement], objective: float) -> dict[str, Any]:
    return {
        "apiVersion": "monitoring.coreos.com/v1",
        "kind": "PrometheusRule",
        "metadata": {"name": "honed-alerts", "namespace": namespace, "labels": labels("honed-alerts")},
        "spec": {"groups": [{"name": f"honed-{p.deployment}", "rules": rules(p, objective)} for p in placements]},
    }
