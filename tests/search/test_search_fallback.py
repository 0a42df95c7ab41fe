"""The search gives a rejected dynamic-INT8 candidate the sensitive-layer fallback and records it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import onnx

from honed.search import optimize
from tests.graphs import wide_range_matmuls


def _wide_range(path: Path) -> Path:
    onnx.save(wide_range_matmuls(), path)
    return path


def test_rejected_dynamic_int8_gets_a_fallback_that_passes_and_replays(tmp_path: Path) -> None:
    model = _wide_range(tmp_path / "wide.onnx")
    data = tmp_path / "data.npz"
    np.savez(data, x=np.random.default_rng(1).normal(size=(128, 8)).astype(np.float32))
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="cosine",
        minimum=0.999,
        batch=4,
        passes=["int8-dynamic"],
        tune_runtime=False,
        evaluate_slower=True,  # judge every candidate, so the test does not depend on which one ran faster
        time_budget="3m",
        measure_s=0.02,
        final_rounds=2,
        cache_dir=tmp_path / "cache",
    )
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
