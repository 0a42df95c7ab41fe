"""Model files: loading, validation, hashing, tensor specs and inspection (ModelInfo, FLOPs)."""

from honed.model.loader import check_model, file_sha256, load_model, model_io, resolve_model_path, save_model
from honed.model.spec import Dim, TensorSpec, concrete_shapes, format_shape, parse_shape_overrides

__all__ = [
    "Dim",
    "TensorSpec",
    "check_model",
    "concrete_shapes",
    "file_sha256",
    "format_shape",
    "load_model",
    "model_io",
    "parse_shape_overrides",
    "resolve_model_path",
    "save_model",
]
