"""The inputs an import is verified on: a user's sample file (``.npz``, or ``.npy`` for a single input), checked
against what the source expects before anything runs, or inputs generated when no sample is given.

Sample files are read with ``allow_pickle=False``: an array file never runs code.
"""

from __future__ import annotations

import zipfile
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np

from honed.errors import DataError, InvalidArgument
from honed.intake.verify import Array
from honed.model.spec import input_mismatch


def read_sample(path: str | Path, names: Sequence[str]) -> dict[str, Array]:
    """``{input name: array}`` from ``path``; a ``.npy`` (or a one-array ``.npz``) stands for a single input.

    Every expected input must be there, nothing else may be, and all arrays must have the same first axis.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise DataError(f"sample file not found: {p}")
    try:
        loaded = np.load(p, allow_pickle=False)
    except (OSError, ValueError, zipfile.BadZipFile) as exc:
        raise DataError(
            f"{p} is not a .npy or .npz array file (save it with numpy.save or numpy.savez): {exc}"
        ) from exc
    if isinstance(loaded, np.ndarray):
        arrays = {"": loaded}
    else:
        with loaded:
            try:
                arrays = {k: loaded[k] for k in loaded.files}
            except ValueError as exc:
                raise DataError(f"{p} holds object arrays, which would need pickle: save plain numeric arrays") from exc
    if set(arrays) in ({""}, {"arr_0"}) and len(names) == 1:
        arrays = {names[0]: next(iter(arrays.values()))}
    if problem := input_mismatch(names, arrays, "array"):
        raise DataError(f"{p} does not fit the model: {problem}; the inputs are: {', '.join(names)}")
    ordered = {n: arrays[n] for n in names}
    for name, array in ordered.items():
        if array.ndim == 0 or array.shape[0] == 0:
            raise DataError(f"{p}: array {name!r} has shape {array.shape}; give at least one sample on axis 0")
        if array.dtype.kind not in "biuf":
            raise DataError(f"{p}: array {name!r} has dtype {array.dtype}; give numbers (bool, int or float)")
    if len({a.shape[0] for a in ordered.values()}) > 1:
        counts = ", ".join(f"{n}: {a.shape[0]}" for n, a in ordered.items())
        raise DataError(f"{p}: the arrays hold different numbers of samples ({counts}); axis 0 must agree")
    return ordered


def check_array(name: str, array: Array, *, kind: str, ndim: int | None = None, width: int | None = None) -> None:
    """Refuse an input of the wrong sort: ``kind`` is ``float`` or ``int``; ``width`` the size of axis 1."""
    kinds = {"float": "buif", "int": "biu"}[kind]
    if array.dtype.kind not in kinds:
        raise DataError(f"input {name!r} must hold {kind} values, got dtype {array.dtype}")
    if ndim is not None and array.ndim != ndim:
        raise DataError(f"input {name!r} must have {ndim} dimensions, got shape {array.shape}")
    if width is not None and array.shape[1] != width:
        raise DataError(f"input {name!r} must have {width} columns (features), got shape {array.shape}")


def parse_input_shape(text: str, names: Sequence[str]) -> dict[str, tuple[int, ...]]:
    """``--input-shape``: ``2x3x32x32`` for a model with one input, or ``NAME=2x3x32x32,NAME2=...``."""
    items = [part.strip() for part in text.split(",") if part.strip()]
    if len(items) == 1 and "=" not in items[0] and len(names) == 1:
        items = [f"{names[0]}={items[0]}"]
    from honed.model.spec import parse_shape_overrides

    try:
        shapes = parse_shape_overrides(items)
    except InvalidArgument as exc:  # the shared parser names optimize's flag; this one is --input-shape
        raise InvalidArgument(str(exc).replace("--shape", "--input-shape")) from exc
    if problem := input_mismatch(names, shapes, "input"):
        raise InvalidArgument(f"--input-shape does not fit the model: {problem}; the inputs are: {', '.join(names)}")
    return {n: shapes[n] for n in names}


def random_floats(shapes: Mapping[str, tuple[int, ...]], seed: int = 0) -> dict[str, Array]:
    """Standard-normal float32 inputs of the given shapes, the same every run."""
    rng = np.random.default_rng(seed)
    return {name: rng.standard_normal(shape).astype(np.float32) for name, shape in shapes.items()}
