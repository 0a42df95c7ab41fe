from __future__ import annotations

from pathlib import Path

import pytest

from honed.errors import InvalidArgument
from honed.model import file_sha256
from honed.plan.document import DECLARED, MEASURED
from honed.plan.profiles import declared_profile, measured_profile, parse_bench
from honed.plan.spec import parse_deployments, parse_fleet
from tests.graphs import matmul_model
from tests.plan.helpers import GPU_PROFILE, bench_doc, bench_row, write_json

POOL = {"name": "cpu-ae", "count": 2, "jurisdiction": "AE", "cpu": 8, "memory_gb": 32, "cost_per_hour": 0.5}


def test_fleet_minimal_and_defaults() -> None:
    (pool,) = parse_fleet({"pools": [POOL]})
    assert (pool.count, pool.cpu, pool.jurisdiction, pool.gpus) == (2, 8.0, "AE", 0)


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"colour": "red"}, "unknown field"),
        ({"cpu": 0}, "cpu must be > 0"),
        ({"count": -1}, "count must be a whole number"),
        ({"memory_gb": "lots"}, "memory_gb must be a number"),
        ({"name": "Bad_Name"}, "lowercase"),
    ],
)
def test_fleet_bad_input(change: dict, message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        parse_fleet({"pools": [{**POOL, **change}]})


def test_fleet_missing_field_and_duplicates() -> None:
    entry = dict(POOL)
    del entry["cost_per_hour"]
    with pytest.raises(InvalidArgument, match="missing required field"):
        parse_fleet({"pools": [entry]})
    with pytest.raises(InvalidArgument, match="appears twice"):
        parse_fleet({"pools": [POOL, POOL]})


def test_deployment_paths_must_exist(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="model path does not exist"):
        parse_deployments(
            {"deployments": [{"name": "a", "model": "nope/", "slo_p99_ms": 10, "peak_rps": 5}]}, base=tmp_path
        )
    with pytest.raises(InvalidArgument, match="give model"):
        parse_deployments({"deployments": [{"name": "a", "slo_p99_ms": 10, "peak_rps": 5}]})
    with pytest.raises(InvalidArgument, match="priority"):
        parse_deployments(
            {"deployments": [{"name": "a", "model": ".", "slo_p99_ms": 10, "peak_rps": 5, "priority": "urgent"}]},
            base=tmp_path,
        )


def test_parse_bench_validates_rows() -> None:
    profile = parse_bench(bench_doc(), origin="x", source=MEASURED, model_load_s=0.1)
    assert [p.batch for p in profile.points] == [1, 1, 8]
    assert profile.points[0].p99_ms == pytest.approx(2.6)
    with pytest.raises(InvalidArgument, match="schema"):
        parse_bench({**bench_doc(), "schema": "other"}, origin="x", source=MEASURED, model_load_s=0.1)
    bad = bench_doc([{"batch": 0, "threads": 1, "latency_ms": {"p99": 1, "mean": 1}, "throughput_items_per_s": 1}])
    with pytest.raises(InvalidArgument, match="batch must be"):
        parse_bench(bad, origin="x", source=MEASURED, model_load_s=0.1)


def test_optimize_output_is_read_through_the_real_producer(tmp_path: Path) -> None:
    from honed.search import optimize

    out = tmp_path / "out"
    result = optimize(
        matmul_model(tmp_path / "mlp.onnx"),
        out=out,
        time_budget="30s",
        passes=["graph"],
        tune_runtime=False,
        backends=["onnxruntime"],
        measure_s=0.02,
        final_rounds=1,
        html=False,
        cache_dir=tmp_path / "cache",
    )
    write_json(out / "bench.json", bench_doc())  # report.json wins over a bench.json beside it
    (dep,) = parse_deployments({"deployments": [{"name": "m", "model": str(out), "slo_p99_ms": 10, "peak_rps": 5}]})
    profile = measured_profile(dep)
    assert "report.json" in profile.origin
    assert profile.model_sha256 == file_sha256(result.model_path)
    (point,) = profile.points
    assert point.batch == 1 and point.instances == 1 and point.throughput > 0 and point.p99_ms > 0
    assert 0 < profile.model_load_s < 30  # measured by building a real session
    (out / "report.json").unlink()
    assert measured_profile(dep).points[0].throughput == 480.0


def test_bench_output_is_read_through_the_real_producer(tmp_path: Path) -> None:
    from honed.bench import BenchSettings, run_bench

    model = matmul_model(tmp_path / "mlp.onnx")
    report = run_bench(model, BenchSettings(batches=(1, 4), threads=(1,), iterations=5, warmup=1))
    write_json(tmp_path / "bench.json", report.to_dict())
    (dep,) = parse_deployments(
        {"deployments": [{"name": "m", "profile": str(tmp_path / "bench.json"), "slo_p99_ms": 10, "peak_rps": 5}]}
    )
    profile = measured_profile(dep)
    assert [(p.batch, p.threads) for p in profile.points] == [(1, 1), (4, 1)]
    assert [p.throughput for p in profile.points] == [r.items_per_s for r in report.results]
    assert profile.hardware == report.hardware.cpu_model and profile.model_sha256 == report.sha256


def test_a_report_of_another_schema_or_truncated_names_the_file(tmp_path: Path) -> None:
    out = tmp_path / "out"
    out.mkdir()
    matmul_model(out / "model.onnx")
    (dep,) = parse_deployments({"deployments": [{"name": "m", "model": str(out), "slo_p99_ms": 10, "peak_rps": 5}]})
    write_json(out / "report.json", {"winner": {"results": bench_doc()["results"]}})
    with pytest.raises(InvalidArgument, match=r"report.json: expected schema 'honed-optimize-report/1'"):
        measured_profile(dep)
    (out / "report.json").write_text('{"schema": "honed-optimize-report/1", "status": "impr')
    with pytest.raises(InvalidArgument, match=r"report.json is not valid JSON"):
        measured_profile(dep)


def test_folder_without_profile_is_an_error(tmp_path: Path) -> None:
    matmul_model(tmp_path / "model.onnx")
    (dep,) = parse_deployments({"deployments": [{"name": "m", "model": str(tmp_path), "slo_p99_ms": 1, "peak_rps": 1}]})
    with pytest.raises(InvalidArgument, match="no profile found"):
        measured_profile(dep)


def test_declared_profiles_are_labelled(tmp_path: Path) -> None:
    (pool,) = parse_fleet(
        {"pools": [{**POOL, "name": "gpu", "gpus": 1, "profiles": {"m": GPU_PROFILE}}]}, base=tmp_path
    )
    (dep,) = parse_deployments(
        {
            "deployments": [
                {
                    "name": "m",
                    "profile": str(write_json(tmp_path / "b.json", bench_doc())),
                    "slo_p99_ms": 1,
                    "peak_rps": 1,
                }
            ]
        }
    )
    profile = declared_profile(pool, dep)
    assert profile is not None and profile.source == DECLARED and profile.declared
    assert profile.hardware == "NVIDIA L4"
    with pytest.raises(InvalidArgument, match="model_load_s"):
        parse_bench({"results": GPU_PROFILE["results"]}, origin="y", source=DECLARED)


def test_profiles_of_one_model_merge_and_of_two_models_do_not(tmp_path: Path) -> None:
    a = write_json(tmp_path / "a.json", bench_doc())
    b = write_json(tmp_path / "b.json", bench_doc([bench_row(1, 1, 3.0, 900.0, concurrency=2)], peak_rss_mb=300.0))
    (dep,) = parse_deployments(
        {
            "deployments": [
                {"name": "m", "profile": [str(a), str(b)], "slo_p99_ms": 10, "peak_rps": 5, "model_load_s": 0.1}
            ]
        }
    )
    profile = measured_profile(dep)
    assert [p.instances for p in profile.points] == [1, 1, 1, 2] and profile.peak_rss_mb == 300.0
    other = bench_doc()
    other["model"] = {"sha256": "cd" * 32}
    c = write_json(tmp_path / "c.json", other)
    (dep,) = parse_deployments(
        {
            "deployments": [
                {"name": "m", "profile": [str(a), str(c)], "slo_p99_ms": 10, "peak_rps": 5, "model_load_s": 0.1}
            ]
        }
    )
    with pytest.raises(InvalidArgument, match="different models"):
        measured_profile(dep)
