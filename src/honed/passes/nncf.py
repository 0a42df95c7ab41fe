"""The ``nncf-int8`` pass: NNCF post-training INT8 quantization through NNCF's OpenVINO backend, written as IR.

The ONNX model is read as OpenVINO's own ``ov.Model`` (``openvino.Core().read_model``) and quantized there
(``nncf.quantize`` with the user's calibration batches): NNCF's OpenVINO backend places FakeQuantize nodes
where OpenVINO's CPU plugin fuses them into INT8 kernels, applies the transformer scheme (and SmoothQuant on
the MatMuls) to encoders, and keeps what a detour through QDQ ONNX loses (a detection CNN: IoU 0.94 where the
ONNX backend's QDQ output compiled by OpenVINO scored 0.004). The artifact is OpenVINO
IR (``.xml`` + ``.bin``, weights kept in f32 on disk), so the pass ends a pipeline and runs on the OpenVINO
backend only (:attr:`~honed.passes.Pass.artifact`).

Encoders exported through ``scaled_dot_product_attention`` guard each Softmax with ``Where(IsNaN(p), 0, p)``
and mask with ``-inf``; the guard keeps OpenVINO from turning the block into one ``ScaledDotProductAttention``
kernel (and, quantized, one fused INT8 attention subgraph). With ``attention_guard=drop`` (tried beside
``keep`` on encoders) the guard is removed and the ``-inf`` masking constants become float32's lowest value,
as :mod:`honed.passes._attention` does for ONNX Runtime: only a row whose every key is masked (an all-padding
sequence) changes, from zeros to the average of the values. MiniLM at batch 32: 1.14x the same NNCF model
with the guard kept, measured interleaved on an AVX-512 VNNI/BF16 CPU.

Replays give the same bytes: NNCF's sampling is seeded from the context, and the names OpenVINO makes up for
the nodes it creates (``Constant_13179``: a process-wide counter) are renumbered by position before saving.
NNCF and OpenVINO are optional (``pip install 'honed[openvino]'``) and imported only when the pass runs.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import random
import tempfile
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import onnx
from onnx import numpy_helper

from honed.model.loader import load_model, save_model
from honed.passes.base import CalibrationSource, Param, Pass, PassContext, PassError

_TRANSFORMER_OPS = {"LayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization", "Erf", "Gelu"}
_SCORE_OPS = {"Add", "Mul", "Div", "Where", "Cast", "Reshape", "Transpose"}  # between QK^T and its Softmax


class _Batches:
    """A re-iterable view of a calibration source (NNCF walks the data more than once)."""

    def __init__(self, source: CalibrationSource) -> None:
        self._source = source

    def __iter__(self) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        return iter(self._source())


def is_encoder(model: onnx.ModelProto) -> bool:
    """Whether the graph has attention: a fused attention/LayerNorm/GELU op, or a MatMul feeding a Softmax
    (through scaling and masking) whose output feeds a MatMul."""
    nodes = list(model.graph.node)
    if {n.op_type for n in nodes} & _TRANSFORMER_OPS:
        return True
    producer = {out: n for n in nodes for out in n.output}
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)

    def from_matmul(name: str, hops: int) -> bool:
        node = producer.get(name)
        if node is None or hops < 0:
            return False
        if node.op_type == "MatMul":
            return True
        return node.op_type in _SCORE_OPS and any(from_matmul(i, hops - 1) for i in node.input)

    def to_matmul(name: str, hops: int) -> bool:
        for node in consumers.get(name, []):
            if node.op_type == "MatMul" or (
                hops > 0 and node.op_type in _SCORE_OPS and any(to_matmul(o, hops - 1) for o in node.output)
            ):
                return True
        return False

    return any(n.op_type == "Softmax" and from_matmul(n.input[0], 4) and to_matmul(n.output[0], 2) for n in nodes)


def drop_attention_guards(model: onnx.ModelProto) -> onnx.ModelProto:
    """A copy of ``model`` without ``Where(IsNaN(p), 0, p)`` after each Softmax ``p`` (its users read ``p``) and
    with every ``-inf`` in a float constant feeding a ``Where`` set to float32's lowest value, so no row of a
    masked Softmax is NaN; ``model`` itself when it has no such guard."""
    nodes = list(model.graph.node)
    consumers: dict[str, list[onnx.NodeProto]] = {}
    for n in nodes:
        for name in n.input:
            consumers.setdefault(name, []).append(n)
    drop: dict[str, str] = {}  # guard output -> softmax output
    dropped: set[int] = set()
    for softmax in (n for n in nodes if n.op_type == "Softmax"):
        probs = softmax.output[0]
        users = consumers.get(probs, [])
        isnan = next((u for u in users if u.op_type == "IsNaN"), None)
        where = next(
            (
                u
                for u in users
                if u.op_type == "Where" and isnan is not None and list(u.input) == [isnan.output[0], u.input[1], probs]
            ),
            None,
        )
        if isnan is None or where is None or len(consumers.get(isnan.output[0], [])) != 1:
            continue
        if _constant(model, where.input[1]) != 0.0:
            continue
        drop[where.output[0]] = probs
        dropped.update((id(isnan), id(where)))
    if not drop or any(o.name in drop for o in model.graph.output):
        return model
    out = onnx.ModelProto()
    out.CopyFrom(model)
    graph = out.graph
    keep = [n for n, old in zip(graph.node, nodes, strict=True) if id(old) not in dropped]
    del graph.node[:]
    graph.node.extend(keep)
    where_inputs = {i for n in graph.node if n.op_type == "Where" for i in n.input[1:]}
    lowest = np.float32(np.finfo(np.float32).min)
    tensors = [t for t in graph.initializer if t.name in where_inputs]
    tensors += [
        a.t
        for n in graph.node
        if n.op_type == "Constant" and n.output[0] in where_inputs
        for a in n.attribute
        if a.name == "value"
    ]
    for tensor in tensors:
        value = numpy_helper.to_array(tensor)
        if value.dtype == np.float32 and np.isneginf(value).any():
            tensor.CopyFrom(numpy_helper.from_array(np.where(np.isneginf(value), lowest, value), tensor.name))
    for n in graph.node:
        for k, name in enumerate(n.input):
            if name in drop:
                n.input[k] = drop[name]
    return out


def _constant(model: onnx.ModelProto, name: str) -> float | None:
    """The value of a scalar constant (a Constant node or an initializer) named ``name``; None otherwise."""
    for tensor in model.graph.initializer:
        if tensor.name == name:
            value = numpy_helper.to_array(tensor)
            return float(value.reshape(-1)[0]) if value.size == 1 else None
    for n in model.graph.node:
        if n.op_type == "Constant" and n.output[0] == name:
            for a in n.attribute:
                if a.name == "value":
                    value = numpy_helper.to_array(a.t)
                    return float(value.reshape(-1)[0]) if value.size == 1 else None
    return None


def _import(name: str) -> Any:
    try:
        return importlib.import_module(name)
    except ImportError as exc:
        raise PassError(f"{name} is not installed; install it with: pip install 'honed[openvino]'") from exc


def _renumber(ov_model: Any) -> None:
    """Give the nodes OpenVINO named from its process-wide counter (``<Type>_<n>``) names by their position."""
    for index, op in enumerate(ov_model.get_ordered_ops()):
        kind, name = op.get_type_name(), op.get_friendly_name()
        if kind != "Parameter" and name.startswith(f"{kind}_") and name[len(kind) + 1 :].isdigit():
            op.set_friendly_name(f"{kind}_h{index}")


class NncfInt8Pass(Pass):
    name: ClassVar[str] = "nncf-int8"
    quantizes: ClassVar[bool] = True
    description: ClassVar[str] = (
        "NNCF post-training INT8 quantization of OpenVINO's model (NNCF's OpenVINO backend), written as OpenVINO IR"
    )
    params: ClassVar[tuple[Param, ...]] = (
        Param(
            "preset",
            str,
            "mixed",
            "mixed: symmetric weights, asymmetric activations; performance: symmetric both (faster, less exact)",
            choices=("mixed", "performance"),
        ),
        Param(
            "model_type",
            str,
            "detect",
            "transformer applies NNCF's transformer scheme (keeps sensitive ops in float, SmoothQuant on MatMuls); "
            "detect chooses it for graphs with attention",
            choices=("detect", "default", "transformer"),
        ),
        Param("subset_size", int, 300, "calibration batches NNCF reads at most", min=1, max=100_000),
        Param("fast_bias_correction", bool, True, "NNCF's fast bias correction after quantization"),
        Param(
            "attention_guard",
            str,
            "keep",
            "drop: remove scaled_dot_product_attention's NaN guard after each Softmax (and -inf masking) so "
            "OpenVINO fuses attention; keep: quantize the graph as exported",
            choices=("drop", "keep"),
        ),
        Param(
            "smooth_quant_alpha",
            float,
            0.95,
            "SmoothQuant's migration strength on MatMuls with the transformer scheme (0: off)",
            min=0.0,
            max=1.0,
        ),
        Param(
            "ignored_scope",
            tuple,
            (),
            "OpenVINO ops kept in float: the FakeQuantize nodes feeding them are removed after quantization, "
            "as NNCF's accuracy control reverts them (it fills this)",
        ),
    )
    targets: ClassVar[tuple[str, ...]] = ("openvino/cpu",)
    tolerance: ClassVar[float | None] = 0.1  # 8-bit weights and activations
    tolerance_without_vnni: ClassVar[float | None] = 0.25  # saturating AVX2 products (Zen 3: 0.18, tiny attention)
    needs_calibration: ClassVar[bool] = True
    artifact: ClassVar[str] = "openvino-ir"

    def search_space(self, ctx: PassContext) -> list[dict[str, Any]]:
        """Both attention-guard settings, dropped first: which one OpenVINO runs faster is measured."""
        default = self.resolve({}, ctx)
        return [{**default, "attention_guard": "drop"}, {**default, "attention_guard": "keep"}]

    def skip_reason(
        self, ctx: PassContext, params: Mapping[str, Any] | None = None, model: onnx.ModelProto | None = None
    ) -> str | None:
        reason = super().skip_reason(ctx, params, model)
        guard = (params or {}).get("attention_guard")
        if reason is None and guard == "drop" and model is not None and drop_attention_guards(model) is model:
            return "nncf-int8(attention_guard=drop): the model has no NaN guard after a Softmax to drop"
        return reason

    def export(
        self, model: onnx.ModelProto | Path, params: Mapping[str, Any] | None, ctx: PassContext, path: Path
    ) -> Path:
        if ctx.calibration is None:
            raise PassError("nncf-int8 needs calibration data; pass --data")
        resolved = self.resolve(params, ctx)
        source = load_model(model) if isinstance(model, Path) else model
        if resolved["attention_guard"] == "drop":
            source = drop_attention_guards(source)
        ov, nncf = _import("openvino"), _import("nncf")
        model_type = resolved["model_type"]
        if model_type == "detect":
            model_type = "transformer" if is_encoder(source) else "default"
        available = sum(1 for _ in ctx.calibration())
        if available == 0:
            raise PassError("nncf-int8 got no calibration batches; give --data with at least one sample")
        kwargs: dict[str, Any] = {
            "preset": nncf.QuantizationPreset.MIXED
            if resolved["preset"] == "mixed"
            else nncf.QuantizationPreset.PERFORMANCE,
            "target_device": nncf.TargetDevice.CPU,
            "subset_size": min(resolved["subset_size"], available),
            "fast_bias_correction": resolved["fast_bias_correction"],
        }
        if model_type == "transformer":
            kwargs["model_type"] = nncf.ModelType.TRANSFORMER
            alpha = resolved["smooth_quant_alpha"]
            kwargs["advanced_parameters"] = nncf.AdvancedQuantizationParameters(
                smooth_quant_alphas=nncf.AdvancedSmoothQuantParameters(matmul=alpha if alpha > 0 else -1.0)
            )
        logging.getLogger("nncf").setLevel(logging.ERROR)
        random.seed(ctx.seed)
        np.random.seed(ctx.seed)
        if ctx.work_dir is not None:
            ctx.work_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(dir=ctx.work_dir) as scratch:
            onnx_path = save_model(source, Path(scratch) / "source.onnx")
            try:
                ov_model = ov.Core().read_model(str(onnx_path))
            except RuntimeError as exc:
                raise PassError(f"OpenVINO cannot read the model: {_first_line(exc)}") from exc
            # NNCF draws progress bars on stdout; honed's own progress bar owns the terminal
            with contextlib.redirect_stdout(io.StringIO()):
                try:
                    quantized = nncf.quantize(ov_model, nncf.Dataset(_Batches(ctx.calibration)), **kwargs)
                except Exception as exc:  # NNCF raises many types for graphs it cannot follow
                    raise PassError(f"NNCF could not quantize the model: {_first_line(exc)}") from exc
        _revert(quantized, set(resolved["ignored_scope"]))
        _renumber(quantized)
        out = path.with_suffix(".xml")
        out.parent.mkdir(parents=True, exist_ok=True)
        ov.save_model(quantized, str(out), compress_to_fp16=False)
        return out


def _revert(ov_model: Any, ops: set[str]) -> None:
    """Put the ops named ``ops`` back in float, as NNCF's accuracy control reverts them: every FakeQuantize
    feeding one is removed (all its consumers then read its input), and an INT8 weight feeding one
    (Constant -> Convert [-> Subtract zero point] -> Multiply scale) is replaced by its float value."""
    if not ops:
        return
    from openvino import opset13

    for op in ov_model.get_ordered_ops():
        if op.get_friendly_name() not in ops:
            continue
        for value in op.inputs():
            source = value.get_source_output().get_node()
            if source.get_type_name() == "Convert":
                source = source.input_value(0).get_node()
            if source.get_type_name() == "FakeQuantize":
                for target in list(source.output(0).get_target_inputs()):
                    target.replace_source_output(source.input_value(0))
            elif source.get_type_name() == "Multiply" and (weight := _dequantized(source)) is not None:
                value.replace_source_output(opset13.constant(weight).output(0))


def _dequantized(multiply: Any) -> np.ndarray[Any, Any] | None:
    """The float value of a decompressed weight ``Convert(int) [- zero point] * scale``, or None."""
    left, scale = multiply.input_value(0).get_node(), multiply.input_value(1).get_node()
    if scale.get_type_name() != "Constant":
        left, scale = scale, left
    if scale.get_type_name() != "Constant":
        return None
    zero: Any = 0.0
    if left.get_type_name() == "Subtract":
        point = left.input_value(1).get_node()
        if point.get_type_name() == "Convert":
            point = point.input_value(0).get_node()
        if point.get_type_name() != "Constant":
            return None
        zero = point.get_data().astype(np.float32)
        left = left.input_value(0).get_node()
    if left.get_type_name() != "Convert" or left.input_value(0).get_node().get_type_name() != "Constant":
        return None
    levels = left.input_value(0).get_node().get_data().astype(np.float32)
    return np.asarray((levels - zero) * scale.get_data().astype(np.float32), dtype=np.float32)


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__
