"""What is inside a model file: :func:`inspect_model` and its JSON-ready result, :class:`ModelInfo`."""

from __future__ import annotations

import math
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import helper

from honed.fields import as_dict
from honed.model.flops import FlopCount, count_flops, op_key
from honed.model.loader import file_sha256, load_model_with_external_files, model_io, resolve_model_path
from honed.model.spec import TensorSpec, concrete_shapes


@dataclass(frozen=True)
class ModelInfo:
    """A model file's identity, interface, contents and estimated cost per inference."""

    path: str
    sha256: str
    file_bytes: int
    ir_version: int
    opsets: dict[str, int]
    """Domain (``ai.onnx`` for the default one) -> opset version."""
    producer_name: str
    producer_version: str
    graph_name: str
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    op_histogram: dict[str, int]
    """Op type (``domain.OpType`` outside the default domain) -> node count, most frequent first."""
    parameters: int
    """Elements in the initializers."""
    parameter_bytes: int
    external_data_files: tuple[str, ...]
    """External-data files the weights live in, relative to the model; empty when all are inline."""
    flop_shapes: dict[str, tuple[int, ...]]
    """The concrete input shapes the FLOPs are counted for."""
    flops: FlopCount

    @property
    def uses_external_data(self) -> bool:
        return bool(self.external_data_files)

    def to_dict(self) -> dict[str, Any]:
        out = as_dict(self)
        weights = {key: out.pop(key) for key in ("external_data_files", "flop_shapes", "flops")}
        return out | {"uses_external_data": self.uses_external_data} | weights


def inspect_model(
    path: str | Path, shapes: dict[str, tuple[int, ...]] | None = None, batch: int | None = None
) -> ModelInfo:
    """Load, validate and describe a model; FLOPs are for ``shapes`` (symbolic batch -> ``batch`` or 1).

    Raises :class:`honed.errors.ModelError` for a file that cannot be used and
    :class:`honed.errors.InvalidArgument` for shapes that do not fit the model.
    """
    file = resolve_model_path(path)
    model, external_files = load_model_with_external_files(file)
    inputs, outputs = model_io(model)
    fixed = concrete_shapes(inputs, shapes, batch=batch)
    histogram = Counter(op_key(node) for node in model.graph.node)
    params, param_bytes = _parameters(model.graph)
    return ModelInfo(
        path=str(file),
        sha256=file_sha256(file),
        file_bytes=file.stat().st_size,
        ir_version=int(model.ir_version),
        opsets={(o.domain or "ai.onnx"): int(o.version) for o in model.opset_import},
        producer_name=model.producer_name,
        producer_version=model.producer_version,
        graph_name=model.graph.name,
        inputs=tuple(inputs),
        outputs=tuple(outputs),
        op_histogram=dict(histogram.most_common()),
        parameters=params,
        parameter_bytes=param_bytes,
        external_data_files=external_files,
        flop_shapes=fixed,
        flops=count_flops(model, fixed),
    )


def _parameters(graph: onnx.GraphProto) -> tuple[int, int]:
    """Element count and bytes of the graph's initializers (dense and sparse)."""
    count = 0
    nbytes = 0
    for init in graph.initializer:
        n = math.prod(init.dims)
        count += n
        nbytes += _tensor_bytes(init, n)
    for sparse in graph.sparse_initializer:
        count += math.prod(sparse.dims)
        nbytes += _tensor_bytes(sparse.values, math.prod(sparse.values.dims))
        nbytes += _tensor_bytes(sparse.indices, math.prod(sparse.indices.dims))
    return count, nbytes


def _tensor_bytes(tensor: onnx.TensorProto, elements: int) -> int:
    if tensor.HasField("raw_data"):
        return len(tensor.raw_data)
    if tensor.data_type == onnx.TensorProto.STRING:
        return sum(len(s) for s in tensor.string_data)
    try:
        itemsize = np.dtype(helper.tensor_dtype_to_np_dtype(tensor.data_type)).itemsize
    except (KeyError, TypeError, ValueError):
        itemsize = 0
    return elements * itemsize
