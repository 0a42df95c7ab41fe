"""The last step every importer shares: verify the converted model, then write ``model.onnx`` and ``import.json``.

Nothing reaches the output folder before the verification passed, and what is written goes to a temporary
folder beside it first and is then renamed into place, the record last, so a killed import leaves the folder as
it was or a model with its record, never a model that was not checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import onnx

from honed.errors import InvalidArgument
from honed.intake.record import MODEL_FILE, ImportRecord
from honed.intake.verify import Array, Tolerance, compare, require_match
from honed.model import check_model, file_sha256, model_io, save_model
from honed.model.quantized import detect_quantization


@dataclass(frozen=True)
class ImportResult:
    """Where an import wrote its model and record, and the record itself."""

    model_path: Path
    record_path: Path
    record: ImportRecord


@dataclass(frozen=True)
class Converted:
    """What an importer hands to :func:`finish`: the ONNX model and how it was made."""

    model: onnx.ModelProto
    framework: str
    framework_version: str
    source: str
    converter: str
    converter_version: str
    fallback_reason: str | None = None
    task: str | None = None


def check_out_dir(out: str | Path) -> Path:
    """The output folder, refused early when it cannot be one (an existing file)."""
    path = Path(out).expanduser()
    if path.exists() and not path.is_dir():
        raise InvalidArgument(f"--out {path} is a file; give a folder for model.onnx and import.json")
    return path


def finish(
    converted: Converted,
    feeds: Mapping[str, Array],
    expected: Sequence[Array],
    tolerance: Tolerance,
    *,
    inputs: str,
    out: str | Path,
) -> ImportResult:
    """Verify ``converted`` on ``feeds`` against ``expected`` (refusing a mismatch), then write it into ``out``."""
    out_dir = check_out_dir(out)
    check_model(converted.model, "the exported model")
    verification = compare(converted.model, feeds, expected, tolerance, inputs=inputs)
    require_match(verification)
    onnx_inputs, onnx_outputs = model_io(converted.model)
    out_dir.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{out_dir.name}.", suffix=".import", dir=out_dir.parent))
    try:
        staged_model = save_model(converted.model, staging / MODEL_FILE)
        record = ImportRecord(
            framework=converted.framework,
            framework_version=converted.framework_version,
            source=converted.source,
            task=converted.task,
            converter=converted.converter,
            converter_version=converted.converter_version,
            opset=_opset(converted.model),
            fallback_reason=converted.fallback_reason,
            inputs=tuple(onnx_inputs),
            outputs=tuple(onnx_outputs),
            quantization=detect_quantization(converted.model),
            verification=verification,
            onnx_sha256=file_sha256(staged_model),
        )
        staged_record = record.write(staging)
        out_dir.mkdir(parents=True, exist_ok=True)
        for item in sorted(staging.iterdir()):
            if item != staged_record:
                os.replace(item, out_dir / item.name)
        record_path = out_dir / staged_record.name
        os.replace(staged_record, record_path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return ImportResult(out_dir / MODEL_FILE, record_path, record)


def _opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def describe(obj: Any) -> str:
    """A Python object named for the record: ``a my_project.models.Net object``."""
    cls = type(obj)
    return f"a {cls.__module__}.{cls.__qualname__} object"
