"""Hand-made honed.bench/v1 documents and plan inputs for the plan and deploy tests."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import yaml


def bench_row(batch: int, threads: int, mean_ms: float, throughput: float, concurrency: int = 1) -> dict[str, Any]:
    return {
        "batch": batch,
        "threads": threads,
        "concurrency": concurrency,
        "iterations": 100,
        "latency_ms": {
            "mean": mean_ms,
            "p50": mean_ms,
            "p90": mean_ms * 1.1,
            "p99": mean_ms * 1.3,
            "min": mean_ms * 0.9,
            "max": mean_ms * 1.6,
            "std": mean_ms * 0.05,
        },
        "throughput_items_per_s": throughput,
        "achieved_gflops": None,
        "peak_fraction": None,
    }


ROWS = [bench_row(1, 1, 2.0, 480.0), bench_row(1, 2, 1.3, 740.0), bench_row(8, 2, 5.5, 1450.0)]


def bench_doc(rows: list[dict[str, Any]] | None = None, model_path: str = "model.onnx", **extra: Any) -> dict[str, Any]:
    doc = {
        "schema": "honed.bench/v1",
        "model": {"path": model_path, "sha256": "ab" * 32, "flops_per_item": None},
        "hardware": {"cpu_model": "Test CPU", "logical_cores": 2},
        "runtime": {"backend": "onnxruntime", "provider": "cpu", "intra_op_threads": 1},
        "settings": {"warmup": 5, "iterations": 100, "duration_s": None, "concurrency": 1},
        "results": rows if rows is not None else ROWS,
        "peak_rss_mb": 120.0,
        "profile": None,
    }
    doc.update(extra)
    return doc


def write_json(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data), encoding="utf-8")
    return path


def write_yaml(path: Path, data: Any) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


GPU_PROFILE = {
    "results": [bench_row(32, 1, 4.0, 8000.0)],
    "peak_rss_mb": 900.0,
    "model_load_s": 4.0,
    "hardware": {"cpu_model": "host", "gpus": [{"name": "NVIDIA L4"}]},
}
