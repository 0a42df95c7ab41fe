"""Attention fusion for exports ONNX Runtime's optimizer does not recognise (``scaled_dot_product_attention``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
import pytest
from onnx import helper
from passes_models import make_attention, make_sdpa_attention

from honed.model import save_model
from honed.passes import PassContext, get_pass
from honed.passes._attention import detect_heads, fuse_attention
from honed.passes._graph import import_used_domains
from honed.runtime import create_session


def _feed(batch: int = 3, seq: int = 7, hidden: int = 16) -> dict[str, np.ndarray]:
    rng = np.random.default_rng(0)
    mask = np.ones((batch, seq), np.int64)
    mask[1, 4:] = 0  # a padded sequence
    mask[2, :] = 0  # an all-padding sequence: every key masked
    return {"x": rng.normal(0, 1, (batch, seq, hidden)).astype(np.float32), "m": mask}


def _run(model: onnx.ModelProto, path: Path, feed: dict[str, np.ndarray]) -> np.ndarray:
    return create_session(save_model(model, path)).run(feed)["y"]


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_sdpa_block_becomes_one_multi_head_attention(tmp_path: Path) -> None:
    model = make_sdpa_attention(hidden=16, heads=2)
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    assert fuse_attention(fused) == 1
    import_used_domains(fused)
    ops = _ops(fused)
    assert ops.count("MultiHeadAttention") == 1
    assert not {"Softmax", "IsNaN", "Transpose"} & set(ops)
    node = next(n for n in fused.graph.node if n.op_type == "MultiHeadAttention")
    attrs = {a.name: helper.get_attribute_value(a) for a in node.attribute}
    assert attrs["num_heads"] == 2 and attrs["scale"] == pytest.approx(8**-0.5, rel=1e-6)
    feed = _feed()
    want = _run(model, tmp_path / "orig.onnx", feed)
    got = _run(fused, tmp_path / "fused.onnx", feed)
    # tokens of sequences with at least one key: the same result
    np.testing.assert_allclose(got[:2], want[:2], rtol=1e-5, atol=1e-5)
    # an all-padding sequence: the export's NaN guard gave zeros, the fused block averages the values; finite
    assert np.isfinite(got[2]).all()


def test_a_block_with_another_reader_is_left_alone() -> None:
    model = make_sdpa_attention()
    model.graph.output.append(helper.make_tensor_value_info("p1", onnx.TensorProto.FLOAT, None))
    before = _ops(model)
    assert fuse_attention(model) == 0
    assert _ops(model) == before
    # a context Reshape that moves the heads to the third axis is not the SDPA no-op reshape
    moved = make_sdpa_attention()
    shape = next(n for n in moved.graph.node if n.op_type == "Concat" and n.output[0] == "c_shape")
    shape.input[2] = "heads"
    assert fuse_attention(moved) == 0
    # before opset 13 a Softmax without an axis flattens from axis 1: not the per-row softmax of attention
    old = make_sdpa_attention()
    softmax = next(n for n in old.graph.node if n.op_type == "Softmax")
    del softmax.attribute[:]
    old.opset_import[0].version = 12
    assert fuse_attention(old) == 0


def test_transformer_fusion_pass_fuses_both_export_styles(tmp_path: Path) -> None:
    p = get_pass("transformer-fusion")
    feed = _feed()
    sdpa = make_sdpa_attention()
    out = p.run(sdpa, {}, PassContext(work_dir=tmp_path))
    assert "MultiHeadAttention" in _ops(out) and "Softmax" not in _ops(out)
    np.testing.assert_allclose(
        _run(out, tmp_path / "a.onnx", feed)[:2], _run(sdpa, tmp_path / "b.onnx", feed)[:2], rtol=1e-5, atol=1e-5
    )
    eager = make_attention(hidden=16, heads=2)
    out = p.run(eager, {}, PassContext(work_dir=tmp_path))
    assert "Softmax" not in _ops(out)
    x = {"x": feed["x"]}
    np.testing.assert_allclose(
        create_session(save_model(out, tmp_path / "c.onnx")).run(x)["y"],
        create_session(save_model(eager, tmp_path / "d.onnx")).run(x)["y"],
        rtol=1e-4,
        atol=1e-4,
    )


def test_heads_are_read_from_concat_built_reshapes() -> None:
    # torch exports with dynamic batch and sequence build the head split as Concat(batch, seq, -1, head_size);
    # the -1 is the projection width (16) over the head size (8)
    assert detect_heads(make_sdpa_attention(hidden=16, heads=2)) == (2, 16)
    assert detect_heads(make_sdpa_attention(hidden=24, heads=4)) == (4, 24)
