"""The sensitive-layer fallback ranks once and bisects: a bounded number of judged models, most nodes quantized."""

from __future__ import annotations

import math
from pathlib import Path

import onnx
import pytest

from honed.evaluate import AccuracyGate, Comparison
from honed.passes import PassContext, get_pass
from honed.passes._quant import has_vnni
from honed.passes.sensitivity import fallback_evaluations, output_error, sensitive_layer_fallback
from honed.passes.tiny_models import calibration_for
from tests.graphs import outlier_chain, variance_chain

BOUND = 0.05


def _quantized(model: onnx.ModelProto) -> set[str]:
    """MatMuls that read a DequantizeLinear's output."""
    dq = {o for n in model.graph.node if n.op_type == "DequantizeLinear" for o in n.output}
    return {n.name for n in model.graph.node if n.op_type == "MatMul" and any(i in dq for i in n.input)}


@pytest.mark.parametrize("pass_name", ["int8-static", "int8-dynamic"])
def test_fallback_recovers_the_bound_in_few_evaluations(tmp_path: Path, pass_name: str) -> None:
    model = outlier_chain(layers=8, outlier=3)
    ctx = PassContext(calibration=calibration_for(model, batches=4), work_dir=tmp_path)
    full = get_pass(pass_name).run(model, {}, ctx)
    assert output_error(model, full, ctx) > BOUND, "the test model must break under full INT8"
    judged: list[float] = []

    def accept(candidate: onnx.ModelProto) -> bool:
        judged.append(output_error(model, candidate, ctx))
        return judged[-1] <= BOUND

    comparison = Comparison(AccuracyGate(metric="cosine", min=0.99))
    result = sensitive_layer_fallback(model, {}, ctx, accept, pass_name=pass_name, comparison=comparison)

    n = len(result.ranking)
    assert result.accepted and output_error(model, result.model, ctx) <= BOUND
    assert len(judged) == result.tried <= math.ceil(math.log2(n)) + 2
    # the outlier pair; without VNNI (AVX2's saturating products) its neighbours too (a Zen 3: mm3 mm4 mm2 mm5)
    allowed = {"mm3", "mm4"} if has_vnni(ctx) else {"mm2", "mm3", "mm4", "mm5"}
    most = len(allowed)
    assert 1 <= len(result.excluded) <= most and set(result.excluded) <= allowed, result.excluded
    assert {"mm3", "mm4"} & set(result.excluded), "the outlier pair is kept in float"
    if pass_name == "int8-static":
        assert len(_quantized(result.model)) >= 8 - most, "most MatMuls stay quantized"
    else:
        assert sum(node.op_type == "MatMulInteger" for node in result.model.graph.node) >= 8 - most
    replay = get_pass(pass_name).run(model, result.params, ctx)
    assert replay.SerializeToString() == result.model.SerializeToString()


def test_the_number_of_judged_models_grows_with_log_n() -> None:
    assert [fallback_evaluations(n) for n in (2, 3, 5, 9, 17, 321)] == [1, 2, 3, 4, 5, 10]
    assert fallback_evaluations(320, 16) == 5  # the search's default cap on nodes kept in float
    assert fallback_evaluations(1) == 0  # nothing can be kept in float without giving back the original
    for n in (2, 10, 100, 320, 10_000):
        assert fallback_evaluations(n) <= math.ceil(math.log2(n)) + 1


def test_a_layer_norm_that_cancels_keeps_only_its_variance_nodes_in_float(tmp_path: Path) -> None:
    """E[a^2] - E[a]^2 over an activation with a huge range: each node's own rounding is small, the cancellation
    downstream is not. Ranking by what each node alone does to the outputs finds the few that matter, so most
    of the graph stays quantized (ranking by local noise kept 19 of 20 nodes in float here)."""
    model = variance_chain()
    ctx = PassContext(calibration=calibration_for(model, batches=4), work_dir=tmp_path)
    full = get_pass("int8-static").run(model, {}, ctx)
    assert output_error(model, full, ctx) > BOUND, "the test model must break under full INT8"

    result = sensitive_layer_fallback(model, {}, ctx, lambda m: output_error(model, m, ctx) <= BOUND)

    assert result.accepted and output_error(model, result.model, ctx) <= BOUND
    # without VNNI every quantized node computes less exactly, so a few more stay in float (a Zen 3: 7 of 20)
    assert len(result.excluded) <= len(result.ranking) // (4 if has_vnni(ctx) else 2), result.excluded
    assert {"sq", "var"} & set(result.excluded), "the variance nodes are the ones kept in float"
    assert len(_quantized(result.model)) >= (7 if has_vnni(ctx) else 5), "most MatMuls stay quantized"
    assert result.tried <= math.ceil(math.log2(len(result.ranking))) + 2
