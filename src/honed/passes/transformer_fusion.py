"""The ``transformer-fusion`` pass: ONNX Runtime's transformer optimizer for BERT-like graphs.

``onnxruntime.transformers.optimizer`` rewrites attention, LayerNorm (+ residual: SkipLayerNormalization),
GELU and embedding subgraphs into ONNX Runtime's fused contrib ops, which only ONNX Runtime runs. Attention
blocks it does not recognise (exports of ``scaled_dot_product_attention``) are then fused into
``MultiHeadAttention`` by :mod:`honed.passes._attention`. Only the optimizer's Python-level fusions run here
(``opt_level=0``); the session-level graph optimizations are the ``graph`` pass's job. The number of attention
heads and the hidden size are read from the graph's head-splitting Reshape (``[0, 0, heads, head_size]``, or a
Concat of batch, sequence, heads and head size) unless given. A graph without attention (a Softmax over a
MatMul of two activations) is not transformer-like and the pass is skipped.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, ClassVar

import onnx

from honed.passes._attention import detect_heads, fuse_attention
from honed.passes._graph import first_line, import_used_domains
from honed.passes.base import Param, Pass, PassContext, PassError

MODEL_TYPES = ("bert", "bart", "gpt2", "vit", "swin", "clip", "t5", "unet")


class TransformerFusionPass(Pass):
    name: ClassVar[str] = "transformer-fusion"
    description: ClassVar[str] = "fuse attention, LayerNorm and GELU subgraphs into ONNX Runtime's transformer ops"
    params: ClassVar[tuple[Param, ...]] = (
        Param("model_type", str, "bert", "architecture family the fusions look for", choices=MODEL_TYPES),
        Param("num_heads", int, 0, "attention heads (0: read from the graph)", min=0, max=4096),
        Param("hidden_size", int, 0, "hidden size (0: read from the graph)", min=0, max=1 << 20),
    )
    targets: ClassVar[tuple[str, ...]] = ("onnxruntime/cpu", "onnxruntime/cuda", "onnxruntime/tensorrt")

    def unfit(self, model: onnx.ModelProto, params: Mapping[str, Any]) -> str | None:
        if is_transformer_like(model):
            return None
        return "the graph has no attention block (Softmax over a MatMul of two activations): not transformer-like"

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        from onnxruntime.transformers.optimizer import optimize_model

        heads, hidden = params["num_heads"], params["hidden_size"]
        if not heads or not hidden:
            found_heads, found_hidden = detect_heads(model)
            heads, hidden = heads or found_heads, hidden or found_hidden
        before = _op_counts(model)
        try:
            optimized = optimize_model(
                model,
                model_type=params["model_type"],
                num_heads=heads,
                hidden_size=hidden,
                opt_level=0,
                use_gpu=ctx.target_provider in ("cuda", "tensorrt"),
            )
        except Exception as exc:  # the optimizer raises plain exceptions for graphs it cannot follow
            raise PassError(f"transformer fusion failed: {first_line(exc)}") from exc
        out = optimized.model
        fuse_attention(out)  # the blocks ONNX Runtime's optimizer does not recognise (SDPA exports)
        out = import_used_domains(out)
        if _op_counts(out) == before:
            raise PassError("onnxruntime.transformers found nothing to fuse in this graph")
        return out


def is_transformer_like(model: onnx.ModelProto) -> bool:
    """Whether a Softmax reads (through element-wise scaling/masking) a MatMul of two non-constant tensors."""
    graph = model.graph
    consts = {t.name for t in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}
    producer = {o: n for n in graph.node for o in n.output}
    for node in graph.node:
        if node.op_type != "Softmax":
            continue
        current = producer.get(node.input[0])
        for _ in range(4):  # Mul/Div by a scale, Add of a mask, Where ...
            if current is None:
                break
            if current.op_type == "MatMul" and all(i not in consts for i in current.input):
                return True
            current = next((producer[i] for i in current.input if i in producer and i not in consts), None)
    return False


def _op_counts(model: onnx.ModelProto) -> dict[str, int]:
    counts: dict[str, int] = {}
    for node in model.graph.node:
        counts[node.op_type] = counts.get(node.op_type, 0) + 1
    return counts
