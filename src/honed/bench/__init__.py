"""Benchmarks on the target: latency percentiles, throughput, peak memory, per-op time, roofline vs peak."""

from honed.bench.document import (
    SCHEMA,
    BenchDocument,
    BenchModel,
    BenchRow,
    LatencyBlock,
    items_per_second,
    read_bench,
)
from honed.bench.latency import LatencyStats, measure_latency
from honed.bench.profile import OpProfile, OpTime, parse_ort_profile
from honed.bench.runner import BenchProgress, BenchReport, BenchResult, BenchSettings, run_bench

__all__ = [
    "SCHEMA",
    "BenchDocument",
    "BenchModel",
    "BenchProgress",
    "BenchReport",
    "BenchResult",
    "BenchRow",
    "BenchSettings",
    "LatencyBlock",
    "LatencyStats",
    "OpProfile",
    "OpTime",
    "items_per_second",
    "measure_latency",
    "parse_ort_profile",
    "read_bench",
    "run_bench",
]
