"""The contract every registered pass keeps, as an importable battery (in the manner of scikit-learn's
``estimator_checks``): ``check_pass(pass_cls)`` raises :class:`ContractViolation` on the first broken promise.

What is checked, on the tiny graphs of :mod:`honed.passes.tiny_models`:

- the pass describes itself and declares typed, described parameters (:class:`~honed.passes.Param`);
- unknown parameter names and bad values are refused with :class:`~honed.errors.InvalidArgument` naming them;
- its search space holds resolved values only;
- on every graph it does not skip (a skip gives a sentence), it returns a valid ONNX model with the input's
  signature, leaves its input untouched, is deterministic, gives the same bytes from a path as from a model,
  and the output, run on the pass's target backend (ONNX Runtime on the CPU when that one is not here),
  matches the original within the pass's :attr:`~honed.passes.Pass.tolerance`;
- it applies to at least one tiny graph.

A pass whose optional library is not installed raises :class:`unittest.SkipTest` (pytest reports a skip).
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from honed.errors import HonedError, InvalidArgument
from honed.passes._graph import io_signature
from honed.passes.base import AUTO, Param, Pass, PassContext, PassError
from honed.passes.registry import get_pass, spec_for
from honed.passes.tiny_models import TINY_MODELS, calibration_for

__all__ = ["ContractViolation", "check_pass", "output_error"]


class ContractViolation(AssertionError):
    """A pass broke a promise of the pass contract (the message says which pass and which promise)."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def check_pass(pass_cls: type[Pass] | str, work_dir: Path | None = None) -> list[str]:
    """Run the whole battery on a pass (its class or registered name); returns the tiny graphs it applied to."""
    p = get_pass(pass_cls) if isinstance(pass_cls, str) else pass_cls()
    missing = spec_for(type(p)).missing()
    if missing:
        raise unittest.SkipTest(f"{p.name}: {', '.join(missing)} is not installed")
    check_description(p)
    check_bad_params_refused(p)
    with tempfile.TemporaryDirectory() as scratch:
        folder = work_dir or Path(scratch)
        applied = [name for name in sorted(TINY_MODELS) if check_on_model(p, name, folder)]
    _expect(bool(applied), f"{p.name} is skipped on every tiny graph ({', '.join(sorted(TINY_MODELS))})")
    return applied


def check_description(p: Pass) -> None:
    """Name, description and targets are given; every parameter is a described :class:`Param`."""
    info = p.describe()
    _expect(bool(info["name"]) and bool(info["description"]), f"{p!r} has no name or description")
    _expect(bool(info["targets"]), f"{p.name} lists no target")
    for param in p.params:
        _expect(isinstance(param, Param), f"{p.name}: parameter {param!r} is not a Param")
        _expect(bool(param.description.strip()), f"{p.name}: parameter {param.name!r} has no description")
    _expect(p.tolerance is None or p.tolerance >= 0, f"{p.name}: tolerance must be >= 0 or None")


def check_bad_params_refused(p: Pass) -> None:
    """An unknown name and a value of the wrong type are refused with an InvalidArgument naming them."""
    _raises_invalid(p, {"no_such_param": 1}, "no parameter")
    for param in p.params:
        _raises_invalid(p, {param.name: object()}, param.name)


def _raises_invalid(p: Pass, params: dict[str, Any], mentions: str) -> None:
    try:
        p.validate_params(params)
    except InvalidArgument as exc:
        _expect(mentions in str(exc), f"{p.name}: refusing {params!r} should mention {mentions!r}: {exc}")
        return
    raise ContractViolation(f"{p.name} accepted bad parameters {params!r}")


def check_on_model(p: Pass, model_name: str, folder: Path) -> bool:
    """The per-graph promises on ``TINY_MODELS[model_name]``; False when the pass (rightly) skips the graph."""
    model = TINY_MODELS[model_name]()
    backend, provider = p.targets[0].split("/")
    ctx = PassContext(
        target_backend=backend, target_provider=provider, calibration=calibration_for(model), work_dir=folder
    )
    where = f"{p.name} on the tiny {model_name}"
    reason = p.skip_reason(ctx, None, model)
    if reason is not None:
        _expect(isinstance(reason, str) and bool(reason.strip()), f"{where}: a skip must say why")
        return False
    space = p.search_space(ctx)
    _expect(bool(space), f"{where}: the search space is empty")
    for params in space:
        _expect(p.resolve(params, ctx) == params, f"{where}: search_space must give resolved parameters")
        _expect(AUTO not in params.values(), f"{where}: search_space left a value at {AUTO!r}")
    # the first setting the pass does not skip on this graph, as the search would try it
    chosen = next((s for s in space if p.skip_reason(ctx, s, model) is None), None)
    if chosen is None:
        return False
    params = chosen
    if p.artifact == "openvino-ir":
        check_ir_on_model(p, model, model_name, params, ctx, folder)
        return True
    before = model.SerializeToString()
    out = _run(p, model, params, ctx, where)
    _expect(model.SerializeToString() == before, f"{where}: the pass changed its input model")
    try:
        onnx.checker.check_model(out)
    except onnx.checker.ValidationError as exc:
        raise ContractViolation(f"{where}: the output is not a valid ONNX model: {exc}") from exc
    _expect(io_signature(out) == io_signature(model), f"{where}: the output's inputs/outputs differ from the input's")
    again = _run(p, model, params, ctx, where)
    _expect(again.SerializeToString() == out.SerializeToString(), f"{where}: the pass is not deterministic")
    path = folder / f"{model_name}.onnx"
    onnx.save(model, path)
    from_path = _run(p, path, params, ctx, where)
    _expect(from_path.SerializeToString() == out.SerializeToString(), f"{where}: a path gives other bytes")
    error = output_error(model, out, backend, folder)
    tolerance = p.tolerance_on(ctx)
    if tolerance is not None:
        _expect(error <= tolerance, f"{where}: relative output error {error:.3g} > tolerance {tolerance:g}")
    return True


def check_ir_on_model(
    p: Pass, model: onnx.ModelProto, model_name: str, params: dict[str, Any], ctx: PassContext, folder: Path
) -> None:
    """The promises of a pass that writes OpenVINO IR: :meth:`~honed.passes.Pass.run` refuses (it cannot give
    ONNX); :meth:`~honed.passes.Pass.export` writes an ``.xml`` with its ``.bin``, keeps the input's inputs and
    outputs, leaves its input untouched, gives the same bytes twice and from a path, and the IR run on OpenVINO
    matches the original within the pass's tolerance."""
    from honed.model.artifact import artifact_exists, file_hashes
    from honed.runtime import RuntimeConfig, create_session

    where = f"{p.name} on the tiny {model_name}"
    try:
        p.run(model, params, ctx)
    except PassError:
        pass
    else:
        raise ContractViolation(f"{where}: run() gave ONNX from a pass that declares it writes {p.artifact}")
    before = model.SerializeToString()
    first = _export(p, model, params, ctx, folder / "ir" / "first", where)
    _expect(model.SerializeToString() == before, f"{where}: the pass changed its input model")
    _expect(first.suffix == ".xml" and artifact_exists(first), f"{where}: {first.name} is not an .xml with its .bin")
    source = folder / f"{model_name}.onnx"
    onnx.save(model, source)
    again = _export(p, source, params, ctx, folder / "ir" / "again", where)
    _expect(file_hashes(again) == file_hashes(first), f"{where}: the pass is not deterministic (or a path differs)")
    session = create_session(first, RuntimeConfig(backend="openvino"))
    got = ([(t.name, t.elem_type) for t in session.inputs], [(t.name, t.elem_type) for t in session.outputs])
    want = io_signature(model)
    _expect(
        [sorted(side) for side in got] == [sorted(side) for side in want],
        f"{where}: the IR's inputs/outputs {got} differ from the model's {want}",
    )
    error = output_error(model, first, "openvino", folder)
    tolerance = p.tolerance_on(ctx)
    if tolerance is not None:
        _expect(error <= tolerance, f"{where}: relative output error {error:.3g} > tolerance {tolerance:g}")


def _export(
    p: Pass, model: onnx.ModelProto | Path, params: dict[str, Any], ctx: PassContext, folder: Path, where: str
) -> Path:
    try:
        return p.export(model, params, ctx, folder / "model.xml")
    except HonedError as exc:
        raise ContractViolation(f"{where}: failed on its own first search-space setting: {exc}") from exc


def _run(p: Pass, model: onnx.ModelProto | Path, params: dict[str, Any], ctx: PassContext, where: str) -> Any:
    try:
        return p.run(model, params, ctx)
    except HonedError as exc:
        raise ContractViolation(f"{where}: failed on its own first search-space setting: {exc}") from exc


def output_error(reference: onnx.ModelProto, candidate: onnx.ModelProto | Path, backend: str, folder: Path) -> float:
    """Largest ``||out - ref|| / ||ref||`` over the outputs on one batch; ``candidate`` (a model, or the path of
    one such as an IR ``.xml``) runs on ``backend`` (ONNX Runtime when that one is not installed); inf when an
    output has the wrong shape or dtype or is not finite."""
    from honed.runtime import RuntimeConfig, create_session, get_backend

    runtime = RuntimeConfig(backend=backend) if get_backend(backend).available() else RuntimeConfig()
    ref_path = folder / "reference.onnx"
    onnx.save(reference, ref_path)
    if isinstance(candidate, Path):
        out_path = candidate
    else:
        out_path = folder / "candidate.onnx"
        onnx.save(candidate, out_path)
    feed = next(iter(calibration_for(reference, seed=7)()))
    want = create_session(ref_path).run(feed)
    got = create_session(out_path, runtime).run(feed)
    worst = 0.0
    for name, expected in want.items():
        actual = got.get(name)
        if actual is None or actual.shape != expected.shape or actual.dtype != expected.dtype:
            return float("inf")
        if not np.all(np.isfinite(actual)):
            return float("inf")
        ref64 = expected.astype(np.float64)
        diff = float(np.linalg.norm(actual.astype(np.float64) - ref64))
        worst = max(worst, diff / max(float(np.linalg.norm(ref64)), 1e-12))
    return worst
