"""FLOP counts of tiny graphs, checked against figures worked out by hand."""

from __future__ import annotations

import numpy as np
import onnx
import pytest
from onnx import TensorProto, helper, numpy_helper

from honed.errors import InvalidArgument
from honed.model import count_flops


def _model(nodes, inputs, outputs, inits=(), opset=17) -> onnx.ModelProto:
    graph = helper.make_graph(nodes, "g", inputs, outputs, list(inits))
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])
    onnx.checker.check_model(model)
    return model


def _w(name: str, *shape: int) -> onnx.TensorProto:
    return numpy_helper.from_array(np.zeros(shape, np.float32), name)


def _in(name: str, shape) -> onnx.ValueInfoProto:
    return helper.make_tensor_value_info(name, TensorProto.FLOAT, shape)


def _out(name: str, rank: int) -> onnx.ValueInfoProto:
    """An output whose shape the model leaves symbolic, so only inference can tell it."""
    return _in(name, [f"{name}{i}" for i in range(rank)])


@pytest.mark.parametrize(("trans_b", "bias"), [(0, False), (1, False), (0, True), (1, True)])
def test_gemm(trans_b: int, bias: bool) -> None:
    m, k, n = 4, 8, 16
    w = _w("W", n, k) if trans_b else _w("W", k, n)
    inits = [w, _w("C", n)] if bias else [w]
    node = helper.make_node("Gemm", ["x", "W", "C"] if bias else ["x", "W"], ["y"], transB=trans_b)
    model = _model([node], [_in("x", ["b", k])], [_in("y", ["b", n])], inits)
    flops = count_flops(model, {"x": (m, k)})
    expected = 2 * m * n * k + (m * n if bias else 0)  # 2 x 512 MACs (+ 64 bias adds)
    assert flops.total == expected
    assert flops.by_op_type == {"Gemm": expected}
    assert flops.uncounted_ops == {}


def test_gemm_trans_a() -> None:
    node = helper.make_node("Gemm", ["x", "W"], ["y"], transA=1)
    model = _model([node], [_in("x", [8, 3])], [_in("y", [3, 5])], [_w("W", 8, 5)])
    assert count_flops(model, {}).total == 2 * 3 * 5 * 8


def test_conv_groups_stride_padding_bias() -> None:
    # x 1x4x9x9, 6 filters, 2 groups (2 input channels each), 3x3 kernel, stride 2, pad 1 -> 1x6x5x5.
    node = helper.make_node("Conv", ["x", "W", "B"], ["y"], group=2, strides=[2, 2], pads=[1, 1, 1, 1])
    model = _model([node], [_in("x", [1, 4, 9, 9])], [_out("y", 4)], [_w("W", 6, 2, 3, 3), _w("B", 6)])
    out = 6 * 5 * 5
    assert count_flops(model, {}).total == 2 * out * (2 * 3 * 3) + out  # 2 x 2700 MACs + 150 bias adds


def test_conv_dilation_without_bias_at_batch() -> None:
    # Dilation 2 makes a 3x3 kernel span 5x5: 10x10 -> 6x6 output, MACs per output unchanged.
    node = helper.make_node("Conv", ["x", "W"], ["y"], dilations=[2, 2])
    model = _model([node], [_in("x", ["n", 3, 10, 10])], [_out("y", 4)], [_w("W", 8, 3, 3, 3)])
    assert count_flops(model, {"x": (2, 3, 10, 10)}).total == 2 * (2 * 8 * 6 * 6) * (3 * 3 * 3)


def test_conv_transpose() -> None:
    # x 1x4x5x5, W 4x3x3x3 (3 output channels), stride 2 -> 1x3x11x11; every input element
    # meets 3x3x3 weights: 100 x 27 MACs, plus one bias add per output element.
    node = helper.make_node("ConvTranspose", ["x", "W", "B"], ["y"], strides=[2, 2])
    model = _model([node], [_in("x", [1, 4, 5, 5])], [_out("y", 4)], [_w("W", 4, 3, 3, 3), _w("B", 3)])
    assert count_flops(model, {}).total == 2 * (4 * 5 * 5) * 27 + 3 * 11 * 11


def test_batched_broadcast_matmul() -> None:
    # (2, 3, 4, 5) @ (3, 5, 6) broadcasts to (2, 3, 4, 6), K = 5.
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = _model([node], [_in("a", [2, 3, 4, 5]), _in("b", [3, 5, 6])], [_out("y", 4)])
    assert count_flops(model, {}).total == 2 * (2 * 3 * 4 * 6) * 5


def test_matmul_vector_operand() -> None:
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = _model([node], [_in("a", [7]), _in("b", [7, 3])], [_out("y", 1)])
    assert count_flops(model, {}).total == 2 * 7 * 3


def _attention_model() -> onnx.ModelProto:
    # scores = Q @ K^T / sqrt(d); attn = Softmax(scores); out = attn @ V; heads h=2, head dim d=8.
    nodes = [
        helper.make_node("Transpose", ["k"], ["kt"], perm=[0, 1, 3, 2]),
        helper.make_node("MatMul", ["q", "kt"], ["scores"]),
        helper.make_node("Div", ["scores", "scale"], ["scaled"]),
        helper.make_node("Softmax", ["scaled"], ["attn"], axis=-1),
        helper.make_node("MatMul", ["attn", "v"], ["out"]),
    ]
    dims = ["batch", 2, "seq", 8]
    inputs = [_in("q", dims), _in("k", dims), _in("v", dims)]
    scale = numpy_helper.from_array(np.array(np.sqrt(8.0), np.float32), "scale")
    return _model(nodes, inputs, [_in("out", dims)], [scale])


def test_attention_matmul_pair_with_symbolic_dims() -> None:
    b, h, s, d = 3, 2, 10, 8
    shapes = {name: (b, h, s, d) for name in ("q", "k", "v")}
    flops = count_flops(_attention_model(), shapes)
    # Q @ K^T: (b,h,s,d) @ (b,h,d,s) -> b*h*s*s outputs of d MACs; attn @ V: b*h*s*d outputs of s MACs.
    expected = 2 * (b * h * s * s * d) + 2 * (b * h * s * d * s)
    assert flops.total == expected
    assert flops.by_op_type == {"MatMul": expected}
    assert flops.uncounted_ops == {"Div": 1, "Softmax": 1}  # Transpose moves data: no FLOPs, not listed
    # Symbolic dims left out default to 1.
    assert count_flops(_attention_model(), {}).total == 2 * (2 * 1 * 1 * 8) * 2


def test_shapes_are_validated() -> None:
    with pytest.raises(InvalidArgument, match="unknown input"):
        count_flops(_attention_model(), {"nope": (1, 2, 3, 8)})
    with pytest.raises(InvalidArgument, match="has 2 dims"):
        count_flops(_attention_model(), {"q": (1, 2)})


def test_failed_shape_inference_is_reported() -> None:
    # Inner dimensions disagree once the shapes are fixed: inference fails, the note says so, and the
    # MatMul is listed as uncounted rather than guessed.
    node = helper.make_node("MatMul", ["a", "b"], ["y"])
    model = _model([node], [_in("a", ["m", "k"]), _in("b", ["j", 4])], [_out("y", 2)])
    flops = count_flops(model, {"a": (2, 3), "b": (5, 4)})
    assert flops.total == 0
    assert flops.uncounted_ops == {"MatMul": 1}
    assert any("shape inference failed" in note for note in flops.notes)


def test_quantized_and_fused_variants() -> None:
    u8 = TensorProto.UINT8
    nodes = [
        helper.make_node("MatMulInteger", ["a", "b"], ["y"]),
        helper.make_node("ConvInteger", ["x", "w"], ["z"]),
    ]
    inputs = [
        helper.make_tensor_value_info("a", u8, [4, 6]),
        helper.make_tensor_value_info("b", u8, [6, 5]),
        helper.make_tensor_value_info("x", u8, [1, 2, 5, 5]),
        helper.make_tensor_value_info("w", u8, [3, 2, 3, 3]),
    ]
    outputs = [
        helper.make_tensor_value_info("y", TensorProto.INT32, ["m", "n"]),
        helper.make_tensor_value_info("z", TensorProto.INT32, ["n", "c", "h", "w"]),
    ]
    flops = count_flops(_model(nodes, inputs, outputs), {})
    assert flops.by_op_type == {"MatMulInteger": 2 * 4 * 5 * 6, "ConvInteger": 2 * (3 * 3 * 3) * (2 * 3 * 3)}


def test_fused_matmul_in_microsoft_domain() -> None:
    node = helper.make_node("FusedMatMul", ["a", "b"], ["y"], domain="com.microsoft", transB=1)
    graph = helper.make_graph([node], "g", [_in("a", [4, 6]), _in("b", [5, 6])], [_out("y", 2)])
    model = helper.make_model(
        graph, opset_imports=[helper.make_opsetid("", 17), helper.make_opsetid("com.microsoft", 1)]
    )
    assert count_flops(model, {}).by_op_type == {"com.microsoft.FusedMatMul": 2 * 4 * 5 * 6}
