"""The bundle on disk: manifest.json read and every listed file's sha256 checked before anything loads.

The manifest is written by honed (``honed.edge.manifest.EdgeManifest``); this is its reader on the device, which
cannot import honed. It refuses another schema and names the first field or file that is wrong.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

SCHEMA = "honed.edge/1"
MANIFEST = "manifest.json"


class BundleError(Exception):
    """The bundle cannot be trusted or read: a missing or edited file, a bad manifest."""


class InputError(Exception):
    """A request's inputs do not fit the model (names, dtypes, shapes, or an unreadable body)."""


class RunError(Exception):
    """The inputs fit, but the runtime failed while running the model."""


@dataclass(frozen=True)
class Tensor:
    name: str
    dtype: str
    """numpy dtype name (``float32``, ``int64``, ``bool``...)."""
    shape: tuple[int | None, ...]
    """``None`` for a dimension of any size."""


@dataclass(frozen=True)
class Bundle:
    root: Path
    name: str
    model_file: str
    model_format: str
    session: dict[str, Any]
    inputs: tuple[Tensor, ...]
    outputs: tuple[Tensor, ...]
    sample_file: str
    reference_file: str
    rtol: float
    atol: float
    runtime: dict[str, str]
    files: dict[str, str]

    @property
    def model_path(self) -> Path:
        return self.root / self.model_file


def _field(data: dict[str, Any], key: str, kind: type | tuple[type, ...], where: str = MANIFEST) -> Any:
    if key not in data:
        raise BundleError(f"{where}: missing {key!r}; export the bundle again with honed export edge")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise BundleError(f"{where}: {key!r} has the wrong type ({type(value).__name__})")
    return value


def _tensors(items: Any, where: str) -> tuple[Tensor, ...]:
    if not isinstance(items, list):
        raise BundleError(f"{MANIFEST}: {where} must be a list")
    out = []
    for i, item in enumerate(items):
        at = f"{where}[{i}]"
        if not isinstance(item, dict):
            raise BundleError(f"{MANIFEST}: {at} must be an object")
        shape = _field(item, "shape", list, at)
        out.append(
            Tensor(
                str(_field(item, "name", str, at)),
                str(_field(item, "dtype", str, at)),
                tuple(d if isinstance(d, int) else None for d in shape),
            )
        )
    return tuple(out)


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def open_bundle(root: str | Path, *, verify: bool = True) -> Bundle:
    """Read ``root/manifest.json``; with ``verify``, refuse the bundle if any listed file is missing or changed."""
    root = Path(root).resolve()
    try:
        data = json.loads((root / MANIFEST).read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise BundleError(f"no {MANIFEST} in {root}: run from the bundle folder or pass --bundle") from None
    except (OSError, ValueError) as exc:
        raise BundleError(f"cannot read {root / MANIFEST}: {exc}") from exc
    if not isinstance(data, dict) or data.get("schema") != SCHEMA:  # a manifest of another schema, or not an object
        got = data.get("schema") if isinstance(data, dict) else None
        raise BundleError(f"{MANIFEST}: expected schema {SCHEMA!r}, got {got!r}")
    model = _field(data, "model", dict)
    sample = _field(data, "sample", dict)
    files = _field(data, "files", dict)
    bundle = Bundle(
        root=root,
        name=str(_field(data, "name", str)),
        model_file=str(_field(model, "file", str, "model")),
        model_format=str(_field(model, "format", str, "model")),
        session=dict(_field(data, "session", dict)),
        inputs=_tensors(_field(model, "inputs", list, "model"), "model.inputs"),
        outputs=_tensors(_field(model, "outputs", list, "model"), "model.outputs"),
        sample_file=str(_field(sample, "inputs", str, "sample")),
        reference_file=str(_field(sample, "outputs", str, "sample")),
        rtol=float(_field(sample, "rtol", (int, float), "sample")),
        atol=float(_field(sample, "atol", (int, float), "sample")),
        runtime={str(k): str(v) for k, v in dict(_field(data, "runtime", dict)).items()},
        files={str(k): str(v) for k, v in files.items()},
    )
    for needed in (bundle.model_file, bundle.sample_file, bundle.reference_file):
        if needed not in bundle.files:
            raise BundleError(f"{MANIFEST}: {needed} is not listed under 'files', so it cannot be checked")
    if verify:
        verify_files(bundle)
    return bundle


def verify_files(bundle: Bundle) -> None:
    """Every file the manifest lists exists with the sha256 it lists (the first difference is named)."""
    for rel, want in sorted(bundle.files.items()):
        path = (bundle.root / rel).resolve()
        if bundle.root not in path.parents:
            raise BundleError(f"{MANIFEST} lists {rel!r}, which is outside the bundle")
        if not path.is_file():
            raise BundleError(f"{rel} is missing from the bundle")
        got = file_sha256(path)
        if got != want:
            raise BundleError(f"{rel} was changed after export (sha256 {got[:12]}, manifest {want[:12]})")
