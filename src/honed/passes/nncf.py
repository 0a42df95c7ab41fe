"""The ``nncf-int8`` pass: NNCF post-training INT8 quantization of the ONNX graph, for the OpenVINO backend.

``nncf.quantize`` on the ONNX model with the user's calibration batches writes an ONNX model with
QuantizeLinear/DequantizeLinear pairs; OpenVINO compiles those into INT8 kernels. The output is still plain
ONNX (ONNX Runtime can run it too, slowly), so a recipe stores it like any other pass. NNCF is optional
(``pip install 'honed[openvino]'``): the registry declares it, the default :meth:`~honed.passes.Pass.skip_reason`
says when it is missing, and it is imported only when the pass runs.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
from collections.abc import Iterator
from typing import Any, ClassVar

import numpy as np
import onnx

from honed.passes.base import CalibrationSource, Param, Pass, PassContext, PassError

_TRANSFORMER_OPS = {"LayerNormalization", "Attention", "MultiHeadAttention", "SkipLayerNormalization", "Erf", "Gelu"}


class _Batches:
    """A re-iterable view of a calibration source (NNCF walks the data more than once)."""

    def __init__(self, source: CalibrationSource) -> None:
        self._source = source

    def __iter__(self) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        return iter(self._source())


class NncfInt8Pass(Pass):
    name: ClassVar[str] = "nncf-int8"
    description: ClassVar[str] = "NNCF post-training INT8 quantization (QDQ ONNX) for OpenVINO's INT8 kernels"
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
            "transformer applies NNCF's transformer scheme (keeps sensitive ops in float); detect reads the graph",
            choices=("detect", "default", "transformer"),
        ),
        Param("subset_size", int, 300, "calibration batches NNCF reads at most", min=1, max=100_000),
        Param("fast_bias_correction", bool, True, "NNCF's fast bias correction after quantization"),
    )
    targets: ClassVar[tuple[str, ...]] = ("openvino/cpu",)
    tolerance: ClassVar[float | None] = 0.1  # 8-bit weights and activations
    needs_calibration: ClassVar[bool] = True

    def apply(self, model: onnx.ModelProto, params: dict[str, Any], ctx: PassContext) -> onnx.ModelProto:
        if ctx.calibration is None:
            raise PassError("nncf-int8 needs calibration data; pass --data")
        try:
            nncf = importlib.import_module("nncf")
        except ImportError as exc:
            raise PassError("nncf is not installed; install it with: pip install 'honed[openvino]'") from exc
        model_type = params["model_type"]
        if model_type == "detect":
            ops = {node.op_type for node in model.graph.node}
            model_type = "transformer" if ops & _TRANSFORMER_OPS else "default"
        logging.getLogger("nncf").setLevel(logging.ERROR)
        kwargs: dict[str, Any] = {
            "preset": nncf.QuantizationPreset.MIXED
            if params["preset"] == "mixed"
            else nncf.QuantizationPreset.PERFORMANCE,
            "subset_size": params["subset_size"],
            "fast_bias_correction": params["fast_bias_correction"],
        }
        if model_type == "transformer":
            kwargs["model_type"] = nncf.ModelType.TRANSFORMER
        # NNCF draws progress bars on stdout; honed's own progress bar owns the terminal.
        with contextlib.redirect_stdout(io.StringIO()):
            try:
                quantized = nncf.quantize(model, nncf.Dataset(_Batches(ctx.calibration)), **kwargs)
            except Exception as exc:  # NNCF raises many types for graphs it cannot follow
                text = str(exc).strip().splitlines()
                raise PassError(
                    f"NNCF could not quantize the model: {text[0] if text else type(exc).__name__}"
                ) from exc
        if not isinstance(quantized, onnx.ModelProto):
            raise PassError("NNCF returned a non-ONNX model")
        return quantized
