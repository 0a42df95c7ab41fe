"""``--reference``: a float model the gate compares candidates against instead of the model as given.

An already-quantized model (QAT, NNCF, an earlier quantizer) is its own reference by default, so every candidate is
judged against what the user has now. With the float model it came from as the reference, the gate judges the
distance to the float outputs instead, the original quantized model included. The reference must take the same
inputs and give the same outputs (names, element types, compatible shapes): else its outputs cannot be compared.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.model.loader import file_sha256, load_model, model_io, resolve_model_path
from honed.model.spec import TensorSpec


@dataclass(frozen=True)
class ReferenceModel:
    """The model the eval outputs are computed with: its file and content hash."""

    path: Path
    sha256: str

    def to_dict(self) -> dict[str, Any]:
        return {"path": str(self.path), "sha256": self.sha256}


def load_reference(path: Path, inputs: list[TensorSpec], outputs: list[TensorSpec]) -> ReferenceModel:
    """The reference at ``path``, checked against the model's ``inputs`` and ``outputs``; else InvalidArgument."""
    resolved = resolve_model_path(path)
    ref_inputs, ref_outputs = model_io(load_model(resolved))
    for kind, ours, theirs in (("input", inputs, ref_inputs), ("output", outputs, ref_outputs)):
        problem = _mismatch(kind, ours, theirs)
        if problem is not None:
            raise InvalidArgument(f"--reference {path} does not match the model: {problem}")
    return ReferenceModel(resolved, file_sha256(resolved))


def _mismatch(kind: str, ours: list[TensorSpec], theirs: list[TensorSpec]) -> str | None:
    """What differs between the model's tensors of one kind and the reference's (None: they match)."""
    by_name = {t.name: t for t in theirs}
    missing = [t.name for t in ours if t.name not in by_name]
    if missing:
        return f"it has no {kind} {missing[0]!r} (its {kind}s: {', '.join(sorted(by_name)) or 'none'})"
    extra = sorted(set(by_name) - {t.name for t in ours})
    if extra:
        return f"it has an extra {kind} {extra[0]!r} the model does not have"
    for spec in ours:
        ref = by_name[spec.name]
        if ref.elem_type != spec.elem_type:
            return f"{kind} {spec.name!r} is {ref.type_name} there, {spec.type_name} in the model"
        if not _shapes_agree(spec.shape, ref.shape):
            return f"{kind} {spec.name!r} has shape {_shape(ref.shape)} there, {_shape(spec.shape)} in the model"
    return None


def _shapes_agree(a: tuple[Any, ...] | None, b: tuple[Any, ...] | None) -> bool:
    """Same rank, and the same size wherever both fix a dimension (symbolic or unknown ones agree with anything)."""
    if a is None or b is None:
        return True
    if len(a) != len(b):
        return False
    return all(not (isinstance(x, int) and isinstance(y, int)) or x == y for x, y in zip(a, b, strict=True))


def _shape(shape: tuple[Any, ...] | None) -> str:
    return "unknown" if shape is None else "[" + ",".join(str(d) for d in shape) + "]"
