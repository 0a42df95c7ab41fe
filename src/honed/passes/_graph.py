"""Small ONNX graph helpers shared by the passes: scratch folders, saving/loading through files, opsets, I/O."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import onnx

from honed.model.loader import save_model
from honed.passes.base import PassContext, PassError


@contextmanager
def scratch_dir(ctx: PassContext) -> Iterator[Path]:
    """A temporary folder (inside ``ctx.work_dir`` when given; an absolute path), removed afterwards."""
    if ctx.work_dir is not None:
        ctx.work_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix="honed-pass-", dir=ctx.work_dir) as name:
        yield Path(name).resolve()


@contextmanager
def working_in(folder: Path) -> Iterator[None]:
    """Run a third-party tool with ``folder`` as the working directory.

    Some tools (ONNX Runtime's quantizer, symbolic shape inference) write side files such as ``<uuid>.data``
    external-data blobs or debug dumps relative to the working directory; inside a scratch folder they are
    removed with it instead of littering the user's folder. Paths given to the tool must be absolute.
    """
    with contextlib.chdir(folder):
        yield


def write(model: onnx.ModelProto, folder: Path, name: str = "input.onnx") -> Path:
    """Save ``model`` into ``folder`` for tools that read files."""
    return save_model(model, folder / name)


def read(path: Path) -> onnx.ModelProto:
    """Load a model a tool wrote, with any external data, as a self-contained proto."""
    try:
        model = onnx.load(str(path), load_external_data=True)
    except Exception as exc:  # protobuf and onnx raise many types for a broken file
        raise PassError(f"the tool wrote an unreadable model: {exc}") from exc
    for tensor in model.graph.initializer:
        # data is now in memory; drop pointers to the scratch files so the proto stands alone
        if tensor.data_location == onnx.TensorProto.EXTERNAL:
            tensor.data_location = onnx.TensorProto.DEFAULT
            del tensor.external_data[:]
    return model


def opset(model: onnx.ModelProto) -> int:
    """The default-domain opset version the model imports."""
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx"):
            return int(entry.version)
    raise PassError("the model imports no default-domain (ai.onnx) opset")


def op_types(model: onnx.ModelProto) -> set[str]:
    """Every op type in the main graph."""
    return {node.op_type for node in model.graph.node}


def io_signature(model: onnx.ModelProto) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    """(name, element type) of the real inputs and of the outputs."""
    inits = {t.name for t in model.graph.initializer}
    inputs = [(v.name, v.type.tensor_type.elem_type) for v in model.graph.input if v.name not in inits]
    outputs = [(v.name, v.type.tensor_type.elem_type) for v in model.graph.output]
    return inputs, outputs


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message, or its type name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def upgrade_opset(model: onnx.ModelProto, minimum: int) -> onnx.ModelProto:
    """The model at default-domain opset >= ``minimum`` (converted with onnx.version_converter when lower)."""
    current = opset(model)
    if current >= minimum:
        return model
    from onnx import version_converter

    try:
        converted = version_converter.convert_version(model, minimum)
    except Exception as exc:  # the converter raises plain RuntimeErrors for ops it cannot convert
        raise PassError(f"cannot upgrade the model from opset {current} to {minimum}: {first_line(exc)}") from exc
    # the converter keeps the old IR version; opset 13+ needs IR >= 7
    converted.ir_version = max(converted.ir_version, 7)
    return converted


def import_used_domains(model: onnx.ModelProto) -> onnx.ModelProto:
    """Add an opset import (version 1) for every node domain the model uses but does not import."""
    imported = {entry.domain for entry in model.opset_import}
    used = sorted({n.domain for n in model.graph.node if n.domain not in ("", "ai.onnx")} - imported)
    for domain in used:
        model.opset_import.append(onnx.helper.make_opsetid(domain, 1))
    return model
