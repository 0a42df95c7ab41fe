"""Checking a converted model against its source: run the ONNX graph on the same inputs, compare every output.

An output passes when every element satisfies ``|onnx - source| <= atol + rtol * |source|`` (numpy's
``allclose`` rule); integer and boolean outputs (class labels) must match exactly. The figures (worst absolute
and relative error per output) are kept whether it passes or not, so a refusal names the worst output and its
error, and an accepted import records how close it came. The relative error is ``|onnx - source| /
max(|source|, atol)``, so elements near zero do not report an enormous relative error for a tiny absolute one.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import onnx

from honed.errors import DataError, ExportMismatch, HonedError, InvalidArgument
from honed.fields import as_dict
from honed.intake._quiet import first_line

Array = np.ndarray[Any, Any]


@dataclass(frozen=True)
class Tolerance:
    """How far an ONNX output may be from the source's: ``|onnx - source| <= atol + rtol * |source|``."""

    atol: float = 1e-4
    rtol: float = 1e-3

    def __post_init__(self) -> None:
        for name in ("atol", "rtol"):
            value = getattr(self, name)
            if not isinstance(value, int | float) or not np.isfinite(value) or value < 0:
                raise InvalidArgument(f"tolerance {name} must be a finite number >= 0, got {value!r}")

    def to_dict(self) -> dict[str, float]:
        return {"atol": float(self.atol), "rtol": float(self.rtol)}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Tolerance:
        return cls(atol=float(data["atol"]), rtol=float(data["rtol"]))


@dataclass(frozen=True)
class OutputError:
    """How one output of the ONNX model compares with the source's."""

    name: str
    max_abs_error: float
    max_rel_error: float
    mismatched: int
    """Elements outside the tolerance (for labels: elements that differ)."""
    elements: int

    @property
    def ok(self) -> bool:
        return self.mismatched == 0

    def to_dict(self) -> dict[str, Any]:
        return as_dict(self)

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> OutputError:
        return cls(
            name=str(data["name"]),
            max_abs_error=float(data["max_abs_error"]),
            max_rel_error=float(data["max_rel_error"]),
            mismatched=int(data["mismatched"]),
            elements=int(data["elements"]),
        )


@dataclass(frozen=True)
class Verification:
    """The comparison of every output on the inputs it was run on."""

    tolerance: Tolerance
    inputs: str
    """Where the inputs came from: ``sample FILE``, ``example inputs`` or ``generated``."""
    samples: int
    outputs: tuple[OutputError, ...]
    runtime: str
    """The runtime the ONNX side ran on, with its version."""
    batch_sizes: tuple[int, ...] = ()
    """The batch sizes it was compared at: the inputs', and one more where the batch axis is dynamic."""

    @property
    def ok(self) -> bool:
        return all(o.ok for o in self.outputs)

    @property
    def worst(self) -> OutputError:
        """The output furthest out of tolerance (or, when all pass, the one with the largest absolute error)."""
        return max(self.outputs, key=lambda o: (o.mismatched > 0, o.max_abs_error))

    def to_dict(self) -> dict[str, Any]:
        return {
            "ok": self.ok,
            "tolerance": self.tolerance.to_dict(),
            "inputs": self.inputs,
            "samples": self.samples,
            "runtime": self.runtime,
            "batch_sizes": list(self.batch_sizes),
            "outputs": [o.to_dict() for o in self.outputs],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Verification:
        return cls(
            tolerance=Tolerance.from_dict(data["tolerance"]),
            inputs=str(data["inputs"]),
            samples=int(data["samples"]),
            outputs=tuple(OutputError.from_dict(o) for o in data["outputs"]),
            runtime=str(data["runtime"]),
            batch_sizes=tuple(int(b) for b in data.get("batch_sizes", ())),
        )

    def merged(self, other: Verification) -> Verification:
        """Both comparisons as one: per output the worst errors and all mismatches, every batch size."""
        outputs = tuple(
            OutputError(
                a.name,
                max(a.max_abs_error, b.max_abs_error),
                max(a.max_rel_error, b.max_rel_error),
                a.mismatched + b.mismatched,
                a.elements + b.elements,
            )
            for a, b in zip(self.outputs, other.outputs, strict=True)
        )
        sizes = (*self.batch_sizes, *other.batch_sizes)
        return Verification(self.tolerance, self.inputs, self.samples, outputs, self.runtime, sizes)


def compare(
    model: onnx.ModelProto,
    feeds: Mapping[str, Array],
    expected: Sequence[Array],
    tolerance: Tolerance,
    *,
    inputs: str,
    run_failure: type[HonedError] = DataError,
) -> Verification:
    """Run ``model`` on ``feeds`` with ONNX Runtime (CPU) and compare its outputs, in order, with ``expected``.

    A failure to run is ``run_failure``: bad input for the user's inputs, a broken export for inputs the
    source itself ran on.
    """
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 4  # failures come back as exceptions, worded below
    try:
        session = ort.InferenceSession(model.SerializeToString(), options, providers=["CPUExecutionProvider"])
    except Exception as exc:  # ORT raises its own untyped errors for graphs it cannot load
        raise ExportMismatch(f"the exported ONNX model does not load in ONNX Runtime: {first_line(exc)}") from exc
    names = [o.name for o in session.get_outputs()]
    if len(names) != len(expected):
        raise ExportMismatch(f"the exported model has {len(names)} output(s) but the source gives {len(expected)}")
    wanted = {i.name for i in session.get_inputs()}
    try:
        got = session.run(None, {k: v for k, v in feeds.items() if k in wanted})
    except Exception as exc:
        shapes = ", ".join(f"{k} {tuple(np.shape(v))}" for k, v in feeds.items())
        where = " although its source can (the export fixed a size that should vary)" * (run_failure is ExportMismatch)
        raise run_failure(f"the exported model cannot run on inputs {shapes}{where}: {first_line(exc)}") from exc
    samples = min((len(v) for v in feeds.values() if np.ndim(v) > 0), default=1)
    errors = tuple(
        _compare_one(n, np.asarray(g), np.asarray(e), tolerance) for n, g, e in zip(names, got, expected, strict=True)
    )
    return Verification(tolerance, inputs, samples, errors, f"onnxruntime {ort.__version__}", (samples,))


def require_match(verification: Verification) -> None:
    """Refuse an export outside its tolerance, naming the worst output and its error."""
    if verification.ok:
        return
    w = verification.worst
    t = verification.tolerance
    sizes = "/".join(str(b) for b in verification.batch_sizes)
    raise ExportMismatch(
        f"the ONNX export does not match its source on {verification.inputs} (batch {sizes}): output {w.name!r} has "
        f"{w.mismatched} of {w.elements} element(s) outside atol={t.atol:g} rtol={t.rtol:g} "
        f"(max abs error {w.max_abs_error:.3g}, max rel error {w.max_rel_error:.3g}); nothing was written"
    )


def _compare_one(name: str, got: Array, want: Array, tol: Tolerance) -> OutputError:
    if got.shape != want.shape:
        if got.size != want.size:
            return OutputError(name, float("inf"), float("inf"), max(got.size, want.size), max(got.size, want.size))
        want = want.reshape(got.shape)  # e.g. a regressor's (n,) against ONNX's (n, 1)
    floor = max(tol.atol, 1e-12)  # relative error near zero is measured against atol, not against ~0
    exact = not (np.issubdtype(got.dtype, np.floating) or np.issubdtype(want.dtype, np.floating))
    if exact:
        differ = got != want
        mismatched = int(np.count_nonzero(differ))
        diff = np.abs(got.astype(np.float64) - want.astype(np.float64)) if got.size else np.zeros(0)
        rel = diff / np.maximum(np.abs(want.astype(np.float64)), floor) if got.size else diff
    else:
        g, w = got.astype(np.float64), want.astype(np.float64)
        diff = np.abs(g - w)
        both_nan = np.isnan(g) & np.isnan(w)
        diff = np.where(both_nan, 0.0, diff)
        rel = diff / np.maximum(np.abs(w), floor)
        outside = ~(diff <= tol.atol + tol.rtol * np.abs(w))
        mismatched = int(np.count_nonzero(outside & ~both_nan))
    max_abs = float(diff.max()) if diff.size else 0.0
    max_rel = float(rel.max()) if rel.size else 0.0
    return OutputError(name, max_abs, max_rel, mismatched, int(got.size))
