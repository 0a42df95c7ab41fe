"""The sensitive-layer fallback scores models the way the gate compares them: padded positions left out."""

from __future__ import annotations

from pathlib import Path

import onnx
import pytest

from honed.evaluate import AccuracyGate, Comparison, MaskSpec
from honed.passes import PassContext
from honed.passes.sensitivity import output_error, rank_dynamic_sensitivity
from tests.graphs import padded_batch, tiny_encoder


def _context(tmp_path: Path) -> PassContext:
    batches = [padded_batch(8, seed=s) for s in range(3)]
    return PassContext(calibration=lambda: iter(batches), work_dir=tmp_path / "work")


def test_output_error_leaves_padding_out_with_the_gates_comparison(tmp_path: Path) -> None:
    original = onnx.load(str(tiny_encoder(tmp_path / "original.onnx")))
    wild_padding = onnx.load(str(tiny_encoder(tmp_path / "pad.onnx", pad_noise=1e4)))
    changed = onnx.load(str(tiny_encoder(tmp_path / "real.onnx", real_noise=3.0)))
    ctx = _context(tmp_path)
    masked = Comparison(AccuracyGate("rel-error", max=0.01), MaskSpec("attention_mask"))

    assert output_error(original, wild_padding, ctx, comparison=masked) == pytest.approx(0.0, abs=1e-6)
    assert output_error(original, wild_padding, ctx) > 10  # without the mask, the padding dominates
    assert output_error(original, changed, ctx, comparison=masked) > 0.1


def test_dynamic_ranking_takes_the_comparison(tmp_path: Path) -> None:
    model = onnx.load(str(tiny_encoder(tmp_path / "original.onnx")))
    ctx = _context(tmp_path)
    masked = Comparison(AccuracyGate("cosine", min=0.99), MaskSpec("attention_mask"))
    plain = rank_dynamic_sensitivity(model, None, ctx)
    real_rows = rank_dynamic_sensitivity(model, None, ctx, comparison=masked)
    assert [e.node for e in plain] == [e.node for e in real_rows] == ["mm"]
    # padding rows are one repeated embedding (id 0); leaving them out changes the product's error
    assert real_rows[0].error != pytest.approx(plain[0].error, rel=1e-9)
