"""The ``fp16`` pass: convert float32 weights and compute to float16 (for GPU targets).

Uses ONNX Runtime's converter (``onnxruntime.transformers.float16``) with its default block list of ops that
have no float16 kernels, plus the user's ``op_block_list``/``node_block_list``. With ``auto_fallback`` the
converted model is loaded in ONNX Runtime for the target provider (the CPU provider when that one is not
installed here); a node it cannot load in float16 is added to the node block list and the conversion is
retried, up to ``max_fallbacks`` times. ONNX Runtime's CPU provider has few float16 kernels, so the pass is
skipped there: the graph would spend its time in casts.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any, ClassVar

import onnx

from honed.errors import BackendUnavailable, HonedError
from honed.passes._graph import first_line, scratch_dir, write
from honed.passes.base import Param, Pass, PassContext, PassError

_NODE_IN_ERROR = re.compile(r"node with name '([^']+)'|Node \(([^)]+)\)|node name: ([^\s,]+)")


class Fp16Pass(Pass):
    name: ClassVar[str] = "fp16"
    quantizes: ClassVar[bool] = True
    description: ClassVar[str] = "float16 weights and compute (GPU targets), inputs and outputs kept in float32"
    params: ClassVar[tuple[Param, ...]] = (
        Param("keep_io_types", bool, True, "keep float32 model inputs and outputs (casts at the edges)"),
        Param("op_block_list", tuple, (), "op types kept in float32, added to ONNX Runtime's default list"),
        Param("node_block_list", tuple, (), "node names kept in float32"),
        Param("auto_fallback", bool, True, "keep nodes in float32 that ONNX Runtime cannot load in float16"),
        Param("max_fallbacks", int, 16, "most nodes the automatic fallback may keep in float32", min=0, max=10_000),
    )
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cuda", "onnxruntime/tensorrt")
    tolerance: ClassVar[float | None] = 1e-2  # float16 keeps about three significant digits

    def skip_reason(
        self, ctx: PassContext, params: Mapping[str, Any] | None = None, model: onnx.ModelProto | None = None
    ) -> str | None:
        if ctx.target == "onnxruntime/cpu":
            return "FP16 does not speed up ONNX Runtime's CPU provider: it has few float16 kernels and inserts casts"
        if ctx.target_backend == "openvino":
            return "OpenVINO chooses its compute precision at load time (INFERENCE_PRECISION_HINT), not from the file"
        return super().skip_reason(ctx, params, model)

    def unfit(self, model: onnx.ModelProto, params: Mapping[str, Any]) -> str | None:
        return None if _has_float_weights(model) else "the model has no float32 weights to convert"

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        from onnxruntime.transformers.float16 import DEFAULT_OP_BLOCK_LIST

        op_block = sorted(set(DEFAULT_OP_BLOCK_LIST) | set(params["op_block_list"]))
        node_block = list(params["node_block_list"])
        op_types = sorted({n.op_type for n in model.graph.node}, key=lambda t: (-len(t), t))
        for _ in range(params["max_fallbacks"] + 1):
            converted = _convert(model, params["keep_io_types"], op_block, node_block)
            if not params["auto_fallback"]:
                return converted
            message = _load_error(converted, ctx)
            if message is None:
                return converted
            node = _NODE_IN_ERROR.search(message)
            if node is not None:
                name = next(g for g in node.groups() if g)
                if name in node_block:
                    raise PassError(f"ONNX Runtime cannot load the float16 model even with {name!r} in float32")
                node_block.append(name)
                continue
            # some kernels fail without naming the node; keep every node of the op type the message names
            op = next((t for t in op_types if re.search(rf"\b{re.escape(t)}\b", message) and t not in op_block), None)
            if op is None:
                raise PassError(f"ONNX Runtime cannot load the float16 model: {message}")
            op_block.append(op)
        raise PassError(f"more than {params['max_fallbacks']} nodes cannot run in float16; raise max_fallbacks")


def _has_float_weights(model: onnx.ModelProto) -> bool:
    return any(t.data_type == onnx.TensorProto.FLOAT for t in model.graph.initializer)


def _convert(
    model: onnx.ModelProto, keep_io_types: bool, op_block: list[str], node_block: list[str]
) -> onnx.ModelProto:
    import copy

    from onnxruntime.transformers.float16 import convert_float_to_float16

    try:
        out = convert_float_to_float16(
            copy.deepcopy(model), keep_io_types=keep_io_types, op_block_list=op_block, node_block_list=node_block
        )
    except Exception as exc:  # the converter raises plain exceptions for graphs it cannot follow
        raise PassError(f"float16 conversion failed: {first_line(exc)}") from exc
    if not isinstance(out, onnx.ModelProto):
        raise PassError("the float16 converter returned no model")
    # the converter appends its boundary casts at the end of the node list; ONNX needs topological order
    from onnxruntime.transformers.onnx_model import OnnxModel

    OnnxModel(out).topological_sort()
    return out


def _load_error(model: onnx.ModelProto, ctx: PassContext) -> str | None:
    """None when ONNX Runtime loads ``model`` for the target (the CPU provider if that one is absent), else why not."""
    from honed.runtime import RuntimeConfig, create_session

    provider = ctx.target_provider if ctx.target_backend == "onnxruntime" else "cpu"
    with scratch_dir(ctx) as folder:
        path = write(model, folder, "fp16.onnx")
        try:
            try:
                create_session(path, RuntimeConfig(provider=provider, graph_optimization="disable"))
            except BackendUnavailable:
                create_session(path, RuntimeConfig(provider="cpu", graph_optimization="disable"))
        except HonedError as exc:
            return str(exc)
    return None
