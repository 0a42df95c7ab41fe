"""Every registered pass passes the contract battery (honed.passes.checks) on the tiny graphs."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar

import onnx
import pytest

from honed.passes import Param, Pass, PassContext, all_passes, pass_names
from honed.passes.checks import ContractViolation, check_pass

PASSES = pass_names()


def test_every_built_in_pass_is_registered() -> None:
    built_in = {"fp16", "graph", "int8-dynamic", "int8-static", "nncf-int8", "prune", "transformer-fusion"}
    assert built_in <= set(PASSES)
    assert [p.name for p in all_passes()] == PASSES


@pytest.mark.parametrize("name", PASSES)
def test_pass_keeps_the_contract(name: str, tmp_path: Path) -> None:
    assert check_pass(name, tmp_path)


class _Scales(Pass):
    """A broken pass: it doubles every float weight, far outside its tolerance."""

    name: ClassVar[str] = "test-scales"
    description: ClassVar[str] = "doubles the weights"
    params: ClassVar[tuple[Param, ...]] = (Param("factor", float, 2.0, "how much"),)
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cpu",)

    def apply(self, model: onnx.ModelProto, params: dict[str, object], ctx: PassContext) -> onnx.ModelProto:
        for tensor in model.graph.initializer:
            if tensor.data_type == onnx.TensorProto.FLOAT and len(tensor.dims) == 2:
                array = onnx.numpy_helper.to_array(tensor) * float(str(params["factor"]))
                tensor.CopyFrom(onnx.numpy_helper.from_array(array, tensor.name))
        return model


def test_the_battery_catches_a_pass_that_changes_the_outputs(tmp_path: Path) -> None:
    with pytest.raises(ContractViolation, match="tolerance"):
        check_pass(_Scales, tmp_path)
