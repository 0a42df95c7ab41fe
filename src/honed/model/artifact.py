"""Model artifacts on disk: an ONNX file, or OpenVINO IR (``model.xml`` with its weights in ``model.bin``).

A pass that ends in OpenVINO's own format (NNCF's OpenVINO backend) writes IR; everything that stores, hashes,
copies or finds a built model goes through these helpers, so an IR's two files always travel and hash together.
An IR's hash is the sha256 of its two files' hashes (``<xml sha256>\\n<bin sha256>``), so a change to either
changes it.
"""

from __future__ import annotations

import hashlib
import os
import shutil
from pathlib import Path

from honed.errors import InvalidModel
from honed.model.loader import file_sha256

ONNX_FILE = "model.onnx"
IR_FILE = "model.xml"
IR_SUFFIX = ".xml"
WEIGHTS_SUFFIX = ".bin"


def is_ir(path: Path) -> bool:
    """Whether ``path`` names an OpenVINO IR (an ``.xml`` file)."""
    return path.suffix.lower() == IR_SUFFIX


def ir_weights(path: Path) -> Path:
    """The ``.bin`` an IR's ``.xml`` reads its weights from (same name, beside it)."""
    return path.with_suffix(WEIGHTS_SUFFIX)


def check_ir(path: Path) -> Path:
    """``path`` when its ``.bin`` is beside it; an IR without its weights raises :class:`InvalidModel`."""
    weights = ir_weights(path)
    if not weights.is_file():
        raise InvalidModel(
            f"{path} is OpenVINO IR without its weights: {weights.name} is missing; keep the .bin next to the .xml"
        )
    return path


def artifact_files(path: Path) -> tuple[Path, ...]:
    """The files a model at ``path`` is made of: the IR's ``.xml`` and ``.bin``, or the one ONNX file."""
    return (path, ir_weights(path)) if is_ir(path) else (path,)


def artifact_sha256(path: Path) -> str:
    """The ONNX file's sha256, or for IR the sha256 of its ``.xml`` and ``.bin`` hashes (both files count)."""
    if not is_ir(path):
        return file_sha256(path)
    check_ir(path)
    joined = "\n".join(file_sha256(p) for p in artifact_files(path))
    return hashlib.sha256(joined.encode()).hexdigest()


def file_hashes(path: Path) -> dict[str, str]:
    """Each file of the artifact at ``path`` by name, with its own sha256."""
    return {p.name: file_sha256(p) for p in artifact_files(path)}


def artifact_size(path: Path) -> int:
    """Bytes on disk of every file of the artifact at ``path``."""
    return sum(p.stat().st_size for p in artifact_files(path))


def artifact_exists(path: Path) -> bool:
    """Whether every file of the artifact at ``path`` is there."""
    return all(p.is_file() for p in artifact_files(path))


def copy_artifact(source: Path, dest: Path) -> Path:
    """Copy the artifact at ``source`` to ``dest`` (an IR's ``.bin`` follows its ``.xml``); each file is written
    beside its final name and renamed into place, weights first, so a reader never sees half of one."""
    dest.parent.mkdir(parents=True, exist_ok=True)
    pairs = list(zip(artifact_files(source), artifact_files(dest), strict=True))
    for src, dst in reversed(pairs):
        tmp = dst.with_name(f".{dst.name}.tmp{os.getpid()}")
        shutil.copyfile(src, tmp)
        tmp.replace(dst)
    return dest


def remove_other_artifacts(folder: Path, keep: Path) -> None:
    """Remove the ``model.onnx`` or ``model.xml``/``model.bin`` in ``folder`` that ``keep`` is not, so a folder
    holds one winner and every reader finds the same one."""
    for name in (ONNX_FILE, IR_FILE):
        other = folder / name
        if other.resolve() != keep.resolve():
            for path in artifact_files(other):
                path.unlink(missing_ok=True)


def winner_file(folder: Path) -> Path:
    """The model file of a model folder (an optimize output): ``model.xml`` when it holds IR, else
    ``model.onnx`` (which may not be written yet)."""
    return folder / IR_FILE if (folder / IR_FILE).is_file() else folder / ONNX_FILE
