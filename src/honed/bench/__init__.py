"""Benchmarks on the target: latency percentiles, throughput, peak memory, per-op time, roofline vs peak."""

from honed.bench.latency import LatencyStats, measure_latency
from honed.bench.profile import OpProfile, OpTime, parse_ort_profile
from honed.bench.runner import SCHEMA, BenchProgress, BenchReport, BenchResult, BenchSettings, run_bench

__all__ = [
    "SCHEMA",
    "BenchProgress",
    "BenchReport",
    "BenchResult",
    "BenchSettings",
    "LatencyStats",
    "OpProfile",
    "OpTime",
    "measure_latency",
    "parse_ort_profile",
    "run_bench",
]
