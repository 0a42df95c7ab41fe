"""Writing an edge bundle: the model in its fastest-loading form, a recorded sample with its reference output,
the session options, ``requirements.txt``, the runner, and the manifest with every file's sha256.

An ONNX model runs on ONNX Runtime (as ONNX or its ORT format, whichever opens faster); a winner measured on
OpenVINO runs on OpenVINO as IR (``model.xml`` + ``model.bin``; an ONNX one is converted), and ``requirements.txt``
pins openvino instead of onnxruntime.

The bundle is built in a hidden folder beside ``out``, checked by running its own selftest (and measured), and
only then renamed to ``out``: a failed export leaves nothing behind.
"""

from __future__ import annotations

import dataclasses
import importlib.metadata
import json
import os
import shutil
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

import honed
from honed.edge.cost import COST_FILE, BundleCost, cold_starts, measure_cost
from honed.edge.format import FORMAT_CHOICES, FormatChoice, choose_format, convert_to_ir
from honed.edge.manifest import (
    MANIFEST_FILE,
    EdgeManifest,
    EdgeModel,
    EdgeSample,
    EdgeTensor,
    SessionSettings,
)
from honed.edge.runner_files import copy_runner
from honed.edge.source import ResolvedSource, resolve_source
from honed.edge.versus import compare_with_serve
from honed.errors import BackendUnavailable, DataError, InvalidArgument
from honed.model.artifact import artifact_files, is_ir
from honed.model.loader import file_sha256
from honed.model.spec import TensorSpec, concrete_shapes
from honed.runtime import RuntimeConfig
from honed.runtime.factory import get_backend, runtime_for

RUNTIME_DISTRIBUTIONS = ("onnxruntime", "numpy")
"""What an ONNX bundle's requirements.txt pins; an OpenVINO bundle pins openvino in onnxruntime's place."""
SAMPLE_FILE, REFERENCE_FILE = "sample.npz", "reference.npz"
DEFAULT_RTOL, DEFAULT_ATOL = 1e-3, 1e-5


@dataclass(frozen=True)
class EdgeExport:
    """What ``export_edge`` made: the bundle folder, its manifest and its cost (None with ``measure=False``)."""

    path: Path
    manifest: EdgeManifest
    cost: BundleCost | None
    manifest_sha256: str
    """What ``python -m honed_edge selftest --expect`` checks: the manifest is the one exported."""


def runtime_distributions(backend: str = "onnxruntime") -> tuple[str, ...]:
    """The distributions a bundle on ``backend`` needs: the runtime and numpy."""
    return (backend, *RUNTIME_DISTRIBUTIONS[1:])


def pinned_versions(backend: str = "onnxruntime") -> dict[str, str]:
    """The installed runtime and numpy versions: what requirements.txt pins and the sample was checked with."""
    return {name: importlib.metadata.version(name) for name in runtime_distributions(backend)}


def _tensor(spec: TensorSpec, dtype: np.dtype[Any], rank: int) -> EdgeTensor:
    shape = tuple(d if isinstance(d, int) else None for d in spec.shape) if spec.shape is not None else (None,) * rank
    return EdgeTensor(spec.name, dtype.name, shape)


def _sample(source: ResolvedSource, inputs: list[TensorSpec], sample: Path | None) -> dict[str, np.ndarray[Any, Any]]:
    if sample is None:
        from honed.data.synthetic import synthetic_feeds

        return synthetic_feeds(inputs, concrete_shapes(inputs, dict(source.shapes), batch=1))
    try:
        with np.load(sample, allow_pickle=False) as archive:
            feeds = {name: archive[name] for name in archive.files}
    except FileNotFoundError:
        raise InvalidArgument(f"--sample {sample} not found") from None
    except (OSError, ValueError) as exc:
        raise InvalidArgument(f"--sample {sample} is not a readable .npz: {exc}") from exc
    names = [spec.name for spec in inputs]
    if sorted(feeds) != sorted(names):
        raise DataError(f"--sample {sample} holds {', '.join(sorted(feeds))}; the model takes {', '.join(names)}")
    return feeds


def _write_document(path: Path, data: dict[str, Any]) -> None:
    # The staging folder is renamed into place whole, so a plain write is atomic enough and keeps the umask's modes.
    path.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")


def _umask() -> int:
    current = os.umask(0o022)
    os.umask(current)
    return current


def _write_requirements(folder: Path, versions: dict[str, str]) -> Path:
    path = folder / "requirements.txt"
    path.write_text("".join(f"{name}=={version}\n" for name, version in versions.items()), encoding="utf-8")
    return path


def export_edge(
    source: str,
    out: str | Path,
    *,
    registry: str | None = None,
    name: str | None = None,
    model_format: str = "auto",
    sample: str | Path | None = None,
    rtol: float = DEFAULT_RTOL,
    atol: float = DEFAULT_ATOL,
    force: bool = False,
    measure: bool = True,
    latency_count: int = 200,
    versus_requests: int = 100,
    wheelhouse: str | Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> EdgeExport:
    """Export ``source`` (optimize out/, a model file, or with ``registry`` a reference) as a bundle at ``out``."""
    say = progress or (lambda _: None)
    target = Path(out)
    if target.exists() and not force:
        raise InvalidArgument(f"{target} already exists; choose another --out or pass --force to replace it")
    if target.exists() and not (target.is_dir() and ((target / MANIFEST_FILE).is_file() or not any(target.iterdir()))):
        # --force replaces an earlier bundle, never a folder of something else
        raise InvalidArgument(f"{target} is not an edge bundle (no {MANIFEST_FILE}); --force replaces only a bundle")
    if rtol < 0 or atol < 0:
        raise InvalidArgument("--rtol and --atol must be >= 0")
    if versus_requests < 1:
        raise InvalidArgument(f"--versus-requests must be >= 1, got {versus_requests}")
    if model_format not in FORMAT_CHOICES:
        raise InvalidArgument(f"--format must be one of {', '.join(FORMAT_CHOICES)}; got {model_format!r}")
    if wheelhouse is not None and not Path(wheelhouse).is_dir():
        raise InvalidArgument(f"--wheelhouse {wheelhouse} is not a folder of wheels")
    say("reading the source")
    resolved = resolve_source(source, registry=registry, name=name)
    settings = SessionSettings.from_runtime(_bundle_runtime(resolved, model_format))
    if settings.backend == "openvino" and model_format == "auto" and not get_backend("openvino").available():
        raise BackendUnavailable(
            f"{source} was measured on OpenVINO, which is not installed here: pip install 'honed[openvino]' to "
            "bundle it as measured, or pass --format ort to bundle it for ONNX Runtime"
        )
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.", suffix=".partial", dir=target.parent))
    try:
        manifest, cost = _build(
            resolved,
            staging,
            settings,
            model_format,
            Path(sample) if sample else None,
            rtol,
            atol,
            say,
            measure=measure,
            latency_count=latency_count,
            versus_requests=versus_requests,
            wheelhouse=Path(wheelhouse) if wheelhouse else None,
        )
        staging.chmod(0o777 & ~_umask())  # mkdtemp made it private; the bundle gets the modes of any new folder
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return EdgeExport(target, manifest, cost, file_sha256(target / MANIFEST_FILE))


def _bundle_runtime(resolved: ResolvedSource, model_format: str) -> RuntimeConfig:
    """The runtime the bundle's model runs on: the measured one (:func:`~honed.edge.source.edge_runtime`), unless
    ``--format`` asks for one runtime's own format: ``onnx``/``ort`` run on ONNX Runtime, ``openvino-ir`` on
    OpenVINO (with the recorded threads)."""
    runtime = resolved.runtime
    if is_ir(resolved.model_path) or model_format == "auto":
        return runtime
    if model_format == "openvino-ir" and runtime.backend != "openvino":
        return runtime_for(resolved.model_path.with_suffix(".xml"), runtime.with_(options={}))
    if model_format in ("onnx", "ort") and runtime.backend == "openvino":
        return runtime.with_(backend="onnxruntime", options={}, static_shapes=())
    return runtime


def _build(
    resolved: ResolvedSource,
    staging: Path,
    settings: SessionSettings,
    model_format: str,
    sample: Path | None,
    rtol: float,
    atol: float,
    say: Callable[[str], None],
    *,
    measure: bool,
    latency_count: int,
    versus_requests: int,
    wheelhouse: Path | None,
) -> tuple[EdgeManifest, BundleCost | None]:
    from honed.runtime import create_session

    say("recording the sample and its reference output")
    session = create_session(resolved.model_path, settings.runtime_config())
    feeds = _sample(resolved, session.inputs, sample)
    reference = session.run(feeds)
    for file, arrays in ((SAMPLE_FILE, feeds), (REFERENCE_FILE, reference)):
        values: dict[str, Any] = dict(arrays)
        np.savez(staging / file, **values)

    operators = None
    if is_ir(resolved.model_path):
        if model_format not in ("auto", "openvino-ir"):
            raise InvalidArgument(
                f"{resolved.model_path} is OpenVINO IR: it is bundled as IR, not --format {model_format}"
            )
        choice = FormatChoice(resolved.model_path, "openvino-ir", "OpenVINO IR winner, run on OpenVINO", {}, None)
        model_file = "model.xml"
        for source, dest in zip(artifact_files(resolved.model_path), artifact_files(staging / model_file), strict=True):
            shutil.copyfile(source, dest)
    elif settings.backend == "openvino":
        say("converting the ONNX model to OpenVINO IR")
        model_file = "model.xml"
        convert_to_ir(resolved.model_path, staging / model_file)
        why = "measured on OpenVINO" if model_format == "auto" else "--format openvino-ir"
        reason = f"{why}: the ONNX model converted to IR, which OpenVINO reads without its ONNX frontend"
        choice = FormatChoice(staging / model_file, "openvino-ir", reason, {}, None)
    else:
        say("choosing the model format")
        with tempfile.TemporaryDirectory(prefix="honed-edge-ort-") as work:
            choice = choose_format(resolved.model_path, Path(work), settings.to_dict(), model_format)
            model_file = "model.ort" if choice.format == "ort" else "model.onnx"
            shutil.copyfile(choice.path, staging / model_file)
            if choice.required_operators is not None:
                operators = "required_operators.config"
                # the converter names the temporary file it read; the bundle's own file name is what stays true
                listing = choice.required_operators.read_text(encoding="utf-8").replace(str(choice.path), model_file)
                (staging / operators).write_text(listing, encoding="utf-8")

    versions = pinned_versions(settings.backend)
    _write_requirements(staging, versions)
    copy_runner(staging)
    notes = []
    if resolved.provenance.measured_backend != settings.backend:
        notes.append(
            f"the optimize run measured this model on {resolved.provenance.measured_backend}; "
            f"the bundle runs it on {settings.backend} with the recorded threads and graph level"
        )
    manifest = EdgeManifest(
        name=resolved.name,
        created=datetime.now(UTC).isoformat(timespec="seconds"),
        honed_version=honed.__version__,
        model=EdgeModel(
            file=model_file,
            format=choice.format,
            format_reason=choice.reason,
            inputs=tuple(_tensor(s, feeds[s.name].dtype, feeds[s.name].ndim) for s in session.inputs),
            outputs=tuple(_tensor(s, reference[s.name].dtype, reference[s.name].ndim) for s in session.outputs),
            required_operators=operators,
        ),
        session=settings,
        sample=EdgeSample(SAMPLE_FILE, REFERENCE_FILE, rtol, atol),
        runtime=versions,
        source=resolved.provenance,
        files={
            p.relative_to(staging).as_posix(): file_sha256(p)
            for p in sorted(staging.rglob("*"))
            if p.is_file() and p.name not in (MANIFEST_FILE, COST_FILE)
        },
        notes=tuple(notes),
    )
    _write_document(staging / MANIFEST_FILE, manifest.to_dict())
    if not measure:
        say("selftest")
        cold_starts(staging, runs=1)  # the bundle is only kept once its own selftest passes
        return manifest, None
    cost = measure_cost(
        staging,
        list(versions),
        load_ms=choice.load_ms,
        latency_count=latency_count,
        wheelhouse=wheelhouse,
        progress=say,
    )
    say("p50 against honed serve")
    versus = compare_with_serve(
        staging, resolved.model_path, resolved.name, feeds, settings.runtime_config(), requests=versus_requests
    )
    cost = dataclasses.replace(cost, versus_serve=versus)
    _write_document(staging / COST_FILE, cost.to_dict())
    return manifest, cost
