"""Turn a search's outcomes into the report's typed parts: a :class:`~honed.search.document.CandidateRow` per
candidate, and the bench-v1 ``results`` entries of the winner and the baseline (``honed plan`` reads them).
"""

from __future__ import annotations

import math
from pathlib import Path

from honed.bench import BenchDocument, BenchModel, BenchRow, LatencyBlock, LatencyStats, items_per_second
from honed.bench.runner import ir_is_quantized, model_precision
from honed.evaluate import AccuracyGate
from honed.hardware import HardwareSpec
from honed.model.artifact import is_ir
from honed.model.loader import load_model
from honed.search.document import CandidateRow, CandidateStatus
from honed.search.engine import Outcome, Settings


def throughput(stats: LatencyStats | None, batch: int) -> float | None:
    """Items per second over the measurement (bench's one formula)."""
    return items_per_second(stats, batch) if stats is not None and stats.wall_s > 0 else None


def precision(outcome: Outcome) -> str:
    """Which peak applies to a candidate (bench's one rule, over the candidate's model and runtime config)."""
    if outcome.model_path is None:
        return "fp32"
    if is_ir(outcome.model_path):
        quantized = ir_is_quantized(outcome.model_path)
        return "int8" if quantized else model_precision(None, outcome.candidate.runtime)
    return model_precision(
        load_model(outcome.model_path, check=False, load_external_data=False), outcome.candidate.runtime
    )


def bench_rows(outcome: Outcome, settings: Settings, hardware: HardwareSpec | None) -> tuple[BenchRow, ...]:
    """The bench-v1 rows for one measured candidate (one row: its batch, threads, concurrency 1)."""
    stats = outcome.latency
    if stats is None or stats.wall_s <= 0:
        return ()
    batch = settings.batch
    items_per_s = items_per_second(stats, batch)
    achieved = settings.flops_per_item * items_per_s / 1e9 if settings.flops_per_item else None
    peak = hardware.peak_gflops(precision(outcome)) if hardware is not None else None
    return (
        BenchRow(
            batch=batch,
            threads=outcome.candidate.runtime.threads or (hardware.default_threads if hardware is not None else 0),
            concurrency=1,
            iterations=stats.count,
            latency_ms=LatencyBlock.from_stats(stats),
            throughput_items_per_s=items_per_s,
            achieved_gflops=achieved,
            peak_fraction=achieved / peak if achieved and peak else None,
            runtime=outcome.candidate.runtime,
        ),
    )


def bench_document(
    outcome: Outcome, settings: Settings, hardware: HardwareSpec, *, model_path: Path, model_sha256: str
) -> BenchDocument | None:
    """A measured candidate as a whole bench-v1 document (what ``honed plan`` reads from an optimize output)."""
    rows = bench_rows(outcome, settings, hardware)
    if not rows:
        return None
    return BenchDocument(
        results=rows,
        model=BenchModel(str(model_path), model_sha256, settings.flops_per_item, precision(outcome)),
        hardware_name=hardware.cpu_model,
        hardware=hardware,
        runtime=outcome.candidate.runtime,
    )


def candidate_row(
    outcome: Outcome, *, baseline: Outcome, gate: AccuracyGate, batch: int, objective: str
) -> CandidateRow:
    """One candidate as a report row."""
    # like with like: medians of the interleaved final rounds when both have them, else first measurements
    both_final = bool(outcome.rounds and baseline.rounds)
    cost = outcome.final_cost(objective) if both_final else outcome.cost_ms(objective)
    base_cost = baseline.final_cost(objective) if both_final else baseline.cost_ms(objective)
    speedup = base_cost / cost if cost and base_cost else None
    fidelity = outcome.fidelity
    latency = outcome.latency
    return CandidateRow(
        id=outcome.id,
        label=outcome.candidate.label(),
        passes=tuple(outcome.candidate.pipeline_dict()),
        backend=outcome.candidate.backend,
        runtime=outcome.candidate.runtime.to_dict(),
        status=CandidateStatus(outcome.status),
        reason=outcome.reason,
        note=outcome.note,
        metric_value=_finite(fidelity.value(gate.metric)) if fidelity else None,
        margin=_finite(gate.margin(fidelity)) if fidelity else None,
        fidelity=fidelity.to_dict() if fidelity else None,
        fidelity_from=outcome.fidelity_from,
        latency_ms=LatencyBlock.from_stats(latency) if latency is not None else None,
        throughput_items_per_s=throughput(outcome.latency, batch),
        final_rounds_ms=tuple(outcome.rounds),
        cost_ms=cost,
        speedup=speedup,
        size_bytes=outcome.size_bytes,
        model_sha256=outcome.model_sha256,
        cached=outcome.cached,
        seconds=round(outcome.seconds, 3),
    )


def _finite(value: float | None) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return float(value)
