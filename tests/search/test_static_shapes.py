"""The search tries its best OpenVINO candidates compiled for the measured input shapes too (each new best at
once, the top ones again in tuning), judges them afresh, and a winner's recorded static shapes come back through
the recipe."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from honed.runtime import RuntimeConfig, create_session
from honed.search import optimize
from honed.search.document import OptimizeReport


def test_tuning_adds_a_static_shape_copy_of_the_top_openvino_candidates(
    tmp_path: Path, model: Path, data: Path
) -> None:
    pytest.importorskip("openvino")
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="agreement",
        minimum=0.9,
        batch=4,
        time_budget="2m",
        backends=["openvino"],
        passes=[],  # the original model on each backend only, so the top two are the original and an OpenVINO one
        measure_s=0.02,
        final_rounds=2,
        evaluate_slower=True,  # on a tiny model OpenVINO may be slower than the original: tune it all the same
        cache_dir=tmp_path / "cache",
    )
    report = json.loads((tmp_path / "out" / "report.json").read_text())
    assert OptimizeReport.from_dict(report, "report.json").to_dict() == report
    feeds = np.load(data)
    want = [{name: [4, *feeds[name].shape[1:]] for name in feeds.files}]
    static = [c for c in report["candidates"] if c["runtime"].get("static_shapes")]
    assert static, [c["label"] for c in report["candidates"]]
    rows = report["candidates"]
    for row in static:
        assert row["backend"] == "openvino" and row["runtime"]["static_shapes"] == want
        # its parent, the same model and settings without static shapes, was measured before it
        parent = {k: v for k, v in row["runtime"].items() if k != "static_shapes"}
        before = rows[: rows.index(row)]
        assert any(r["passes"] == row["passes"] and r["runtime"] == parent for r in before)
        assert "static 4x" in row["label"]
        # other kernels may compute differently: its fidelity is its own, not its parent's
        assert row["status"] in ("accepted", "rejected", "slower") and row.get("fidelity_from") is None
    assert result.exit_code in (0, 3)


def test_a_recorded_static_config_loads_and_answers_every_batch(tmp_path: Path, model: Path, data: Path) -> None:
    pytest.importorskip("openvino")
    feeds = dict(np.load(data))
    name = next(iter(feeds))
    config = RuntimeConfig(backend="openvino", static_shapes=({name: (4, *feeds[name].shape[1:])},))
    recorded = RuntimeConfig.from_dict(json.loads(json.dumps(config.to_dict())))
    assert recorded == config
    session = create_session(model, recorded)
    plain = create_session(model, RuntimeConfig(backend="openvino"))
    for rows in (4, 3, 1):
        batch = {name: feeds[name][:rows]}
        for out, ref in zip(session.run(batch).values(), plain.run(batch).values(), strict=True):
            np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-6)
