"""RegistryCatalog placement rules and ResidencyGuard decisions against a real SQLite registry (no server)."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import onnx
import pytest
from onnx import TensorProto, helper

from honed.errors import InvalidArgument, ResidencyViolation
from honed.registry import Registry, open_registry
from honed.serve.metrics import ServeMetrics
from honed.serve.registry_source import RegistryCatalog
from honed.serve.security import ResidencyGuard, normalize_jurisdictions


def _model(path: Path, value: float) -> Path:
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, ["batch", 4])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, ["batch", 4])
    c = helper.make_tensor("c", TensorProto.FLOAT, [1], [value])
    graph = helper.make_graph([helper.make_node("Add", ["x", "c"], ["y"])], "add", [x], [y], [c])
    onnx.save(helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)]), str(path))
    return path


@pytest.fixture
def reg(tmp_path: Path) -> Iterator[Registry]:
    registry = open_registry(f"sqlite:///{tmp_path / 'registry.db'}", artifacts=tmp_path / "artifacts")
    registry.register(_model(tmp_path / "plain.onnx", 1.0), "plain", actor="alice")
    registry.register(_model(tmp_path / "ae.onnx", 2.0), "ae", actor="alice", residency=["AE"])
    try:
        yield registry
    finally:
        registry.close()


def _count(metrics: ServeMetrics, model: str, reason: str) -> float:
    value = metrics.registry.get_sample_value("honed_residency_refusals_total", {"model": model, "reason": reason})
    return value or 0.0


def test_a_labelled_version_is_refused_by_a_server_approved_for_no_jurisdiction(reg: Registry) -> None:
    metrics = ServeMetrics()
    catalog = RegistryCatalog(reg, ["plain", "ae"], actor="srv", metrics=metrics)
    sources, bad = catalog.discover()
    assert [s.name for s in sources] == ["plain"] and list(sources[0].versions) == ["1"]
    assert [name for name, _ in bad] == ["ae"] and "--jurisdiction AE" in bad[0][1]
    assert _count(metrics, "ae", "placement") == 1
    refusals = [(e.action, e.target) for e in reg.audit_log(action="refuse_load")]
    assert refusals == [("refuse_load", "ae:1")]


def test_placement_needs_every_server_jurisdiction_and_an_explicit_opt_out_for_unlabelled(reg: Registry) -> None:
    strict = RegistryCatalog(reg, ["ae", "plain"], jurisdictions=["ae,sa"])
    with pytest.raises(ResidencyViolation, match="not in SA"):
        strict.source("ae")
    with pytest.raises(ResidencyViolation, match="no residency label"):
        strict.source("plain")
    opted_out = RegistryCatalog(reg, ["plain", "ae"], jurisdictions=["AE"], allow_unlabelled=True)
    assert [s.name for s in opted_out.discover()[0]] == ["ae", "plain"]


def test_load_and_unload_are_audited_with_the_ref_asked_for(reg: Registry) -> None:
    catalog = RegistryCatalog(reg, ["ae:1"], jurisdictions=["AE"], actor="srv")
    source = catalog.source("ae")
    catalog.loaded(source, ["1"])
    catalog.unloaded(source, ["1"], "shutdown")
    entries = [e for e in reg.audit_log() if e.actor == "srv"]
    assert [(e.action, e.target) for e in entries] == [("load", "ae:1"), ("unload", "ae:1")]
    assert entries[0].details["requested"] == "ae:1" and entries[1].details["reason"] == "shutdown"
    assert reg.verify_audit().ok


def test_residency_guard_decisions(reg: Registry) -> None:
    metrics = ServeMetrics()
    ungoverned = ResidencyGuard(metrics=metrics)
    assert asyncio.run(ungoverned.check("m", "1", None)) is None
    with pytest.raises(ResidencyViolation):
        asyncio.run(ungoverned.check("m", "1", "AE"))
    governed = ResidencyGuard(["AE"], metrics=metrics, audit=reg, actor="srv")
    assert asyncio.run(governed.check("m", "1", "sa, ae")) == "AE"
    with pytest.raises(ResidencyViolation):
        asyncio.run(governed.check("m", "1", ""))
    assert asyncio.run(ResidencyGuard(["AE"], allow_unlabelled=True).check("m", "1", None)) is None
    assert _count(metrics, "m", "not_approved") == 1 and _count(metrics, "m", "undeclared") == 1
    assert [(e.action, e.target) for e in reg.audit_log(action="refuse_request")] == [("refuse_request", "m:1")]


def test_jurisdiction_flags_are_normalised_and_checked() -> None:
    assert normalize_jurisdictions(["ae", "SA, qa", "AE"]) == ("AE", "SA", "QA")
    with pytest.raises(InvalidArgument):
        normalize_jurisdictions(["A!"])
