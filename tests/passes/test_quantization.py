"""int8-dynamic, int8-static and the sensitive-layer fallback on tiny models."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper
from passes_models import calibration_for, make_cnn, make_mlp

from honed.errors import DataError
from honed.passes import PassContext, PassError, get_pass
from honed.passes._graph import opset
from honed.passes.sensitivity import output_error, rank_sensitivity, sensitive_layer_fallback
from tests.graphs import wide_range_matmuls


def _ops(model: onnx.ModelProto) -> list[str]:
    return [n.op_type for n in model.graph.node]


def test_dynamic_quantizes_matmuls_and_honours_exclusions(tmp_path: Path) -> None:
    p = get_pass("int8-dynamic")
    ctx = PassContext(work_dir=tmp_path)
    out = p.run(make_mlp(), {}, ctx)
    assert _ops(out).count("MatMulInteger") == 3
    kept = p.run(make_mlp(), {"nodes_to_exclude": ["mm2"]}, ctx)
    assert _ops(kept).count("MatMulInteger") == 2 and "mm2" in {n.name for n in kept.graph.node}


def test_dynamic_skips_a_model_without_its_op_types(tmp_path: Path) -> None:
    reason = get_pass("int8-dynamic").skip_reason(PassContext(), None, make_cnn())
    assert reason is not None and "MatMul" in reason


def test_static_upgrades_the_opset_and_inserts_qdq(tmp_path: Path) -> None:
    model = make_mlp(opset=11)
    out = get_pass("int8-static").run(model, {}, PassContext(calibration=calibration_for(model), work_dir=tmp_path))
    assert opset(out) >= 13
    assert "QuantizeLinear" in _ops(out) and "DequantizeLinear" in _ops(out)


def test_static_excluded_nodes_stay_float(tmp_path: Path) -> None:
    model = make_cnn()
    ctx = PassContext(calibration=calibration_for(model), work_dir=tmp_path)
    out = get_pass("int8-static").run(model, {"nodes_to_exclude": ["conv2"], "preprocess": False}, ctx)
    producers = {o: n.op_type for n in out.graph.node for o in n.output}
    conv1 = next(n for n in out.graph.node if n.name == "conv1")
    conv2 = next(n for n in out.graph.node if n.name == "conv2")
    assert producers[conv1.input[1]] == "DequantizeLinear"
    assert producers.get(conv2.input[1]) != "DequantizeLinear"


def test_static_reads_at_most_calibration_batches(tmp_path: Path) -> None:
    model = make_mlp()
    read: list[int] = []

    def source() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        for i, batch in enumerate(calibration_for(model, batches=50)()):
            read.append(i)
            yield batch

    get_pass("int8-static").run(model, {"calibration_batches": 3}, PassContext(calibration=source, work_dir=tmp_path))
    assert read and max(read) < 3


def test_static_refuses_calibration_data_without_the_model_inputs(tmp_path: Path) -> None:
    def wrong() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        yield {"not_x": np.zeros((2, 16), np.float32)}

    with pytest.raises(DataError, match="lacks model input"):
        get_pass("int8-static").run(make_mlp(), {}, PassContext(calibration=wrong, work_dir=tmp_path))


def test_fallback_recovers_a_passing_int8_model_that_full_int8_breaks(tmp_path: Path) -> None:
    model = wide_range_matmuls()
    ctx = PassContext(calibration=calibration_for(model, batches=4), work_dir=tmp_path)
    bound = 0.05
    full = get_pass("int8-static").run(model, {}, ctx)
    assert output_error(model, full, ctx) > bound, "the test model must break under full INT8"

    result = sensitive_layer_fallback(model, {}, ctx, accept=lambda m: output_error(model, m, ctx) <= bound)

    assert result.accepted
    assert 1 <= len(result.excluded) <= 2 and set(result.excluded) <= {"mm1", "mm2"}
    assert "mm3" not in result.excluded
    assert output_error(model, result.model, ctx) <= bound
    assert result.ranking[-1].error < result.ranking[0].error
    # the recipe form replays to the same bytes
    replay = get_pass("int8-static").run(model, result.params, ctx)
    assert replay.SerializeToString() == result.model.SerializeToString()


def test_fallback_returns_full_int8_when_it_already_passes(tmp_path: Path) -> None:
    model = make_cnn()
    ctx = PassContext(calibration=calibration_for(model), work_dir=tmp_path)
    result = sensitive_layer_fallback(model, {}, ctx, accept=lambda m: True)
    assert result.accepted and result.excluded == () and result.tried == 1


def test_ranking_puts_the_crushing_layers_first(tmp_path: Path) -> None:
    model = wide_range_matmuls()
    ctx = PassContext(calibration=calibration_for(model, batches=2), work_dir=tmp_path)
    ranking = rank_sensitivity(model, {"preprocess": False}, ctx, batches=2)
    assert [e.node for e in ranking[:2]] == ["mm1", "mm2"] or [e.node for e in ranking[:2]] == ["mm2", "mm1"]


def test_dynamic_fallback_recovers_a_model_full_dynamic_int8_breaks(tmp_path: Path) -> None:
    model = wide_range_matmuls()
    ctx = PassContext(calibration=calibration_for(model, batches=4), work_dir=tmp_path)
    bound = 0.05
    full = get_pass("int8-dynamic").run(model, {}, ctx)
    assert output_error(model, full, ctx) > bound, "the test model must break under full dynamic INT8"

    result = sensitive_layer_fallback(
        model,
        {},
        ctx,
        accept=lambda m: output_error(model, m, ctx) <= bound,
        pass_name="int8-dynamic",
        full_rejected=True,
    )

    assert result.accepted
    # mm2's input holds one channel 10^4 times larger than the rest (crushed by per-tensor uint8); mm1's
    # weight holds such a column (crushed by per-tensor int8); mm3 stays quantized
    assert set(result.excluded) == {"mm1", "mm2"}
    assert result.ranking[0].node == "mm2"
    assert _ops(result.model).count("MatMulInteger") == 1
    assert output_error(model, result.model, ctx) <= bound
    replay = get_pass("int8-dynamic").run(model, result.params, ctx)
    assert replay.SerializeToString() == result.model.SerializeToString()


def test_fallback_refuses_a_pass_it_cannot_drive(tmp_path: Path) -> None:
    model = make_mlp()
    ctx = PassContext(calibration=calibration_for(model), work_dir=tmp_path)
    with pytest.raises(PassError, match="int8-static and int8-dynamic"):
        sensitive_layer_fallback(model, {}, ctx, accept=lambda m: True, pass_name="fp16")


def _gemm_with_row_bias() -> onnx.ModelProto:
    """x[N,8] -> Gemm(w[8,4], c[1,4]): the [1, N] bias form quant_pre_process writes when it fuses MatMul + Add."""
    rng = np.random.default_rng(1)
    inits = [
        numpy_helper.from_array(rng.normal(0, 0.5, (8, 4)).astype(np.float32), "w"),
        numpy_helper.from_array(rng.normal(0, 0.1, (1, 4)).astype(np.float32), "c"),
    ]
    graph = helper.make_graph(
        [helper.make_node("Gemm", ["x", "w", "c"], ["y"], name="gemm")],
        "row_bias",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 8])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 4])],
        inits,
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    return model


def test_static_per_channel_takes_a_row_shaped_gemm_bias(tmp_path: Path) -> None:
    model = _gemm_with_row_bias()
    ctx = PassContext(calibration=calibration_for(model), work_dir=tmp_path)
    out = get_pass("int8-static").run(model, {"per_channel": True, "preprocess": False}, ctx)
    assert "QuantizeLinear" in _ops(out)
    bias = next(t for t in out.graph.initializer if t.name.startswith("c"))
    assert list(bias.dims) == [4]
    assert output_error(model, out, ctx) < 0.05


def test_quantizers_leave_nothing_in_the_working_directory(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cwd = tmp_path / "cwd"
    cwd.mkdir()
    monkeypatch.chdir(cwd)
    model = make_mlp()
    ctx = PassContext(calibration=calibration_for(model), work_dir=Path("relative-work"))
    get_pass("int8-dynamic").run(model, {"per_channel": True}, ctx)
    get_pass("int8-static").run(model, {"per_channel": True}, ctx)
    assert sorted(p.name for p in cwd.iterdir()) == ["relative-work"]
    assert list((cwd / "relative-work").iterdir()) == []
