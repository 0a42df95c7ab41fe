"""Model files: loading, validation, hashing, tensor specs and inspection (ModelInfo, FLOPs)."""

from honed.model.flops import FlopCount, count_flops
from honed.model.info import ModelInfo, inspect_model
from honed.model.loader import (
    check_model,
    file_sha256,
    load_model,
    load_model_with_external_files,
    model_io,
    resolve_model_path,
    save_model,
)
from honed.model.spec import Dim, TensorSpec, concrete_shapes, format_shape, parse_shape_overrides

__all__ = [
    "Dim",
    "FlopCount",
    "ModelInfo",
    "TensorSpec",
    "check_model",
    "concrete_shapes",
    "count_flops",
    "file_sha256",
    "format_shape",
    "inspect_model",
    "load_model",
    "load_model_with_external_files",
    "model_io",
    "parse_shape_overrides",
    "resolve_model_path",
    "save_model",
]
