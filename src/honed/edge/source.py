"""What ``honed export edge SOURCE`` exports: an optimize output folder, a model file, or a registry version.

Each resolves to a :class:`ResolvedSource`: the model (an ONNX file, or an OpenVINO IR ``model.xml`` with its
``model.bin``), the runtime config the optimize run chose (the default config for a bare model file), the input
shapes it measured at, and the provenance the manifest records. A winner measured on OpenVINO (IR, or ONNX) keeps
OpenVINO and the precision and threads it was measured with; every other ONNX model runs on ONNX Runtime.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from honed.edge.manifest import EdgeSource
from honed.errors import HonedError, InvalidArgument, ModelNotFound
from honed.model.artifact import artifact_exists, artifact_sha256, check_ir, is_ir, winner_file
from honed.runtime import RuntimeConfig
from honed.runtime.factory import runtime_for


@dataclass(frozen=True)
class ResolvedSource:
    model_path: Path
    runtime: RuntimeConfig
    provenance: EdgeSource
    name: str
    shapes: Mapping[str, tuple[int, ...]] = field(default_factory=dict)
    """Input -> the concrete shape the optimize run measured (empty: batch 1, other dynamic dims 1)."""


def edge_runtime(model: Path, recorded: RuntimeConfig) -> RuntimeConfig:
    """The runtime a bundle runs ``model`` on, as measured: an IR, or an ONNX model measured on OpenVINO, on
    OpenVINO with the recorded precision and threads; any other ONNX model on ONNX Runtime with the recorded
    session options. CPU pinning is dropped (core ids belong to another box)."""
    if is_ir(model) or recorded.backend == "openvino":
        return runtime_for(model, recorded).with_(affinity=None)
    return recorded.with_(backend="onnxruntime", affinity=None, options={})


def _runtime_from(data: Any, model: Path, where: str) -> RuntimeConfig:
    try:
        recorded = RuntimeConfig.from_dict(dict(data)) if isinstance(data, Mapping) else RuntimeConfig()
        return edge_runtime(model, recorded)
    except HonedError as exc:
        raise InvalidArgument(f"{where}: the recorded runtime config is unusable: {exc}") from exc


def _shapes(data: Any) -> dict[str, tuple[int, ...]]:
    if not isinstance(data, Mapping):
        return {}
    return {str(k): tuple(int(d) for d in v) for k, v in data.items() if isinstance(v, list | tuple)}


def _from_optimize(folder: Path, name: str | None) -> ResolvedSource:
    from honed.search.document import REPORT_FILE, OptimizeReport
    from honed.search.recipe import Recipe

    model = winner_file(folder)
    if not artifact_exists(model):
        raise InvalidArgument(
            f"{folder} holds no model.onnx or model.xml + model.bin: give an optimize output folder with a winner"
        )
    recipe_path, report_path = folder / "recipe.json", folder / REPORT_FILE
    if not recipe_path.is_file():
        raise InvalidArgument(f"{folder} holds no recipe.json: it is not a finished optimize output folder")
    recipe = Recipe.read(recipe_path)
    report = OptimizeReport.read(report_path) if report_path.is_file() else None
    shapes = _shapes(report.settings.shapes) if report is not None and report.settings is not None else {}
    measured = recipe.runtime.backend
    runtime = _runtime_from(recipe.runtime.to_dict(), model, str(recipe_path))
    provenance = EdgeSource(
        kind="optimize",
        location=str(folder.resolve()),
        sha256=artifact_sha256(model),
        measured_backend=measured,
        recipe=recipe.to_dict(),
    )
    return ResolvedSource(model, runtime, provenance, name or _default_name(recipe.source_name or folder.name), shapes)


def _from_file(path: Path, name: str | None) -> ResolvedSource:
    if is_ir(path):
        check_ir(path)
    runtime = edge_runtime(path, RuntimeConfig())
    provenance = EdgeSource(
        kind="model", location=str(path.resolve()), sha256=artifact_sha256(path), measured_backend=runtime.backend
    )
    return ResolvedSource(path, runtime, provenance, name or _default_name(path.stem))


def _from_registry(ref: str, url: str | None, name: str | None) -> ResolvedSource:
    from honed.registry import open_registry

    with open_registry(url) as registry:
        version = registry.resolve(ref)
        path = registry.artifact_path(version, actor="honed-export")
    if version.format not in ("onnx", "openvino-ir"):
        raise InvalidArgument(
            f"{version.ref} is stored as {version.format!r}; an edge bundle needs an ONNX model or OpenVINO IR"
        )
    recipe = version.recipe or {}
    profile = version.profile or {}
    settings = profile.get("settings") if isinstance(profile, Mapping) else None
    provenance = EdgeSource(
        kind="registry",
        location=registry.url,
        sha256=version.sha256,
        ref=version.ref,
        parent=version.parent,
        measured_backend=str(recipe.get("backend") or "onnxruntime"),
        recipe=recipe or None,
    )
    runtime = _runtime_from(recipe.get("runtime"), Path(path), version.ref)
    shapes = _shapes(settings.get("shapes")) if isinstance(settings, Mapping) else {}
    return ResolvedSource(Path(path), runtime, provenance, name or version.name, shapes)


def _default_name(text: str) -> str:
    cleaned = "".join(c if c.isalnum() or c in "._-" else "-" for c in Path(text).stem).strip("-._")
    return cleaned or "model"


def resolve_source(source: str, *, registry: str | None = None, name: str | None = None) -> ResolvedSource:
    """A folder (optimize output), an ``.onnx`` file, or, with ``registry``, a reference such as ``scorer@production``
    or ``scorer:3``. A source that is none of these raises a domain error naming it."""
    if registry is not None:
        return _from_registry(source, registry, name)
    path = Path(source)
    if path.is_dir():
        return _from_optimize(path, name)
    if path.is_file():
        return _from_file(path, name)
    raise ModelNotFound(
        f"{source} is neither an optimize output folder nor a model file; for a registry version pass --registry URL"
    )
