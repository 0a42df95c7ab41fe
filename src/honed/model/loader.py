"""Loading, validating, hashing and saving ONNX model files.

Everything that reads a model file from disk goes through :func:`load_model`, so every caller gets the
same clear errors for a missing file, a file that is not ONNX, a truncated file or missing external data.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from pathlib import Path

import onnx
from google.protobuf.message import DecodeError
from onnx import external_data_helper

from honed.errors import InvalidModel, ModelNotFound
from honed.model.spec import TensorSpec

_TWO_GB = 2**31 - 1024


def resolve_model_path(path: str | Path) -> Path:
    """Return ``path`` as a model file, or the model inside a folder such as an optimize output (``model.onnx``,
    else OpenVINO IR ``model.xml``); an IR ``.xml`` without its ``.bin`` raises :class:`InvalidModel`."""
    from honed.model.artifact import IR_FILE, ONNX_FILE, check_ir, is_ir

    p = Path(path).expanduser()
    if p.is_dir():
        for name in (ONNX_FILE, IR_FILE):
            if (p / name).is_file():
                p = p / name
                break
    if not p.exists():
        raise ModelNotFound(f"model file not found: {p}")
    if not p.is_file():
        raise ModelNotFound(f"not a model file: {p} (give the path of an .onnx file or an OpenVINO IR .xml)")
    return check_ir(p) if is_ir(p) else p


def load_model(path: str | Path, *, check: bool = True, load_external_data: bool = True) -> onnx.ModelProto:
    """Load an ONNX model, with its external data, and run the ONNX checker on it.

    Raises :class:`ModelNotFound` or :class:`InvalidModel` with a message that says what to do.
    """
    return load_model_with_external_files(path, check=check, load_external_data=load_external_data)[0]


def load_model_with_external_files(
    path: str | Path, *, check: bool = True, load_external_data: bool = True
) -> tuple[onnx.ModelProto, tuple[str, ...]]:
    """:func:`load_model`, plus the external-data files the model refers to (empty when it has none).

    Loading external data resets the tensors' references, so the file names are noted before it.
    """
    p = resolve_model_path(path)
    if p.suffix.lower() == ".xml":
        raise InvalidModel(f"{p} is OpenVINO IR; this needs an ONNX model (.onnx)")
    if p.stat().st_size == 0:
        raise InvalidModel(f"{p} is empty: it is not an ONNX model")
    try:
        model = onnx.load(str(p), load_external_data=False)
        external_files = tuple(
            sorted(
                {
                    entry.value
                    for tensor in _all_tensors(model.graph)
                    if external_data_helper.uses_external_data(tensor)
                    for entry in tensor.external_data
                    if entry.key == "location"
                }
            )
        )
        if load_external_data and external_files:
            for name in external_files:
                if not (p.parent / name).is_file():
                    raise FileNotFoundError(2, "missing external data", name)
            external_data_helper.load_external_data_for_model(model, str(p.parent))
    except DecodeError as exc:
        raise InvalidModel(f"{p} is not an ONNX model or is truncated/corrupt ({exc})") from exc
    except FileNotFoundError as exc:
        raise InvalidModel(
            f"{p} refers to an external-data file that is missing: {Path(exc.filename or '?').name}; "
            "keep the .data file next to the model"
        ) from exc
    except (OSError, ValueError, RuntimeError, onnx.checker.ValidationError) as exc:
        raise InvalidModel(f"cannot read {p} as ONNX: {exc}") from exc
    if not model.graph.node and not model.graph.output:
        raise InvalidModel(f"{p} holds no graph: it is not an ONNX model")
    if check:
        check_model(model, p)
    return model, external_files


def _all_tensors(graph: onnx.GraphProto) -> Iterator[onnx.TensorProto]:
    """Every tensor stored in a graph: initializers and attribute tensors, subgraphs included."""
    yield from graph.initializer
    for node in graph.node:
        for attr in node.attribute:
            if attr.HasField("t"):
                yield attr.t
            yield from attr.tensors
            if attr.HasField("g"):
                yield from _all_tensors(attr.g)
            for sub in attr.graphs:
                yield from _all_tensors(sub)


def check_model(model: onnx.ModelProto, where: str | Path = "model") -> None:
    """Run the ONNX checker; models over 2 GB are checked by path, as the checker requires."""
    try:
        if model.ByteSize() > _TWO_GB and isinstance(where, Path):
            onnx.checker.check_model(str(where))
        else:
            onnx.checker.check_model(model)
    except (onnx.checker.ValidationError, ValueError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InvalidModel(f"{where} fails the ONNX checker: {first}") from exc


def save_model(model: onnx.ModelProto, path: str | Path) -> Path:
    """Save a model; one over 2 GB goes to an external-data file beside it."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if model.ByteSize() > _TWO_GB:
        onnx.save_model(model, str(p), save_as_external_data=True, location=p.name + ".data")
    else:
        onnx.save_model(model, str(p))
    return p


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def model_io(model: onnx.ModelProto) -> tuple[list[TensorSpec], list[TensorSpec]]:
    """The real graph inputs (initializers excluded) and outputs of a model."""
    initializers = {init.name for init in model.graph.initializer}
    inputs = [TensorSpec.from_value_info(v) for v in model.graph.input if v.name not in initializers]
    outputs = [TensorSpec.from_value_info(v) for v in model.graph.output]
    return inputs, outputs
