"""graph, transformer-fusion, fp16 and prune: what each one changes, and when each one is skipped."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnx
from onnx import numpy_helper
from passes_models import calibration_for, make_attention, make_cnn, make_mlp

from honed.model import save_model
from honed.passes import PassContext, get_pass
from honed.passes.transformer_fusion import detect_heads, is_transformer_like
from honed.runtime import create_session

CUDA = PassContext(target_provider="cuda")


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def _outputs(model: onnx.ModelProto, tmp_path: Path, name: str) -> dict[str, np.ndarray]:
    feed = next(iter(calibration_for(model, seed=3)()))
    return create_session(save_model(model, tmp_path / f"{name}.onnx")).run(feed)


def test_graph_levels(tmp_path: Path) -> None:
    p = get_pass("graph")
    ctx = PassContext(work_dir=tmp_path)
    model = make_mlp()
    basic = p.run(model, {"level": "basic"}, ctx)
    extended = p.run(model, {"level": "extended"}, ctx)
    assert "FusedGemm" not in _ops(basic) and len(basic.graph.node) < len(model.graph.node)
    assert "FusedGemm" in _ops(extended)
    want = _outputs(model, tmp_path, "fp32")["y"]
    np.testing.assert_allclose(_outputs(extended, tmp_path, "ext")["y"], want, rtol=1e-5, atol=1e-5)
    reason = p.skip_reason(PassContext(target_backend="openvino"), {"level": "extended"}, model)
    assert reason is not None and "openvino" in reason
    assert p.skip_reason(PassContext(target_backend="openvino"), {"level": "basic"}, model) is None
    assert [s["level"] for s in p.search_space(PassContext(target_backend="openvino"))] == ["basic"]


def test_transformer_fusion_fuses_residual_layernorm(tmp_path: Path) -> None:
    p = get_pass("transformer-fusion")
    model = make_attention(hidden=16, heads=2)
    assert is_transformer_like(model) and not is_transformer_like(make_mlp())
    assert detect_heads(model) == (2, 16)
    out = p.run(model, {}, PassContext(work_dir=tmp_path))
    assert "SkipLayerNormalization" in _ops(out) and "LayerNormalization" not in _ops(out)
    np.testing.assert_allclose(
        _outputs(out, tmp_path, "fused")["y"], _outputs(model, tmp_path, "orig")["y"], rtol=1e-4, atol=1e-4
    )
    reason = p.skip_reason(PassContext(), None, make_cnn())
    assert reason is not None and "transformer-like" in reason


def test_fp16_is_skipped_on_cpu_and_converts_for_gpu(tmp_path: Path) -> None:
    p = get_pass("fp16")
    reason = p.skip_reason(PassContext(), None, make_mlp())
    assert reason is not None and "CPU provider" in reason
    out = p.run(make_mlp(), {}, PassContext(target_provider="cuda", work_dir=tmp_path))
    kinds = {t.data_type for t in out.graph.initializer}
    assert onnx.TensorProto.FLOAT16 in kinds and onnx.TensorProto.FLOAT not in kinds
    assert out.graph.input[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    kept = p.run(make_mlp(), {"node_block_list": ["mm3"]}, PassContext(target_provider="cuda", work_dir=tmp_path))
    weights = {t.name: t.data_type for t in kept.graph.initializer}
    assert weights["w3"] == onnx.TensorProto.FLOAT


def _macs(model: onnx.ModelProto) -> int:
    return sum(int(np.prod(t.dims)) for t in model.graph.initializer if len(t.dims) >= 2)


def test_channel_pruning_shrinks_the_weights_and_keeps_the_outputs(tmp_path: Path) -> None:
    p = get_pass("prune")
    ctx = PassContext(work_dir=tmp_path)
    for make in (make_mlp, make_cnn):
        model = make()
        out = p.run(model, {"method": "channels", "sparsity": 0.5}, ctx)
        assert _macs(out) < 0.75 * _macs(model)
        assert _outputs(out, tmp_path, "pruned")["y"].shape == _outputs(model, tmp_path, "orig")["y"].shape
    w = {t.name: numpy_helper.to_array(t) for t in p.run(make_cnn(), {"sparsity": 0.5}, ctx).graph.initializer}
    original = {t.name: numpy_helper.to_array(t) for t in make_cnn().graph.initializer}
    # the kept output channels of conv1 are the 4 with the largest L1 norm
    norms = np.abs(original["c1w"]).reshape(8, -1).sum(axis=1)
    keep = np.sort(np.argsort(norms, kind="stable")[4:])
    np.testing.assert_array_equal(w["c1w"], original["c1w"][keep])
    np.testing.assert_array_equal(w["c2w"], original["c2w"][:, keep])
    reason = p.skip_reason(PassContext(), None, make_attention())
    assert reason is not None and "chain" in reason


def test_magnitude_pruning_reaches_the_sparsity_and_says_it_will_not_be_faster(tmp_path: Path) -> None:
    p = get_pass("prune")
    out = p.run(make_mlp(), {"method": "magnitude", "sparsity": 0.5}, PassContext(work_dir=tmp_path))
    w1 = next(numpy_helper.to_array(t) for t in out.graph.initializer if t.name == "w1")
    assert np.mean(w1 == 0) >= 0.5
    reason = p.skip_reason(PassContext(), {"method": "magnitude"}, make_mlp())
    assert reason is not None and "does not speed up" in reason
