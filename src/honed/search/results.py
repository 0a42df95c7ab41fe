"""Turn a search's outcomes into report rows: plain, JSON-ready dicts (the report.json schema's parts).

Also the Pareto front (candidates no other candidate beats on both cost and fidelity) and the bench-v1-shaped
``results`` entries of the winner and the baseline, which ``honed plan`` reads as a profile.
"""

from __future__ import annotations

import math
from typing import Any

from honed.evaluate import AccuracyGate
from honed.search.engine import Outcome, Settings


def latency_block(latency: dict[str, Any] | None) -> dict[str, float] | None:
    """LatencyStats' dict as bench-v1's ``latency_ms`` block."""
    if latency is None:
        return None
    return {k: float(latency[f"{k}_ms"]) for k in ("mean", "p50", "p90", "p99", "min", "max", "std")}


def throughput(latency: dict[str, Any] | None, batch: int) -> float | None:
    """Items per second at concurrency 1: batch / mean latency."""
    if latency is None or not latency.get("mean_ms"):
        return None
    return batch * 1000.0 / float(latency["mean_ms"])


def precision(outcome: Outcome) -> str:
    """Which peak applies to a candidate: ``int8`` when a pass quantized it, ``bf16`` when OpenVINO runs it so."""
    if any(s.name.startswith("int8") or s.name.endswith("int8") for s in outcome.candidate.steps):
        return "int8"
    if outcome.candidate.runtime.options.get("INFERENCE_PRECISION_HINT", "f32") == "bf16":
        return "bf16"
    return "fp32"


def bench_results(outcome: Outcome, settings: Settings, hardware: Any) -> list[dict[str, Any]]:
    """The bench-v1 ``results`` list for one measured candidate (one entry: its batch, threads, concurrency 1)."""
    if outcome.latency is None:
        return []
    batch = settings.batch
    items_per_s = throughput(outcome.latency, batch)
    achieved = settings.flops_per_item * items_per_s / 1e9 if settings.flops_per_item and items_per_s else None
    peak = hardware.peak_gflops(precision(outcome)) if hardware is not None else None
    return [
        {
            "batch": batch,
            "threads": outcome.candidate.runtime.threads,
            "concurrency": 1,
            "iterations": int(outcome.latency.get("count", 0)),
            "latency_ms": latency_block(outcome.latency),
            "throughput_items_per_s": items_per_s,
            "achieved_gflops": achieved,
            "peak_fraction": achieved / peak if achieved and peak else None,
        }
    ]


def candidate_row(
    outcome: Outcome, *, baseline: Outcome, gate: AccuracyGate, batch: int, objective: str
) -> dict[str, Any]:
    """One candidate as a report row."""
    # like with like: medians of the interleaved final rounds when both have them, else first measurements
    both_final = bool(outcome.rounds and baseline.rounds)
    cost = outcome.final_cost(objective) if both_final else outcome.cost_ms(objective)
    base_cost = baseline.final_cost(objective) if both_final else baseline.cost_ms(objective)
    speedup = base_cost / cost if cost and base_cost else None
    fidelity = outcome.fidelity
    return {
        "id": outcome.id,
        "label": outcome.candidate.label(),
        "passes": outcome.candidate.pipeline_dict(),
        "backend": outcome.candidate.backend,
        "runtime": outcome.candidate.runtime.to_dict(),
        "status": outcome.status,
        "reason": outcome.reason,
        "note": outcome.note,
        "metric_value": _finite(fidelity.value(gate.metric)) if fidelity else None,
        "margin": _finite(gate.margin(fidelity)) if fidelity else None,
        "fidelity": fidelity.to_dict() if fidelity else None,
        "fidelity_from": outcome.fidelity_from,
        "latency_ms": latency_block(outcome.latency),
        "throughput_items_per_s": throughput(outcome.latency, batch),
        "final_rounds_ms": outcome.rounds,
        "cost_ms": cost,
        "speedup": speedup,
        "size_bytes": outcome.size_bytes,
        "model_sha256": outcome.model_sha256,
        "cached": outcome.cached,
        "seconds": round(outcome.seconds, 3),
    }


def pareto_front(rows: list[dict[str, Any]], higher_is_better: bool) -> list[str]:
    """Ids of rows with a cost and a metric value that no other such row beats on both (ties kept)."""
    points = [
        (r["id"], float(r["cost_ms"]), float(r["metric_value"]))
        for r in rows
        if r.get("cost_ms") is not None and r.get("metric_value") is not None
    ]

    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    def at_least(a: float, b: float) -> bool:
        return a >= b if higher_is_better else a <= b

    front = []
    for pid, cost, value in points:
        dominated = any(
            (c <= cost and at_least(v, value)) and (c < cost or better(v, value)) for qid, c, v in points if qid != pid
        )
        if not dominated:
            front.append(pid)
    return front


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
