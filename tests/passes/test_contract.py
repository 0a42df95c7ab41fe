"""The contract every registered pass keeps, checked on tiny models (an MLP, a small CNN, an attention block)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import onnx
import pytest
from passes_models import MODELS, calibration_for

from honed.model import check_model, model_io, save_model
from honed.passes import Pass, PassContext, PassError, all_passes, get_pass, pass_names
from honed.runtime import create_session

PASSES = pass_names()


def _context(p: Pass, model: onnx.ModelProto, tmp_path: Path) -> PassContext:
    backend, provider = p.targets[0].split("/")
    return PassContext(
        target_backend=backend,
        target_provider=provider,
        calibration=calibration_for(model),
        work_dir=tmp_path / "work",
    )


def _signature(model: onnx.ModelProto) -> tuple[list[tuple[str, int]], list[tuple[str, int]]]:
    inputs, outputs = model_io(model)
    return [(s.name, s.elem_type) for s in inputs], [(s.name, s.elem_type) for s in outputs]


def test_every_pass_is_registered_and_described() -> None:
    built_in = {"fp16", "graph", "int8-dynamic", "int8-static", "nncf-int8", "prune", "transformer-fusion"}
    assert built_in <= set(PASSES)
    for p in all_passes():
        info = p.describe()
        assert info["name"] == p.name and info["description"] and info["targets"]
        for param in info["params"]:
            assert param["description"]


@pytest.mark.parametrize("name", PASSES)
@pytest.mark.parametrize("model_name", sorted(MODELS))
def test_pass_contract(name: str, model_name: str, tmp_path: Path) -> None:
    p = get_pass(name)
    model = MODELS[model_name]()
    ctx = _context(p, model, tmp_path)
    params = p.resolve({}, ctx)
    reason = p.skip_reason(ctx, params, model)
    if reason is not None:
        assert isinstance(reason, str) and reason.strip()
        return
    before = model.SerializeToString()

    out = p.run(model, params, ctx)

    assert model.SerializeToString() == before, "the pass changed its input model"
    check_model(out)
    assert _signature(out) == _signature(model)
    again = p.run(model, params, ctx)
    assert again.SerializeToString() == out.SerializeToString(), "the pass is not deterministic"

    path = save_model(out, tmp_path / "out.onnx")
    session = create_session(path)
    feed = next(iter(calibration_for(model, seed=7)()))
    got = session.run(feed)
    want = create_session(save_model(model, tmp_path / "in.onnx")).run(feed)
    for key, value in want.items():
        assert got[key].shape == value.shape and got[key].dtype == value.dtype
        assert np.all(np.isfinite(got[key]))


@pytest.mark.parametrize("name", PASSES)
def test_each_pass_applies_to_some_tiny_model(name: str, tmp_path: Path) -> None:
    p = get_pass(name)
    applicable = []
    for model_name, make in sorted(MODELS.items()):
        model = make()
        if p.skip_reason(_context(p, model, tmp_path), None, model) is None:
            applicable.append(model_name)
    assert applicable, f"{name} is skipped on every test model"


@pytest.mark.parametrize("name", PASSES)
def test_pass_accepts_a_path_and_search_space_resolves(name: str, tmp_path: Path) -> None:
    p = get_pass(name)
    model = next(
        m
        for m in (make() for _, make in sorted(MODELS.items()))
        if p.skip_reason(_context(p, m, tmp_path), None, m) is None
    )
    ctx = _context(p, model, tmp_path)
    space = p.search_space(ctx)
    assert space
    for params in space:
        assert p.resolve(params, ctx) == params, "search_space must give resolved parameters"
        assert "auto" not in params.values()
    path = save_model(model, tmp_path / "m.onnx")
    try:
        from_path = p.run(path, space[0], ctx)
    except PassError as exc:
        pytest.fail(f"{name} failed on its own first search-space setting: {exc}")
    assert from_path.SerializeToString() == p.run(model, space[0], ctx).SerializeToString()


@pytest.mark.parametrize("name", PASSES)
def test_bad_parameters_are_refused(name: str) -> None:
    from honed.errors import InvalidArgument

    p = get_pass(name)
    with pytest.raises(InvalidArgument, match="no parameter"):
        p.validate_params({"no_such_param": 1})
    for param in p.params:
        bad: Any = object()
        with pytest.raises(InvalidArgument, match=param.name):
            p.validate_params({param.name: bad})
