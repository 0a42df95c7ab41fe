"""The ``graph`` pass: shape inference, onnxslim simplification and ONNX Runtime's offline graph optimization.

Order: ONNX shape inference, then onnxslim (constant folding, dead-node and redundant-op removal; portable
ONNX), then ONNX Runtime's optimizer at ``basic`` (portable ONNX ops) or ``extended`` (fuses into ONNX
Runtime contrib ops, so only ONNX Runtime can run the result). ONNX Runtime's ``all`` level adds memory
layout changes tied to the machine's kernels; a file written with it does not port, so it is not offered
(sessions apply it at load time anyway).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import onnx

from honed.passes._graph import first_line, read, scratch_dir, write
from honed.passes.base import Param, Pass, PassContext, PassError


class GraphPass(Pass):
    name: ClassVar[str] = "graph"
    description: ClassVar[str] = (
        "shape inference, onnxslim simplification and ONNX Runtime offline graph optimization (basic/extended)"
    )
    params: ClassVar[tuple[Param, ...]] = (
        Param(
            "level",
            str,
            "basic",
            "ONNX Runtime offline optimization level: none, basic (portable ONNX) or extended (ORT contrib ops)",
            choices=("none", "basic", "extended"),
        ),
        Param("slim", bool, True, "simplify with onnxslim (constant folding, dead and redundant node removal)"),
        Param("shape_inference", bool, True, "run ONNX shape inference first so later tools see tensor shapes"),
    )
    targets: ClassVar[tuple[str, ...]] = (
        "onnxruntime/cpu",
        "onnxruntime/cuda",
        "onnxruntime/tensorrt",
        "openvino/cpu",
    )

    def skip_for(self, ctx: PassContext, params: Mapping[str, Any] | None, model: onnx.ModelProto | None) -> str | None:
        extended = bool(params) and self.validate_params(params)["level"] == "extended"
        if ctx.target_backend != "onnxruntime" and extended:
            return f"level 'extended' writes ONNX Runtime contrib ops that {ctx.target_backend} cannot load"
        return None

    def search_space(self, ctx: PassContext) -> list[dict[str, Any]]:
        levels = ["extended", "basic"] if ctx.target_backend == "onnxruntime" else ["basic"]
        return [self.resolve({"level": level, "slim": True}, ctx) for level in levels]

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        if params["shape_inference"]:
            try:
                model = onnx.shape_inference.infer_shapes(model, check_type=False, strict_mode=False)
            except Exception as exc:  # onnx raises InferenceError and others for graphs it cannot follow
                raise PassError(f"ONNX shape inference failed: {first_line(exc)}") from exc
        if params["slim"]:
            model = _slim(model)
        if params["level"] != "none":
            model = _ort_optimize(model, params["level"], ctx)
        return model


def _slim(model: onnx.ModelProto) -> onnx.ModelProto:
    import onnxslim

    try:
        slimmed = onnxslim.slim(model)
    except Exception as exc:  # onnxslim raises plain exceptions for graphs it cannot handle
        raise PassError(f"onnxslim failed: {first_line(exc)}") from exc
    if not isinstance(slimmed, onnx.ModelProto):
        raise PassError("onnxslim returned no model")
    return slimmed


def _ort_optimize(model: onnx.ModelProto, level: str, ctx: PassContext) -> onnx.ModelProto:
    from honed.errors import HonedError
    from honed.runtime import write_optimized_model

    # basic rewrites are the same for every provider; extended fusions depend on the provider's kernels
    provider = ctx.target_provider if ctx.target_backend == "onnxruntime" and level == "extended" else "cpu"
    with scratch_dir(ctx) as folder:
        source = write(model, folder)
        target = folder / "optimized.onnx"
        try:
            write_optimized_model(source, target, level, provider=provider)
        except HonedError as exc:
            raise PassError(str(exc)) from exc
        return read(target)
