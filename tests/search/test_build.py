"""Builds run in a worker process that the time budget can stop."""

from __future__ import annotations

from pathlib import Path

import pytest
from optimize_models import tiny_classifier

from honed.model import load_model, model_io
from honed.passes import PassError
from honed.search.build import Builder, BuildJob, BuildTimeout
from honed.search.candidates import Step
from honed.search.datasource import DataSource


def _job(tmp_path: Path, steps: tuple[Step, ...], name: str) -> BuildJob:
    source = tiny_classifier(tmp_path / "m.onnx")
    inputs, _ = model_io(load_model(source))
    return BuildJob(
        source=source,
        steps=steps,
        backend="onnxruntime",
        calibration=DataSource(None, inputs, {}, synthetic_samples=8),
        calibration_batch=1,
        calibration_limit=8,
        hardware=None,
        work_dir=tmp_path / "work",
        out_path=tmp_path / f"{name}.onnx",
    )


def test_builder_times_out_then_recovers_and_reports_pass_errors(tmp_path: Path) -> None:
    builder = Builder()
    try:
        with pytest.raises(BuildTimeout):
            builder.build(_job(tmp_path, (Step("graph", {}),), "slow"), timeout_s=0.001)
        built = builder.build(_job(tmp_path, (Step("graph", {"level": "basic"}),), "ok"), timeout_s=120)
        assert load_model(built).graph.node
        with pytest.raises(PassError, match="level"):
            builder.build(_job(tmp_path, (Step("graph", {"level": "nope"}),), "bad"), timeout_s=120)
    finally:
        builder.close()
