"""``import.json``: what an import made and how it was checked, the document :mod:`honed.intake` owns.

It is written beside the imported ``model.onnx`` and, with ``--register``, stored as that version's recipe in the
registry, so a model's lineage starts at the framework it came from: which framework and version, which converter
and opset, the inputs and outputs, the verification's tolerance and measured error, and the ONNX file's sha256.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from honed.errors import InvalidArgument
from honed.fields import as_dict
from honed.intake.verify import Verification
from honed.jsonio import write_json
from honed.model.quantized import QuantizationInfo
from honed.model.spec import Dim, TensorSpec

SCHEMA = "honed.import/1"
RECORD_FILE = "import.json"
MODEL_FILE = "model.onnx"


@dataclass(frozen=True)
class ImportRecord:
    """One import: the source, the conversion, the graph's interface and the verification of its outputs."""

    framework: str
    """``torch``, ``transformers`` or ``sklearn``."""
    framework_version: str
    source: str
    """The file or folder imported, or a description of the Python object."""
    converter: str
    """e.g. ``torch.onnx (dynamo)``, ``torch.onnx (torchscript)``, ``skl2onnx``."""
    converter_version: str
    opset: int
    inputs: tuple[TensorSpec, ...]
    outputs: tuple[TensorSpec, ...]
    verification: Verification
    onnx_sha256: str
    fallback_reason: str | None = None
    """Why the preferred converter was not used (the dynamo exporter's error), when it was not."""
    task: str | None = None
    """For a Hugging Face model: the task whose head was exported."""
    quantization: QuantizationInfo | None = None
    """How the exported model is already quantized (e.g. QDQ from quantization-aware training), or None."""
    schema: str = SCHEMA

    def to_dict(self) -> dict[str, Any]:
        return {"schema": self.schema} | as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ImportRecord:
        if data.get("schema") != SCHEMA:
            raise InvalidArgument(f"not an import record: schema is {data.get('schema')!r}, expected {SCHEMA!r}")
        return cls(
            framework=str(data["framework"]),
            framework_version=str(data["framework_version"]),
            source=str(data["source"]),
            task=data.get("task"),
            converter=str(data["converter"]),
            converter_version=str(data["converter_version"]),
            opset=int(data["opset"]),
            fallback_reason=data.get("fallback_reason"),
            inputs=tuple(_spec_from_dict(s) for s in data["inputs"]),
            outputs=tuple(_spec_from_dict(s) for s in data["outputs"]),
            quantization=QuantizationInfo.from_dict(data["quantization"]) if data.get("quantization") else None,
            verification=Verification.from_dict(data["verification"]),
            onnx_sha256=str(data["onnx_sha256"]),
        )

    def write(self, folder: str | Path) -> Path:
        """Write ``import.json`` into ``folder`` atomically."""
        return write_json(Path(folder) / RECORD_FILE, self.to_dict())

    @classmethod
    def read(cls, path: str | Path) -> ImportRecord:
        import json

        p = Path(path)
        if p.is_dir():
            p = p / RECORD_FILE
        try:
            data = json.loads(p.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"cannot read the import record {p}: {exc}") from exc
        if not isinstance(data, dict):
            raise InvalidArgument(f"the import record {p} must hold a JSON object")
        return cls.from_dict(data)


def _spec_from_dict(data: Mapping[str, Any]) -> TensorSpec:
    shape_data = data.get("shape")
    shape: tuple[Dim, ...] | None = None if shape_data is None else tuple(shape_data)
    return TensorSpec(str(data["name"]), int(onnx.TensorProto.DataType.Value(str(data["dtype"]))), shape)
