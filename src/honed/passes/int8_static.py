"""The ``int8-static`` pass: ONNX Runtime static quantization in QDQ format, calibrated on the user's data.

Steps: upgrade the opset to 13 (per-channel QuantizeLinear needs its ``axis``), run ONNX Runtime's
``quant_pre_process`` (shape inference and graph clean-up; when symbolic shape inference fails on the model it
is retried without it, and without pre-processing at all as a last resort), then ``quantize_static`` with a
streaming calibration reader that reads one batch at a time from the source; ONNX Runtime's calibrators keep
the activations of every batch they read until the end, so memory is bounded by ``calibration_batches``.

Types follow ONNX Runtime's guidance: S8S8 (int8 activations and weights) in QDQ is the balanced default; U8S8
is fastest where the CPU has VNNI, and on x86 without VNNI U8S8 can saturate in VPMADDUBSW, so ``auto`` picks
uint8 activations exactly when VNNI is present.

:func:`prepare` and :func:`quantize_prepared` are public so the sensitive-layer fallback can prepare once and
quantize many times; :meth:`Int8StaticPass.apply` is ``quantize_prepared(prepare(model))``.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import onnx

from honed.passes._graph import read, scratch_dir, upgrade_opset, working_in, write
from honed.passes._quant import (
    StreamingCalibrationReader,
    ensure_node_names,
    graph_input_dtypes,
    has_vnni,
    quant_type,
    quiet,
    run_quantizer,
)
from honed.passes.base import AUTO, Param, Pass, PassContext, PassError

QDQ_MIN_OPSET = 13
CALIBRATION_METHODS = ("minmax", "entropy", "percentile")


class Int8StaticPass(Pass):
    name: ClassVar[str] = "int8-static"
    quantizes: ClassVar[bool] = True
    description: ClassVar[str] = "ONNX Runtime static INT8 quantization (QDQ), calibrated on the given data"
    params: ClassVar[tuple[Param, ...]] = (
        Param("calibrate_method", str, "minmax", "how activation ranges are found", choices=CALIBRATION_METHODS),
        Param("per_channel", bool, False, "one scale per output channel of each weight"),
        Param(
            "activation_type",
            str,
            AUTO,
            "activation type (auto: uint8 with VNNI, int8 without)",
            choices=("int8", "uint8"),
            auto=True,
        ),
        Param("weight_type", str, "int8", "weight type", choices=("int8", "uint8")),
        Param("reduce_range", bool, False, "7-bit weights (for U8S8 on CPUs without VNNI)"),
        Param("op_types", tuple, (), "op types to quantize (empty: every op ONNX Runtime can quantize)"),
        Param("nodes_to_exclude", tuple, (), "node names (after pre-processing) to keep in float"),
        Param("calibration_batches", int, 32, "most calibration batches read", min=1, max=100_000),
        Param("percentile", float, 99.999, "percentile of |activation| for the percentile method", min=90, max=100),
        Param("preprocess", bool, True, "run ONNX Runtime's quant_pre_process (shape inference, clean-up) first"),
    )
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cpu", "onnxruntime/cuda", "onnxruntime/tensorrt")
    tolerance: ClassVar[float | None] = 0.1  # 8-bit weights and activations
    tolerance_without_vnni: ClassVar[float | None] = 0.25  # saturating AVX2 products (Zen 3: 0.10 on the tiny CNN)
    needs_calibration: ClassVar[bool] = True

    def choose_auto(self, params: dict[str, Any], ctx: PassContext) -> dict[str, Any]:
        return {"activation_type": "uint8" if has_vnni(ctx) else "int8"}

    def search_space(self, ctx: PassContext) -> list[dict[str, Any]]:
        return [
            self.resolve({"calibrate_method": method, "per_channel": pc}, ctx)
            for method in ("minmax", "percentile", "entropy")
            for pc in (True, False)
        ]

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        prepared = prepare(model, ctx, preprocess=params["preprocess"])
        return quantize_prepared(prepared, params, ctx)


def prepare(model: onnx.ModelProto, ctx: PassContext, *, preprocess: bool = True) -> onnx.ModelProto:
    """The model as it is quantized: opset >= 13, pre-processed, every node named (names are stable)."""
    model = upgrade_opset(model, QDQ_MIN_OPSET)
    if preprocess:
        model = _preprocess(model, ctx)
    ensure_node_names(model)
    return model


def quantize_prepared(
    prepared: onnx.ModelProto,
    params: Mapping[str, Any],
    ctx: PassContext,
    *,
    nodes_to_quantize: tuple[str, ...] | None = None,
    calibration_cache: Path | None = None,
) -> onnx.ModelProto:
    """QDQ-quantize a model from :func:`prepare` with resolved ``params`` (optionally only some nodes).

    ``calibration_cache`` (a JSON file path) lets repeated quantizations of the same prepared model with the
    same calibration settings calibrate once: the first call writes the ranges there, later calls read them.
    """
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, quantize_static

    if ctx.calibration is None:
        raise PassError("static INT8 needs calibration data; pass --data")
    method = {
        "minmax": CalibrationMethod.MinMax,
        "entropy": CalibrationMethod.Entropy,
        "percentile": CalibrationMethod.Percentile,
    }[params["calibrate_method"]]
    reader = StreamingCalibrationReader(
        ctx.calibration, graph_input_dtypes(prepared), max_batches=params["calibration_batches"]
    )
    # not CalibMaxIntermediateOutputs: ONNX Runtime's MinMax calibrator drops (does not fold) the batches it clears
    extra: dict[str, Any] = {"CalibPercentile": params["percentile"]}
    if params["per_channel"]:
        prepared = flatten_broadcast_biases(prepared)

    def quantize(source: Path, target: Path) -> None:
        quantize_static(
            source,
            target,
            reader,
            quant_format=QuantFormat.QDQ,
            op_types_to_quantize=list(params["op_types"]) or None,
            per_channel=params["per_channel"],
            reduce_range=params["reduce_range"],
            activation_type=quant_type(params["activation_type"]),
            weight_type=quant_type(params["weight_type"]),
            nodes_to_quantize=list(nodes_to_quantize) if nodes_to_quantize is not None else None,
            nodes_to_exclude=list(params["nodes_to_exclude"]),
            calibrate_method=method,
            extra_options=extra,
            **_cache_argument(calibration_cache),
        )

    hint = "; try per_channel=false" if params["per_channel"] else ""
    return run_quantizer(prepared, ctx, quantize, "static quantization failed", hint)


def flatten_broadcast_biases(model: onnx.ModelProto) -> onnx.ModelProto:
    """The model with every Gemm/Conv bias initializer of shape ``[1, ..., 1, N]`` stored as ``[N]``.

    ONNX Runtime's per-channel QDQ quantizer adjusts weight scales per output channel against the bias and
    indexes the bias as a vector; a ``[1, N]`` bias (``quant_pre_process`` writes one when it fuses
    MatMul + Add into Gemm, e.g. in Magika) makes it fail with "truth value of an array ... is ambiguous".
    ``[N]`` broadcasts exactly like ``[1, N]`` for Gemm's C and is the only form Conv allows, so the model's
    function is unchanged. A bias shared with other nodes gets its own flattened copy. Returns a copy when
    anything changed, else ``model`` itself.
    """

    def broadcast_bias(node: onnx.NodeProto, inits: dict[str, onnx.TensorProto]) -> bool:
        if node.op_type not in ("Gemm", "Conv", "ConvTranspose") or len(node.input) < 3:
            return False
        tensor = inits.get(node.input[2])
        return tensor is not None and len(tensor.dims) > 1 and all(d == 1 for d in tensor.dims[:-1])

    if not any(broadcast_bias(n, {t.name: t for t in model.graph.initializer}) for n in model.graph.node):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    inits = {t.name: t for t in out.graph.initializer}
    users: dict[str, int] = {}
    for node in out.graph.node:
        for name in node.input:
            users[name] = users.get(name, 0) + 1
    for node in out.graph.node:
        if not broadcast_bias(node, inits):
            continue
        tensor = inits[node.input[2]]
        width = tensor.dims[-1]
        if users[tensor.name] > 1:  # shared: give this node its own copy
            shared = tensor
            tensor = onnx.TensorProto()
            tensor.CopyFrom(shared)
            tensor.name = f"{node.name}_bias_1d"
            out.graph.initializer.append(tensor)
            node.input[2] = tensor.name
        del tensor.dims[:]
        tensor.dims.append(width)
    return out


def _cache_argument(path: Path | None) -> dict[str, Any]:
    from onnxruntime.quantization import quantize_static

    # older ONNX Runtime releases have no calibration cache; they simply calibrate every time
    if path is None or "calibration_cache_path" not in inspect.signature(quantize_static).parameters:
        return {}
    return {"calibration_cache_path": path}


def _preprocess(model: onnx.ModelProto, ctx: PassContext) -> onnx.ModelProto:
    from onnxruntime.quantization.shape_inference import quant_pre_process

    with scratch_dir(ctx) as folder, quiet():
        source = write(model, folder)
        target = folder / "prepared.onnx"
        # symbolic shape inference fails on some graphs (e.g. Magika's); ONNX's own inference then suffices
        for skip_symbolic in (False, True):
            try:
                # on failure, symbolic shape inference dumps its state into the working directory
                with working_in(folder):
                    quant_pre_process(source, target, skip_symbolic_shape=skip_symbolic)
            except Exception:  # pre-processing is an aid; any failure means "try the next way"
                continue
            return read(target)
    return model
