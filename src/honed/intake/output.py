"""The last step every importer shares: verify the converted model, then write ``model.onnx`` and ``import.json``.

Nothing reaches the output folder before the verification passed, and what is written goes to a temporary
folder beside it first and is then renamed into place, the record last, so a killed import leaves the folder as
it was or a model with its record, never a model that was not checked.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from honed.errors import DataError, ExportMismatch, InvalidArgument
from honed.intake.record import MODEL_FILE, ImportRecord
from honed.intake.verify import Array, Tolerance, compare, require_match
from honed.model import check_model, file_sha256, model_io, save_model
from honed.model.quantized import detect_quantization
from honed.model.spec import TensorSpec

Reference = Callable[[Mapping[str, Array]], Sequence[Array]]
"""The source model run on inputs: its outputs, in the ONNX graph's output order."""


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
    reference: Reference | None = None,
) -> ImportResult:
    """Verify ``converted`` on ``feeds`` against ``expected`` (refusing a mismatch), then write it into ``out``.

    With ``reference`` (the source, run on other inputs) and a dynamic batch axis on every input, the model is
    also compared at one more sample than ``feeds`` hold, so an export that fixed the batch size is refused.
    """
    out_dir = check_out_dir(out)
    check_model(converted.model, "the exported model")
    verification = compare(converted.model, feeds, expected, tolerance, inputs=inputs)
    onnx_inputs, onnx_outputs = model_io(converted.model)
    if reference is not None and verification.ok and _dynamic_batch(onnx_inputs):
        bigger = {k: np.concatenate([v, v[:1]], axis=0) for k, v in feeds.items()}
        try:
            wanted = reference(bigger)
        except DataError:  # the source itself takes one batch size only: there is nothing to hold the export to
            wanted = None
        if wanted is not None:
            model = converted.model
            again = compare(model, bigger, wanted, tolerance, inputs=inputs, run_failure=ExportMismatch)
            verification = verification.merged(again)
    require_match(verification)
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


def _dynamic_batch(inputs: Sequence[TensorSpec]) -> bool:
    return bool(inputs) and all(s.shape and not isinstance(s.shape[0], int) for s in inputs)


def _opset(model: onnx.ModelProto) -> int:
    return next((int(o.version) for o in model.opset_import if o.domain in ("", "ai.onnx")), 0)


def describe(obj: Any) -> str:
    """A Python object named for the record: ``a my_project.models.Net object``."""
    cls = type(obj)
    return f"a {cls.__module__}.{cls.__qualname__} object"
