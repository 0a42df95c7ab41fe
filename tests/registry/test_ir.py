"""OpenVINO IR in the registry: both files stored and hashed, laid out again side by side, checked on the way out."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from honed.errors import InvalidModel
from honed.model.artifact import artifact_sha256, file_hashes
from honed.registry import Registry
from honed.registry.ir import blob_hashes
from tests.registry.conftest import ModelFactory

ov = pytest.importorskip("openvino")


def _ir(source: Path, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    xml = folder / "model.xml"
    ov.save_model(ov.Core().read_model(str(source)), str(xml), compress_to_fp16=False)
    return xml


def test_an_ir_is_stored_as_both_files_and_comes_back_checked(reg: Registry, make_model: ModelFactory) -> None:
    xml = _ir(make_model(1), make_model(1).parent / "out")
    v = reg.register(xml.parent, "m", actor="x")  # an optimize output folder holding model.xml + model.bin
    assert v.format == "openvino-ir" and v.sha256 == artifact_sha256(xml)
    assert v.size == xml.stat().st_size + xml.with_suffix(".bin").stat().st_size
    assert reg.register(xml, "m", actor="x").version == v.version  # the same IR again is the same version
    served = reg.artifact_path(v)
    assert served.name == "model.xml" and file_hashes(served) == file_hashes(xml)
    # a changed .bin is a new version: both files count
    weights = bytearray(xml.with_suffix(".bin").read_bytes())
    weights[0] ^= 0xFF
    xml.with_suffix(".bin").write_bytes(bytes(weights))
    assert reg.register(xml, "m", actor="x").version == v.version + 1


def test_a_corrupted_ir_blob_is_refused_and_audited(reg: Registry, make_model: ModelFactory) -> None:
    xml = _ir(make_model(2), make_model(2).parent / "ir")
    v = reg.register(xml, "m", actor="x")
    served = reg.artifact_path(v)
    shutil.rmtree(served.parent)  # the next read lays the files out again from the blobs
    bin_blob = reg.store.local_path(blob_hashes(reg.store.local_path(v.sha256))[1])
    bin_blob.chmod(0o644)
    bin_blob.write_bytes(bin_blob.read_bytes() + b"\0")
    with pytest.raises(InvalidModel, match="refusing m:1"):
        reg.artifact_path(v, actor="server-1")
    assert [e.actor for e in reg.audit_log(action="integrity_failure")] == ["server-1"]
    assert reg.verify_audit().ok


def test_an_ir_without_its_bin_is_not_registered(reg: Registry, make_model: ModelFactory) -> None:
    xml = _ir(make_model(3), make_model(3).parent / "nobin")
    xml.with_suffix(".bin").unlink()
    with pytest.raises(InvalidModel, match=r"model\.bin is missing"):
        reg.register(xml, "m", actor="x")
