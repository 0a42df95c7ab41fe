from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from honed.bench import SCHEMA, BenchSettings, run_bench
from honed.bench.document import BenchDocument
from honed.errors import DataError, InvalidArgument
from tests.graphs import int_input_model, matmul_model


@pytest.fixture(scope="module")
def mlp(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return matmul_model(tmp_path_factory.mktemp("m") / "mlp.onnx", k=64, n=32)


def test_report_is_internally_consistent(mlp: Path) -> None:
    settings = BenchSettings(batches=(1, 4), threads=(1, 2), iterations=20, warmup=2)
    report = run_bench(mlp, settings)
    assert [(r.threads, r.batch) for r in report.results] == [(1, 1), (1, 4), (2, 1), (2, 4)]
    assert report.flops_per_item == 2 * 64 * 32
    for r in report.results:
        lat = r.latency
        assert lat.count == 20
        assert lat.min_ms <= lat.p50_ms <= lat.p90_ms <= lat.p99_ms <= lat.max_ms
        # Throughput is items over the measured wall time, which is at least the sum of the call latencies.
        assert r.items_per_s == pytest.approx(r.batch * lat.count / lat.wall_s)
        assert r.items_per_s <= r.batch * 1e3 / lat.mean_ms * 1.001
        assert r.achieved_gflops == pytest.approx(report.flops_per_item * r.items_per_s / 1e9)
        peak = report.hardware.peak_gflops("fp32")
        if peak:
            assert r.peak_fraction == pytest.approx(r.achieved_gflops / peak)
        assert r.peak_rss_mb > 0


def test_json_follows_the_documented_schema(mlp: Path) -> None:
    report = run_bench(mlp, BenchSettings(batches=(2,), iterations=5, profile=True, top_ops=2))
    data = json.loads(json.dumps(report.to_dict()))
    assert data["schema"] == SCHEMA
    assert set(data) >= {"model", "hardware", "runtime", "settings", "results", "peak_rss_mb", "profile"}
    assert data["model"]["precision"] == "fp32"
    (result,) = data["results"]
    assert set(result) >= {
        "batch",
        "threads",
        "concurrency",
        "iterations",
        "latency_ms",
        "throughput_items_per_s",
        "achieved_gflops",
        "peak_fraction",
    }
    assert set(result["latency_ms"]) == {"mean", "p50", "p90", "p99", "min", "max", "std"}
    profile = data["profile"]
    assert profile["batch"] == 2 and profile["runs"] >= 5
    # ORT fuses MatMul+Add into one Gemm kernel before it runs.
    assert any("Gemm" in op["op_type"] or "MatMul" in op["op_type"] for op in profile["by_op_type"])
    assert len(profile["top_nodes"]) <= 2
    # The real producer's document reads back to the same JSON, per-op profile included.
    assert BenchDocument.from_dict(data, "bench.json").to_dict() == data
    assert sum(op["fraction"] for op in profile["by_op_type"]) == pytest.approx(1.0)


def test_concurrency_and_real_data(tmp_path: Path) -> None:
    model = int_input_model(tmp_path / "ints.onnx", length=16)
    data = tmp_path / "d.npz"
    np.savez(data, ids=np.random.default_rng(0).integers(0, 257, (6, 16)).astype(np.int32))
    report = run_bench(model, BenchSettings(batches=(8,), iterations=12, concurrency=3), data=data)
    (result,) = report.results
    assert result.concurrency == 3 and result.latency.count == 12
    assert "d.npz" in report.data


def test_data_that_does_not_fit(tmp_path: Path) -> None:
    model = int_input_model(tmp_path / "ints.onnx", length=16)
    data = tmp_path / "d.npz"
    np.savez(data, ids=np.zeros((4, 15), np.int32))
    with pytest.raises(DataError, match="axis 1"):
        run_bench(model, BenchSettings(iterations=1), data=data)


@pytest.mark.parametrize(
    "kwargs",
    [{"batches": ()}, {"batches": (0,)}, {"threads": (-1,)}, {"concurrency": 0}, {"iterations": 0}, {"top_ops": 0}],
)
def test_bad_settings(kwargs: dict[str, object]) -> None:
    with pytest.raises(InvalidArgument):
        BenchSettings(**kwargs)  # type: ignore[arg-type]


def test_vocab_size_bounds_synthetic_integers(tmp_path: Path) -> None:
    from honed.data import open_dataset
    from honed.model import load_model, model_io

    model = int_input_model(tmp_path / "ints.onnx", length=16)
    inputs, _ = model_io(load_model(model))
    ds = open_dataset(None, inputs, num_samples=8, int_high=7)
    assert next(ds.batches(8))["ids"].max() < 7
    report = run_bench(model, BenchSettings(iterations=2, vocab_size=7))
    assert report.settings.vocab_size == 7
