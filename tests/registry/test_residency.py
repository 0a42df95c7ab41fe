"""Residency: placement and request checks fail closed; unlabelled is refused unless the operator opts out."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

import pytest

from honed.errors import InvalidArgument, PermissionDenied, ResidencyViolation
from honed.registry import ModelVersion, Registry
from honed.registry.residency import check_placement, check_request

ModelFactory = Callable[[float], Path]


def _version(*residency: str) -> ModelVersion:
    return ModelVersion("m", 3, "0" * 64, 1, "onnx", datetime(2026, 1, 1, tzinfo=UTC), "x", residency=residency)


def test_placement_allowed_only_in_labelled_jurisdictions() -> None:
    assert check_placement(_version("AE", "SA"), "ae") == "AE"
    with pytest.raises(ResidencyViolation, match=r"m:3 may run only in AE, SA, not in US"):
        check_placement(_version("AE", "SA"), "US")


def test_unlabelled_version_is_refused_unless_opted_out() -> None:
    with pytest.raises(ResidencyViolation, match="carries no residency label") as info:
        check_placement(_version(), "AE")
    assert isinstance(info.value, PermissionDenied)
    assert "honed registry label m:3 --residency AE" in str(info.value)
    assert check_placement(_version(), "AE", allow_unlabelled=True) == "AE"
    # opting out of unlabelled does not open up labelled versions
    with pytest.raises(ResidencyViolation):
        check_placement(_version("AE"), "US", allow_unlabelled=True)


def test_placement_rejects_a_bad_jurisdiction_code() -> None:
    with pytest.raises(InvalidArgument, match="invalid jurisdiction"):
        check_placement(_version("AE"), "A E!")


def test_requests_must_declare_a_jurisdiction_the_server_is_approved_for() -> None:
    assert check_request("AE", ["AE"]) == "AE"
    assert check_request(" us , ae ", ["ae", "SA"]) == "AE"
    with pytest.raises(ResidencyViolation, match="must stay in AE, but this server is approved only for US"):
        check_request("AE", ["US"])
    with pytest.raises(ResidencyViolation, match="approved only for no jurisdiction"):
        check_request("AE", [])
    with pytest.raises(ResidencyViolation, match="not valid"):
        check_request("???", ["AE"])
    with pytest.raises(ResidencyViolation, match="empty data residency"):
        check_request(" , ", ["AE"])


def test_undeclared_requests_are_refused_unless_opted_out() -> None:
    with pytest.raises(ResidencyViolation, match="X-Data-Residency"):
        check_request(None, ["AE"])
    with pytest.raises(ResidencyViolation):
        check_request("  ", ["AE"])
    assert check_request(None, ["AE"], allow_unlabelled=True) is None
    with pytest.raises(ResidencyViolation):
        check_request("US", ["AE"], allow_unlabelled=True)


def test_labels_from_the_registry_drive_placement(reg: Registry, make_model: ModelFactory) -> None:
    reg.register(make_model(1), "m", actor="x")
    with pytest.raises(ResidencyViolation):
        check_placement(reg.resolve("m:1"), "AE")
    reg.label("m:1", actor="x", residency=["AE"])
    assert check_placement(reg.resolve("m:1"), "AE") == "AE"
    with pytest.raises(ResidencyViolation) as info:
        check_placement(reg.resolve("m:1"), "US")
    reg.audit("server-us", "refuse_load", "m:1", {"jurisdiction": "US", "reason": str(info.value)})
    assert [e.action for e in reg.audit_log()][-1] == "refuse_load"
    assert reg.verify_audit().ok
