"""The search gives a rejected dynamic-INT8 candidate the sensitive-layer fallback and records it."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest

from honed.report.terminal import stopped
from honed.search import OptimizeResult, optimize
from tests.graphs import outlier_chain, skip_openvino_int8_chain_without_vnni, wide_range_matmuls


def test_rejected_dynamic_int8_gets_a_fallback_that_passes_and_replays(tmp_path: Path) -> None:
    result = _fallback_search(tmp_path, wide_range_matmuls(), "int8-dynamic", time_budget="3m")
    model, data = tmp_path / "model.onnx", tmp_path / "data.npz"
    rows = result.report["candidates"]
    full = [r for r in rows if r["label"].startswith("int8-dynamic(") and "float_nodes" not in r["label"]]
    assert full and all(r["status"] == "rejected" for r in full)
    recovered = [r for r in rows if "float_nodes=2" in r["label"]]
    assert recovered, [(r["label"], r["status"], r.get("note")) for r in rows]
    assert recovered[0]["status"] == "accepted"
    assert "sensitive-layer fallback of" in (recovered[0]["note"] or "")
    order = result.report["candidate_order"]
    assert order["kind"] == "other" and order["vnni"] == (order["isa_class"] != "avx2")

    # whichever candidate won, its recipe rebuilds the same bytes
    again = optimize(model, out=tmp_path / "again", recipe=tmp_path / "out" / "recipe.json", data=data)
    recipe = json.loads((tmp_path / "out" / "recipe.json").read_text())
    assert (
        recipe["output"]["sha256"] == json.loads((tmp_path / "again" / "recipe.json").read_text())["output"]["sha256"]
    )
    assert again.exit_code in (0, 3)


def _fallback_search(
    tmp_path: Path, graph: onnx.ModelProto, pass_name: str, backend: str = "onnxruntime", **options: Any
) -> OptimizeResult:
    """``pass_name`` on ONNX Runtime over ``graph`` (input ``x``), judging every candidate (``evaluate_slower``, so
    a test does not depend on which one ran faster)."""
    model = tmp_path / "model.onnx"
    onnx.save(graph, model)
    data = tmp_path / "data.npz"
    width = graph.graph.input[0].type.tensor_type.shape.dim[1].dim_value
    np.savez(data, x=np.random.default_rng(1).normal(size=(128, width)).astype(np.float32))
    return optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="cosine",
        minimum=0.999,
        batch=4,
        passes=[pass_name],
        backends=[backend],
        tune_runtime=False,
        evaluate_slower=True,
        measure_s=0.02,
        final_rounds=2,
        cache_dir=tmp_path / "cache",
        **options,
    )


def test_a_budget_that_holds_the_static_fallback_runs_it_and_says_why_it_stopped(tmp_path: Path) -> None:
    """Static INT8 of a model it breaks: the one-pass fallback fits the budget, runs, and every move was made."""
    result = _fallback_search(tmp_path, outlier_chain(), "int8-static", time_budget="5m")
    rows = result.report["candidates"]
    assert any("sensitive-layer fallback of" in (r["note"] or "") for r in rows), [
        (r["label"], r["status"], r["note"]) for r in rows
    ]
    assert result.report["stop_reason"] == "all-tried"
    assert all(u["reason"] == "not-applicable" for u in result.report["untried"])
    html = (tmp_path / "out" / "report.html").read_text()
    assert "Why the search stopped" in html and "all-tried" in html
    assert stopped(result.document) == "stopped: every planned move was made"


@pytest.mark.parametrize(("budget", "ran"), [(40, False), (80, True)])
def test_the_fallback_runs_when_its_estimate_fits_and_is_reported_when_not(
    tmp_path: Path, budget: int, ran: bool
) -> None:
    """Time read from a clock that advances 1 s per reading: the same steps cost the same "seconds" every run.
    The static fallback's estimate (one ranking pass and a binary search, costed at what the rejected INT8
    candidate took) fits 80 s but not 40 s; either way the report says why the search stopped."""
    ticks = iter(range(1_000_000))
    result = _fallback_search(
        tmp_path, outlier_chain(), "int8-static", time_budget=budget, clock=lambda: float(next(ticks))
    )
    rows = result.report["candidates"]
    recovered = [r for r in rows if "sensitive-layer fallback of" in (r["note"] or "")]
    untried = [u for u in result.report["untried"] if u["reason"] != "not-applicable"]
    if ran:
        assert recovered and recovered[0]["status"] == "accepted"
        assert result.report["stop_reason"] == "all-tried" and not untried
    else:
        assert not recovered
        assert result.report["stop_reason"] == "unaffordable"
        assert untried and all(u["reason"] == "unaffordable" for u in untried)
        assert "one ranking pass and 5 builds and evaluations" in untried[0]["detail"]
        assert "untried: sensitive-layer fallback of" in (stopped(result.document) or "")


def test_a_rejected_nncf_candidate_gets_accuracy_control_on_openvino_and_replays(tmp_path: Path) -> None:
    """On OpenVINO the fallback is NNCF's accuracy control, validated by the search's gate: the ops it keeps in
    float become nncf-int8's ignored_scope, that candidate is built and judged by the gate like any other (far
    closer to the original than full INT8), and the winner's recipe rebuilds its bytes."""
    pytest.importorskip("nncf")
    pytest.importorskip("openvino")
    skip_openvino_int8_chain_without_vnni()
    result = _fallback_search(tmp_path, outlier_chain(), "nncf-int8", backend="openvino", time_budget="5m")
    rows = result.report["candidates"]
    full = [r for r in rows if r["label"].startswith("nncf-int8(") and "float_nodes" not in r["label"]]
    assert full and all(r["status"] == "rejected" for r in full), [(r["label"], r["status"]) for r in rows]
    recovered = [r for r in rows if "NNCF accuracy control of" in (r["note"] or "")]
    assert recovered, [(r["label"], r["status"], r["note"]) for r in rows]
    for row in recovered:
        kept = int(row["label"].split("float_nodes=")[1].split(")")[0])
        assert 1 <= kept <= 4, "most of the eight MatMuls stay quantized"
        assert row["metric_value"] > max(r["metric_value"] for r in full) + 0.5
        assert row["passes"][-1]["params"]["ignored_scope"]
    recipe = tmp_path / "out" / "recipe.json"
    winner = json.loads(recipe.read_text())
    again = optimize(tmp_path / "model.onnx", out=tmp_path / "again", recipe=recipe, data=tmp_path / "data.npz")
    assert again.exit_code in (0, 3)
    assert (
        winner["output"]["sha256"] == json.loads((tmp_path / "again" / "recipe.json").read_text())["output"]["sha256"]
    )
