"""Shared pieces of the quantization passes: ISA rules, the streaming calibration reader, node helpers."""

from __future__ import annotations

import contextlib
import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from honed.errors import DataError, HonedError
from honed.passes._graph import first_line, read, scratch_dir, working_in, write
from honed.passes.base import CalibrationSource, PassContext, PassError

VNNI_ISA = ("avx512_vnni", "avx_vnni", "amx_int8", "neon_dotprod")
"""ISA extensions with an 8-bit dot product that does not saturate (u8 x s8 into 32-bit lanes)."""


def has_vnni(ctx: PassContext) -> bool:
    """Whether the target CPU multiplies u8 x s8 without the 16-bit saturation of AVX2's VPMADDUBSW."""
    return ctx.has_isa(*VNNI_ISA)


def quant_type(name: str) -> Any:
    """ONNX Runtime's QuantType for ``int8``/``uint8``."""
    from onnxruntime.quantization import QuantType

    return {"int8": QuantType.QInt8, "uint8": QuantType.QUInt8}[name]


class StreamingCalibrationReader:
    """An ONNX Runtime ``CalibrationDataReader`` over a :data:`CalibrationSource`, one batch in memory at a time.

    Feeds are restricted to the model's inputs, cast to their dtypes, and capped at ``max_batches``; ``rewind``
    starts a fresh iterator, so calibrators that read the data twice see the same batches.
    """

    def __init__(self, source: CalibrationSource, inputs: dict[str, np.dtype[Any]], max_batches: int) -> None:
        self._source = source
        self._inputs = inputs
        self._max = max_batches
        self._it: Iterator[dict[str, np.ndarray[Any, Any]]] | None = None
        self._count = 0

    def get_next(self) -> dict[str, np.ndarray[Any, Any]] | None:
        if self._it is None:
            self._it = iter(self._source())
            self._count = 0
        if self._count >= self._max:
            return None
        batch = next(self._it, None)
        if batch is None:
            return None
        missing = sorted(set(self._inputs) - set(batch))
        if missing:
            raise DataError(f"calibration data lacks model input(s): {', '.join(missing)}")
        self._count += 1
        return {name: np.ascontiguousarray(batch[name], dtype=dtype) for name, dtype in self._inputs.items()}

    def rewind(self) -> None:
        self._it = None

    def __iter__(self) -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        self.rewind()
        while (batch := self.get_next()) is not None:
            yield batch

    def __len__(self) -> int:
        return sum(1 for _ in self)


def graph_input_dtypes(model: onnx.ModelProto) -> dict[str, np.dtype[Any]]:
    """numpy dtypes of the real graph inputs, in graph order."""
    inits = {t.name for t in model.graph.initializer}
    return {
        v.name: np.dtype(onnx.helper.tensor_dtype_to_np_dtype(v.type.tensor_type.elem_type))
        for v in model.graph.input
        if v.name not in inits
    }


def nodes_of(model: onnx.ModelProto, op_types: tuple[str, ...]) -> list[onnx.NodeProto]:
    """Main-graph nodes whose op type is in ``op_types``."""
    return [n for n in model.graph.node if n.op_type in op_types]


def ensure_node_names(model: onnx.ModelProto) -> None:
    """Give every unnamed node a stable name (``<op>_<index>``) so nodes can be excluded by name."""
    used = {n.name for n in model.graph.node if n.name}
    for i, node in enumerate(model.graph.node):
        if not node.name:
            name = f"{node.op_type}_{i}"
            while name in used:
                name += "_"
            node.name = name
            used.add(name)


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence the quantizer's advice (root logger) and progress prints (stdout) while it runs."""
    previous = logging.root.manager.disable
    logging.disable(logging.WARNING)
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            yield
    finally:
        logging.disable(previous)


def run_quantizer(
    model: onnx.ModelProto,
    ctx: PassContext,
    quantize: Callable[[Path, Path], object],
    failure: str,
    hint: str = "",
) -> onnx.ModelProto:
    """Run ONNX Runtime's file-to-file ``quantize(source, target)`` on ``model`` in a scratch folder, quietly.

    The quantizers write helper files into the working directory and print advice, hence the folder and the
    silence. A domain error (bad calibration data) passes through; anything else the quantizer raises becomes
    a :class:`PassError` starting with ``failure`` and ending with ``hint``.
    """
    with scratch_dir(ctx) as folder, quiet(), working_in(folder):
        source = write(model, folder)
        target = folder / "quantized.onnx"
        try:
            quantize(source, target)
        except HonedError:
            raise
        except Exception as exc:  # the quantizers raise plain exceptions for graphs they cannot handle
            raise PassError(f"{failure}: {first_line(exc)}{hint}") from exc
        return read(target)
