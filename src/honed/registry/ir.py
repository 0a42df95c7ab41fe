"""OpenVINO IR in the content-addressed store: its ``.xml`` and ``.bin`` as two blobs, tied by a manifest blob.

The manifest's bytes are the two files' sha256 values, one a line (``<xml sha256>\\n<bin sha256>``), so its own
sha256, the version's, is the IR's :func:`~honed.model.artifact.artifact_sha256`: both files count, and a change to
either is a different version. Reading a version back checks every blob against its hash, then lays the two files
out side by side as ``model.xml`` + ``model.bin`` (OpenVINO finds the weights by name) in a folder beside the
manifest blob in the store (``<manifest>.ir/``, owned by the store's user), which is rebuilt when its files do not
hash to the version's.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

from honed.errors import InvalidModel
from honed.model.artifact import IR_FILE, artifact_files, artifact_sha256, check_ir, copy_artifact
from honed.model.loader import file_sha256
from honed.registry.artifacts import ArtifactStore, StoredArtifact

FORMAT = "openvino-ir"


def put_ir(store: ArtifactStore, xml: Path) -> StoredArtifact:
    """Store the IR at ``xml`` (and its ``.bin``); returns the manifest's hash with the two files' total size."""
    check_ir(xml)
    parts = [store.put(path) for path in artifact_files(xml)]
    with tempfile.TemporaryDirectory(prefix="honed-ir-") as tmp:
        manifest = Path(tmp) / "manifest"
        manifest.write_text("\n".join(part.sha256 for part in parts))
        stored = store.put(manifest)
    return StoredArtifact(stored.sha256, sum(part.size for part in parts))


def blob_hashes(manifest: Path) -> list[str]:
    """The ``.xml`` and ``.bin`` blob hashes a manifest names; a manifest of another shape is refused."""
    hashes = manifest.read_text().split("\n")
    if len(hashes) != 2 or not all(len(h) == 64 for h in hashes):
        raise InvalidModel(f"{manifest} is not an OpenVINO IR manifest (two sha256 lines)")
    return hashes


def lay_out(store: ArtifactStore, sha256: str, manifest: Path) -> Path:
    """``model.xml`` + ``model.bin`` of the IR whose manifest (already checked against ``sha256``) is
    ``manifest``, as checked copies of its blobs; a blob whose bytes do not match its hash raises InvalidModel."""
    folder = manifest.with_name(manifest.name + ".ir")
    xml = folder / IR_FILE
    if all(p.is_file() for p in artifact_files(xml)) and artifact_sha256(xml) == sha256:
        return xml
    blobs = [store.local_path(h) for h in blob_hashes(manifest)]
    for blob, expected in zip(blobs, blob_hashes(manifest), strict=True):
        actual = file_sha256(blob)
        if actual != expected:
            raise InvalidModel(f"blob {blob} has sha256 {actual}, but the IR's manifest names {expected}")
    with tempfile.TemporaryDirectory(prefix="honed-ir-") as tmp:
        staged = Path(tmp) / IR_FILE
        for blob, dest in zip(blobs, artifact_files(staged), strict=True):
            dest.write_bytes(blob.read_bytes())
        copy_artifact(staged, xml)
    if artifact_sha256(xml) != sha256:
        raise InvalidModel(f"the IR laid out at {folder} does not hash to {sha256}")
    return xml
