"""honed optimize end to end on tiny models: outputs, recipe replay, cache resume, exit codes, bad input."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from optimize_models import tiny_data

from honed.cli.main import run
from honed.errors import DataError, InvalidArgument
from honed.hardware import detect_hardware
from honed.model import file_sha256
from honed.search import optimize, parse_duration
from honed.search.document import OptimizeReport

FAST: dict[str, Any] = {"measure_s": 0.02, "final_rounds": 2, "backends": ["onnxruntime"]}


def test_optimize_writes_outputs_and_recipe_replays_same_sha(tmp_path: Path, model: Path, data: Path) -> None:
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="agreement",
        minimum=0.9,
        time_budget="2m",
        passes=["graph", "int8-dynamic"],
        tune_runtime=False,
        cache_dir=tmp_path / "cache",
        **FAST,
    )
    assert result.exit_code in (0, 3)
    out = tmp_path / "out"
    for name in ("model.onnx", "recipe.json", "report.json", "report.html"):
        assert (out / name).is_file()
    report = json.loads((out / "report.json").read_text())
    assert report["schema"] == "honed-optimize-report/1"
    # The typed report reads the real producer's file back to the same JSON.
    assert OptimizeReport.from_dict(report, "report.json").to_dict() == report
    assert report["gate"]["metric"] == "agreement" and report["gate"]["min"] == 0.9
    assert report["candidates"][0]["status"] == "baseline"
    assert {s["pass"] for s in report["skipped"]} >= {"int8-static"} or report["skipped"] == []
    assert report["winner_results"][0]["batch"] == 1 and "p99" in report["winner_results"][0]["latency_ms"]
    assert report["data"]["eval_is_calibration"] is True
    # every candidate that ran was judged by the gate
    assert all(c["status"] in ("baseline", "accepted", "rejected", "slower", "failed") for c in report["candidates"])

    written = onnx.load(str(out / "model.onnx"))
    meta = {p.key: p.value for p in written.metadata_props}
    recipe = json.loads((out / "recipe.json").read_text())
    assert meta["honed_source_sha256"] == file_sha256(model)
    assert meta["honed_recipe_sha256"] == recipe["recipe_sha256"]
    assert recipe["output"]["sha256"] == file_sha256(out / "model.onnx")

    again = optimize(model, out=tmp_path / "again", recipe=out / "recipe.json", data=data)
    assert again.report["reproduced"] is True
    assert file_sha256(tmp_path / "again" / "model.onnx") == recipe["output"]["sha256"]


def test_recipe_with_int8_replays_to_same_sha(tmp_path: Path, model: Path, data: Path) -> None:
    """A recipe whose pass calibrates reproduces byte for byte from the same data."""
    from honed.search.recipe import Recipe

    first = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="cosine",
        minimum=-1.0,
        time_budget="2m",
        passes=["int8-static"],
        tune_runtime=False,
        cache_dir=tmp_path / "cache",
        **FAST,
    )
    built = [c for c in first.report["candidates"] if c["passes"] and c["model_sha256"]]
    assert built, first.report["candidates"]
    # write a recipe for the first int8-static candidate and replay it twice
    rec = Recipe.from_dict(first.report["recipe"])
    from honed.search.candidates import Step

    steps = tuple(Step.from_dict(s) for s in built[0]["passes"])
    recipe = Recipe(**{**rec.__dict__, "steps": steps, "output_sha256": None})
    path = recipe.write(tmp_path / "r.json")
    a = optimize(model, out=tmp_path / "a", recipe=path, data=data)
    b = optimize(model, out=tmp_path / "b", recipe=tmp_path / "a" / "recipe.json", data=data)
    assert b.report["reproduced"] is True
    assert file_sha256(a.model_path) == file_sha256(b.model_path)
    with pytest.raises(DataError, match="same file with --data"):
        optimize(model, out=tmp_path / "c", recipe=path)


def test_cache_makes_a_rerun_measure_nothing(tmp_path: Path, model: Path, data: Path) -> None:
    kwargs: dict[str, Any] = dict(
        data=data, metric="agreement", minimum=0.9, time_budget="2m", passes=["graph"], cache_dir=tmp_path / "c"
    )
    first = optimize(model, out=tmp_path / "o1", tune_runtime=False, **kwargs, **FAST)
    results = sorted((tmp_path / "c" / "results").iterdir())
    assert not any(c["cached"] for c in first.report["candidates"])
    second = optimize(model, out=tmp_path / "o2", tune_runtime=False, **kwargs, **FAST)
    assert all(c["cached"] for c in second.report["candidates"] if c["status"] != "not-run")
    assert sorted((tmp_path / "c" / "results").iterdir()) == results
    assert second.report["winner"]["label"] == first.report["winner"]["label"]
    assert file_sha256(tmp_path / "o1" / "model.onnx") == file_sha256(tmp_path / "o2" / "model.onnx")
    assert first.report["profile"]["baseline"]  # the op profile is cached too: the rerun reads, not profiles
    assert second.report["profile"] == first.report["profile"]


def test_resume_after_interruption_reuses_finished_candidates(tmp_path: Path, model: Path, data: Path) -> None:
    """A run cut short by its budget leaves cached candidates; the next run picks them up."""
    ticks = iter(range(10_000))

    def clock() -> float:  # each reading advances 1 s: the 12 s budget runs out part way through
        return float(next(ticks))

    kwargs: dict[str, Any] = dict(
        data=data, metric="agreement", minimum=0.5, passes=["graph", "int8-dynamic"], cache_dir=tmp_path / "c"
    )
    cut = optimize(model, out=tmp_path / "o1", time_budget=12, clock=clock, tune_runtime=False, **kwargs, **FAST)
    assert cut.report["budget_exhausted"] is True
    assert cut.report["stop_reason"] == "budget-spent"
    assert any(u["reason"] == "budget" for u in cut.report["untried"])
    assert (tmp_path / "o1" / "model.onnx").is_file()  # best-so-far is written even when cut short
    assert cut.report["final_compared"] is False
    done_first = {c["label"] for c in cut.report["candidates"] if c["status"] not in ("not-run",)}
    full = optimize(model, out=tmp_path / "o2", time_budget="2m", tune_runtime=False, **kwargs, **FAST)
    cached = {c["label"] for c in full.report["candidates"] if c["cached"]}
    assert done_first <= cached


def test_budget_nobody_meets_exits_3_with_closest(tmp_path: Path, model: Path, data: Path) -> None:
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="sqnr",
        minimum=250.0,
        time_budget="2m",
        passes=["int8-dynamic"],
        tune_runtime=False,
        cache_dir=tmp_path / "cache",
        **FAST,
    )
    assert result.exit_code == 3
    report = result.report
    assert report["status"] == "baseline-only" and report["winner"]["id"] == report["baseline"]["id"]
    assert (tmp_path / "out" / "model.onnx").is_file()
    tried = [c for c in report["candidates"] if c["status"] in ("rejected", "slower")]
    assert tried
    for entry in report["closest"]:
        assert entry["margin"] < 0


def test_cli_exit_codes_and_bad_input(
    tmp_path: Path, model: Path, data: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    common = ["--out", str(tmp_path / "o"), "--measure", "0.02", "--rounds", "2", "--backends", "onnxruntime"]
    common += ["--cache-dir", str(tmp_path / "c"), "--no-tune"]
    code = run(
        [
            "optimize",
            str(model),
            "--data",
            str(data),
            "--metric",
            "sqnr",
            "--min",
            "250",
            "--passes",
            "int8-dynamic",
            *common,
        ]
    )
    assert code == 3
    assert "no candidate beat the original" in capsys.readouterr().out

    wrong_name = tiny_data(tmp_path / "wrong.npz", 40)
    np.savez(wrong_name, y=np.zeros((40, 16), np.float32))
    assert run(["optimize", str(model), "--data", str(wrong_name), *common]) == 2
    assert "honed: error:" in capsys.readouterr().err

    few = tiny_data(tmp_path / "few.npz", 20)
    assert (
        run(["optimize", str(model), "--eval-data", str(few), "--metric", "agreement", "--min", "0.99", *common]) == 2
    )
    err = capsys.readouterr().err
    assert "at least 100" in err and "Traceback" not in err

    assert run(["optimize", str(model), "--time-budget", "soon", *common]) == 2
    assert run(["optimize", str(model), "--metric", "accuracy", *common]) == 2
    assert "--labels" in capsys.readouterr().err


def test_too_few_calibration_samples(tmp_path: Path, model: Path) -> None:
    few = tiny_data(tmp_path / "few.npz", 3)
    with pytest.raises(DataError, match="at least 8"):
        optimize(model, out=tmp_path / "o", data=few, **FAST)


def test_parse_duration() -> None:
    assert parse_duration("10m") == 600
    assert parse_duration("1h30m") == 5400
    assert parse_duration("90s") == parse_duration(90) == 90
    with pytest.raises(InvalidArgument):
        parse_duration("0")


def test_synthetic_run_says_so_and_html_is_self_contained(tmp_path: Path, model: Path) -> None:
    result = optimize(
        model,
        out=tmp_path / "out",
        time_budget="1m",
        passes=["graph"],
        tune_runtime=False,
        cache_dir=tmp_path / "cache",
        **FAST,
    )
    report = result.report
    assert report["data"]["synthetic"] is True and report["data"]["eval"]["source"] == "synthetic"
    assert report["gate"]["metric"] == "agreement" and "auto" in report["gate"]["reason"]
    assert result.html_path is not None
    page = result.html_path.read_text()
    assert "<svg" in page and "synthetic inputs" in page
    assert "src=" not in page and "href=" not in page and "<script" not in page  # nothing fetched


def test_labels_pick_accuracy_and_its_default_bound(tmp_path: Path, model: Path, data: Path) -> None:
    from honed.runtime import create_session

    x = np.load(data)["x"]
    labels = create_session(model).run({"x": x})["probs"].argmax(axis=1)
    labels[:4] = (labels[:4] + 1) % 4  # the original gets 36 of 40 right
    np.save(tmp_path / "labels.npy", labels)
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        labels=tmp_path / "labels.npy",
        time_budget="1m",
        passes=["graph"],
        tune_runtime=False,
        cache_dir=tmp_path / "cache",
        **FAST,
    )
    gate = result.report["gate"]
    assert gate["metric"] == "accuracy"
    assert gate["min"] == pytest.approx(0.9 - 0.01)
    with pytest.raises(DataError, match="labels"):
        np.save(tmp_path / "short.npy", labels[:5])
        optimize(model, out=tmp_path / "o2", data=data, labels=tmp_path / "short.npy", **FAST)


def test_throughput_objective_with_openvino_candidates(tmp_path: Path, model: Path, data: Path) -> None:
    pytest.importorskip("openvino")
    # The machine the candidates are chosen for has no BF16/FP16 arithmetic, whatever this CPU has: f32 only.
    without_low_precision = tuple(
        n for n in detect_hardware().isa if n not in {"avx512_bf16", "amx_bf16", "avx512_fp16", "amx_fp16"}
    )
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="cosine",
        minimum=0.99,
        batch=4,
        objective="throughput",
        time_budget="2m",
        backends=["onnxruntime", "openvino"],
        passes=["graph"],
        tune_runtime=False,
        measure_s=0.02,
        final_rounds=2,
        cache_dir=tmp_path / "cache",
        hardware=dataclasses.replace(detect_hardware(), isa=without_low_precision),
    )
    report = result.report
    assert report["settings"]["objective"] == "throughput"
    assert "avx512_bf16" not in report["hardware"]["isa"]
    ov = [c for c in report["candidates"] if c["backend"] == "openvino"]
    assert ov and all(c["runtime"]["options"]["INFERENCE_PRECISION_HINT"] == "f32" for c in ov)
    assert all(c["runtime"]["options"]["PERFORMANCE_HINT"] == "THROUGHPUT" for c in ov)
    measured = [c for c in report["candidates"] if c["latency_ms"]]
    assert measured and all(c["throughput_items_per_s"] > 0 for c in measured)
    # The winner's bench row and its candidate row count items per second by one formula.
    row = report["winner_results"][0]
    assert row["batch"] == 4
    assert row["throughput_items_per_s"] == pytest.approx(report["winner"]["throughput_items_per_s"])
