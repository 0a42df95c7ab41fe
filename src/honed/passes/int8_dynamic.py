"""The ``int8-dynamic`` pass: ONNX Runtime's dynamic quantization (INT8 weights, activations quantized at run time).

Activations are always uint8 in ONNX Runtime's dynamic scheme, so weights in int8 make u8 x s8 products. On
x86 CPUs without VNNI those run on VPMADDUBSW, whose 16-bit intermediate can saturate; ``reduce_range``
(7-bit weights) avoids that, so ``auto`` turns it on exactly when the CPU lacks VNNI. Convolutions are left
out by default: dynamic ConvInteger is slower than FP32 Conv on ONNX Runtime's CPU provider.
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import onnx

from honed.passes._graph import upgrade_opset
from honed.passes._quant import ensure_node_names, has_vnni, nodes_of, quant_type, run_quantizer
from honed.passes.base import AUTO, Param, Pass, PassContext

DYNAMIC_MIN_OPSET = 11
DYNAMIC_OPS = ("MatMul", "Attention", "LSTM", "Gather", "EmbedLayerNormalization", "Transpose", "Conv")


class Int8DynamicPass(Pass):
    name: ClassVar[str] = "int8-dynamic"
    quantizes: ClassVar[bool] = True
    description: ClassVar[str] = "ONNX Runtime dynamic INT8 quantization of weights (activations quantized at run time)"
    params: ClassVar[tuple[Param, ...]] = (
        Param("per_channel", bool, False, "one scale per output channel of each weight (more accurate)"),
        Param(
            "reduce_range",
            bool,
            AUTO,
            "7-bit weights, avoiding u8 x s8 saturation on CPUs without VNNI (auto: on exactly when VNNI is absent)",
            auto=True,
        ),
        Param("weight_type", str, "int8", "weight type", choices=("int8", "uint8")),
        Param(
            "op_types",
            tuple,
            ("MatMul", "Attention", "LSTM"),
            "op types to quantize (Conv is left out by default: dynamic ConvInteger is slow on CPU)",
            choices=DYNAMIC_OPS,
        ),
        Param("nodes_to_exclude", tuple, (), "node names to keep in float"),
    )
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cpu",)
    tolerance: ClassVar[float | None] = 0.1  # 8-bit weights and activations

    def choose_auto(self, params: dict[str, Any], ctx: PassContext) -> dict[str, Any]:
        return {"reduce_range": not has_vnni(ctx)}

    def unfit(self, model: onnx.ModelProto, params: Mapping[str, Any]) -> str | None:
        ops = params["op_types"]
        return None if nodes_of(model, ops) else f"the model has no {'/'.join(ops)} node for dynamic INT8 to quantize"

    def search_space(self, ctx: PassContext) -> list[dict[str, Any]]:
        return [self.resolve({"per_channel": pc}, ctx) for pc in (True, False)]

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        from onnxruntime.quantization import quantize_dynamic

        model = upgrade_opset(model, DYNAMIC_MIN_OPSET)
        ensure_node_names(model)

        def quantize(source: Path, target: Path) -> None:
            quantize_dynamic(
                source,
                target,
                op_types_to_quantize=list(params["op_types"]),
                per_channel=params["per_channel"],
                reduce_range=params["reduce_range"],
                weight_type=quant_type(params["weight_type"]),
                nodes_to_exclude=list(params["nodes_to_exclude"]),
                # after transformer-fusion, shape inference cannot type the outputs of ONNX Runtime's
                # contrib ops (SkipLayerNormalization, FastGelu ...); they are float tensors
                extra_options={"MatMulConstBOnly": True, "DefaultTensorType": onnx.TensorProto.FLOAT},
            )

        return run_quantizer(model, ctx, quantize, "dynamic quantization failed")
