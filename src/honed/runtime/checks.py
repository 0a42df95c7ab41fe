"""The contract every registered backend keeps, as an importable battery: ``check_backend(name)`` raises
:class:`ContractViolation` on the first broken promise.

What is checked, for a backend that is installed here (else :class:`unittest.SkipTest`):

- it names itself as registered, reports a version and offers the ``cpu`` provider;
- what it offers the search is well-formed: ``precisions`` starts with ``f32``; each runtime variant and each
  lower-precision config is a config for this backend; the variants hold no repeats;
- a tiny ``onnx.helper`` graph (MatMul, Add, Relu) runs with the model's input and output names and matches
  ONNX Runtime's outputs; feeds missing an input are refused with :class:`~honed.errors.DataError`; a file
  that is not a model is refused with :class:`~honed.errors.InvalidModel`; a session built without profiling
  returns no trace;
- a static-shape variant, where the backend has one, is a config for this backend that answers inputs of its
  shapes and of any other shape exactly as the config it came from.
"""

from __future__ import annotations

import tempfile
import unittest
from pathlib import Path
from typing import Any

import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from honed.errors import DataError, HonedError, InvalidModel
from honed.runtime.base import Backend
from honed.runtime.config import unique_configs
from honed.runtime.factory import backend_specs, create_session, get_backend

__all__ = ["ContractViolation", "check_backend", "tiny_graph"]

_RTOL, _ATOL = 1e-5, 1e-6


class ContractViolation(AssertionError):
    """A backend broke a promise of the backend contract (the message says which backend and which promise)."""


def _expect(condition: bool, message: str) -> None:
    if not condition:
        raise ContractViolation(message)


def tiny_graph() -> onnx.ModelProto:
    """x[N,4] float -> MatMul -> Add -> Relu -> y[N,3]."""
    rng = np.random.default_rng(0)
    graph = helper.make_graph(
        [
            helper.make_node("MatMul", ["x", "w"], ["m"], name="matmul"),
            helper.make_node("Add", ["m", "b"], ["a"], name="add"),
            helper.make_node("Relu", ["a"], ["y"], name="relu"),
        ],
        "tiny",
        [helper.make_tensor_value_info("x", TensorProto.FLOAT, ["N", 4])],
        [helper.make_tensor_value_info("y", TensorProto.FLOAT, ["N", 3])],
        [
            numpy_helper.from_array(rng.normal(0, 0.5, (4, 3)).astype(np.float32), "w"),
            numpy_helper.from_array(rng.normal(0, 0.1, (3,)).astype(np.float32), "b"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    return model


def check_backend(backend: Backend | str, work_dir: Path | None = None) -> None:
    """Run the whole battery on a backend (an instance, or a registered name)."""
    b = get_backend(backend) if isinstance(backend, str) else backend
    if not b.available():
        raise unittest.SkipTest(f"backend {b.name!r} is not installed here")
    check_identity(b)
    check_offers(b)
    with tempfile.TemporaryDirectory() as scratch:
        check_runs_like_onnxruntime(b, work_dir or Path(scratch))


def check_identity(b: Backend) -> None:
    """Registered under its own name, with a version, offering the CPU provider."""
    _expect(b.name in {spec.name for spec in backend_specs()}, f"{b.name}: not registered under its name")
    _expect(bool(b.version()), f"{b.name}: available but reports no version")
    _expect("cpu" in b.providers(), f"{b.name}: does not offer the cpu provider")


def check_offers(b: Backend) -> None:
    """Precisions, runtime variants and lower-precision configs are well-formed configs for this backend."""
    precisions = b.precisions()
    _expect(bool(precisions) and precisions[0] == "f32", f"{b.name}: precisions() must start with f32: {precisions}")
    for objective in ("latency", "throughput"):
        variants = b.runtime_variants((0, 1), objective=objective)
        _expect(bool(variants), f"{b.name}: no runtime variants for {objective}")
        _expect(unique_configs(variants) == variants, f"{b.name}: runtime variants repeat a config")
        _expect(all(v.backend == b.name for v in variants), f"{b.name}: a runtime variant is for another backend")
        offer = b.lower_precisions(variants[0])
        _expect(
            all(c.backend == b.name and c != variants[0] for c in offer.configs),
            f"{b.name}: a lower-precision config is for another backend or is the default itself",
        )
        _expect(
            bool(offer.precisions) or not offer.configs, f"{b.name}: lower-precision configs with no precision named"
        )


def check_runs_like_onnxruntime(b: Backend, folder: Path) -> None:
    """The tiny graph runs with the model's names and ONNX Runtime's outputs; bad feeds and files are refused."""
    path = folder / "tiny.onnx"
    onnx.save(tiny_graph(), path)
    config = b.runtime_variants((0,))[0]
    session = b.create(path, config)
    _expect([s.name for s in session.inputs] == ["x"], f"{b.name}: input names {[s.name for s in session.inputs]}")
    _expect([s.name for s in session.outputs] == ["y"], f"{b.name}: output names {[s.name for s in session.outputs]}")
    _expect(session.config == config, f"{b.name}: the session does not keep its config")
    x = np.random.default_rng(1).normal(size=(5, 4)).astype(np.float32)
    want = create_session(path).run({"x": x})["y"]
    got = session.run({"x": x})
    _expect(set(got) == {"y"}, f"{b.name}: outputs {sorted(got)} instead of ['y']")
    _expect(
        np.allclose(got["y"], want, rtol=_RTOL, atol=_ATOL),
        f"{b.name}: outputs differ from ONNX Runtime's by up to {float(np.abs(got['y'] - want).max()):.3g}",
    )
    _refuses(b, DataError, "feeds missing an input", lambda: session.run({}))
    static = b.static_variant(config, {"x": (5, 4)})
    if static is not None:
        _expect(static.backend == b.name and static != config, f"{b.name}: a static variant is not a new config")
        _expect(b.static_variant(static, {"x": (5, 4)}) is None, f"{b.name}: a static variant offers itself again")
        fixed = b.create(path, static)
        other = x[:2]
        for feeds, reference in ((x, want), (other, create_session(path).run({"x": other})["y"])):
            out = fixed.run({"x": feeds})["y"]
            _expect(
                out.shape == reference.shape and np.allclose(out, reference, rtol=_RTOL, atol=_ATOL),
                f"{b.name}: the static variant answers a batch of {len(feeds)} unlike ONNX Runtime",
            )
    _expect(session.end_profiling() is None, f"{b.name}: a session built without profiling returned a trace")
    garbage = folder / "garbage.onnx"
    garbage.write_bytes(b"not an onnx model")
    _refuses(b, InvalidModel, "a file that is not a model", lambda: b.create(garbage, config))


def _refuses(b: Backend, error: type[HonedError], what: str, call: Any) -> None:
    try:
        call()
    except error:
        return
    except HonedError as exc:
        raise ContractViolation(f"{b.name}: {what} raised {type(exc).__name__}, not {error.__name__}") from exc
    raise ContractViolation(f"{b.name}: {what} was accepted")
