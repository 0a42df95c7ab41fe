"""The edge bundle's manifest (``manifest.json``, schema ``honed.edge/1``) as a typed value.

:func:`honed.edge.bundle.export_edge` writes it; the bundle's own runner (``honed_edge/bundle.py``, which cannot
import honed) reads the same keys on the device. ``files`` maps every file of the bundle but the manifest itself
(and the cost report written after it) to its sha256.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.runtime import RuntimeConfig

EDGE_SCHEMA = "honed.edge/1"
MANIFEST_FILE = "manifest.json"
MODEL_FORMATS = ("onnx", "ort", "openvino-ir")
BACKENDS = ("onnxruntime", "openvino")
SOURCE_KINDS = ("optimize", "model", "registry")


def _get(data: Any, key: str, kind: type | tuple[type, ...], where: str) -> Any:
    if not isinstance(data, Mapping):
        raise InvalidArgument(f"{where} must be a JSON object")
    if key not in data:
        raise InvalidArgument(f"{where}: missing {key!r}")
    value = data[key]
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise InvalidArgument(f"{where}.{key} has the wrong type ({type(value).__name__})")
    return value


@dataclass(frozen=True)
class EdgeTensor:
    """One model input or output: numpy dtype name and shape (``None`` for a dimension of any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "dtype": self.dtype, "shape": list(self.shape)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeTensor:
        shape = _get(data, "shape", list, where)
        if not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
            raise InvalidArgument(f"{where}.shape must hold whole numbers or null")
        return cls(str(_get(data, "name", str, where)), str(_get(data, "dtype", str, where)), tuple(shape))


@dataclass(frozen=True)
class SessionSettings:
    """The session the bundle's runner opens (recorded from the winner's runtime config): the runtime, and ONNX
    Runtime's session options or, for OpenVINO, the full set of compile properties honed's own session uses
    (``options``: precision hint, performance hint, threads), which the runner passes as they are.

    CPU pinning (``affinity``) is not carried: core ids of the optimize machine mean nothing on another box.
    """

    provider: str = "cpu"
    graph_optimization: str = "all"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_mode: str = "sequential"
    spinning: bool = True
    memory_arena: bool = True
    backend: str = "onnxruntime"
    options: Mapping[str, str] = field(default_factory=dict)

    @classmethod
    def from_runtime(cls, config: RuntimeConfig) -> SessionSettings:
        options: dict[str, str] = {}
        if config.backend == "openvino":
            from honed.runtime.openvino_backend import compile_properties

            options = {k: str(v) for k, v in compile_properties(config.with_(affinity=None)).items()}
        return cls(
            provider=config.provider,
            graph_optimization=config.graph_optimization,
            intra_op_threads=config.threads,
            inter_op_threads=config.inter_op_threads,
            execution_mode=config.execution_mode,
            spinning=config.spinning,
            memory_arena=config.memory_arena,
            backend=config.backend,
            options=options,
        )

    def runtime_config(self) -> RuntimeConfig:
        """The same options as honed's RuntimeConfig (validated), for running the reference in-process."""
        return RuntimeConfig(**{**self.to_dict(), "options": dict(self.options)})

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "options": dict(self.options)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SessionSettings:
        backend = data.get("backend", "onnxruntime") if isinstance(data, Mapping) else None
        if backend not in BACKENDS:
            raise InvalidArgument(f"{where}.backend must be one of {', '.join(BACKENDS)}; got {backend!r}")
        options = data.get("options") or {}
        if not isinstance(options, Mapping):
            raise InvalidArgument(f"{where}.options must be a JSON object")
        settings = cls(
            backend=str(backend),
            options={str(k): str(v) for k, v in options.items()},
            provider=str(_get(data, "provider", str, where)),
            graph_optimization=str(_get(data, "graph_optimization", str, where)),
            intra_op_threads=int(_get(data, "intra_op_threads", int, where)),
            inter_op_threads=int(_get(data, "inter_op_threads", int, where)),
            execution_mode=str(_get(data, "execution_mode", str, where)),
            spinning=bool(_get(data, "spinning", bool, where)),
            memory_arena=bool(_get(data, "memory_arena", bool, where)),
        )
        settings.runtime_config()  # the same validation as every runtime config
        return settings


@dataclass(frozen=True)
class EdgeModel:
    """The model file in the bundle and why it is in that format."""

    file: str
    format: str
    format_reason: str
    inputs: tuple[EdgeTensor, ...]
    outputs: tuple[EdgeTensor, ...]
    required_operators: str | None = None
    """The ``required_operators.config`` a reduced ONNX Runtime build takes (when the ORT converter ran)."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "file": self.file,
            "format": self.format,
            "format_reason": self.format_reason,
            "inputs": [t.to_dict() for t in self.inputs],
            "outputs": [t.to_dict() for t in self.outputs],
            "required_operators": self.required_operators,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeModel:
        fmt = str(_get(data, "format", str, where))
        if fmt not in MODEL_FORMATS:
            raise InvalidArgument(f"{where}.format must be one of {', '.join(MODEL_FORMATS)}; got {fmt!r}")
        ops = data.get("required_operators")
        return cls(
            file=str(_get(data, "file", str, where)),
            format=fmt,
            format_reason=str(_get(data, "format_reason", str, where)),
            inputs=tuple(
                EdgeTensor.from_dict(t, f"{where}.inputs[{i}]") for i, t in enumerate(_get(data, "inputs", list, where))
            ),
            outputs=tuple(
                EdgeTensor.from_dict(t, f"{where}.outputs[{i}]")
                for i, t in enumerate(_get(data, "outputs", list, where))
            ),
            required_operators=str(ops) if ops is not None else None,
        )


@dataclass(frozen=True)
class EdgeSample:
    """The recorded input and the reference output honed's own session gave for it, and the tolerance."""

    inputs: str
    outputs: str
    rtol: float
    atol: float

    def to_dict(self) -> dict[str, Any]:
        return {"inputs": self.inputs, "outputs": self.outputs, "rtol": self.rtol, "atol": self.atol}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeSample:
        return cls(
            inputs=str(_get(data, "inputs", str, where)),
            outputs=str(_get(data, "outputs", str, where)),
            rtol=float(_get(data, "rtol", (int, float), where)),
            atol=float(_get(data, "atol", (int, float), where)),
        )


@dataclass(frozen=True)
class EdgeSource:
    """Where the model came from: an optimize output folder, a model file or a registry version."""

    kind: str
    location: str
    sha256: str
    ref: str | None = None
    """The registry version (``name:V``) when exported from a registry."""
    parent: str | None = None
    """That version's parent in the registry's lineage (the model it was optimized from)."""
    measured_backend: str = "onnxruntime"
    """The backend the optimize run measured the winner on (an OpenVINO IR winner runs on OpenVINO, the rest on
    ONNX Runtime)."""
    recipe: Mapping[str, Any] | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "location": self.location,
            "sha256": self.sha256,
            "ref": self.ref,
            "parent": self.parent,
            "measured_backend": self.measured_backend,
            "recipe": dict(self.recipe) if self.recipe is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeSource:
        kind = str(_get(data, "kind", str, where))
        if kind not in SOURCE_KINDS:
            raise InvalidArgument(f"{where}.kind must be one of {', '.join(SOURCE_KINDS)}; got {kind!r}")
        recipe = data.get("recipe")
        ref, parent = data.get("ref"), data.get("parent")
        return cls(
            kind=kind,
            location=str(_get(data, "location", str, where)),
            sha256=str(_get(data, "sha256", str, where)),
            ref=str(ref) if ref is not None else None,
            parent=str(parent) if parent is not None else None,
            measured_backend=str(_get(data, "measured_backend", str, where)),
            recipe=dict(recipe) if isinstance(recipe, Mapping) else None,
        )


@dataclass(frozen=True)
class EdgeManifest:
    name: str
    created: str
    honed_version: str
    model: EdgeModel
    session: SessionSettings
    sample: EdgeSample
    runtime: Mapping[str, str]
    """Distribution -> the version pinned in requirements.txt (onnxruntime or openvino, and numpy)."""
    source: EdgeSource
    files: Mapping[str, str] = field(default_factory=dict)
    notes: tuple[str, ...] = ()

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": EDGE_SCHEMA,
            "name": self.name,
            "created": self.created,
            "honed_version": self.honed_version,
            "model": self.model.to_dict(),
            "session": self.session.to_dict(),
            "sample": self.sample.to_dict(),
            "runtime": dict(self.runtime),
            "source": self.source.to_dict(),
            "files": dict(sorted(self.files.items())),
            "notes": list(self.notes),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeManifest:
        if not isinstance(data, Mapping) or data.get("schema") != EDGE_SCHEMA:
            got = data.get("schema") if isinstance(data, Mapping) else None
            raise InvalidArgument(f"{where}: expected schema {EDGE_SCHEMA!r}, got {got!r}; export it with honed export")
        files = _get(data, "files", dict, where)
        runtime = _get(data, "runtime", dict, where)
        return cls(
            name=str(_get(data, "name", str, where)),
            created=str(_get(data, "created", str, where)),
            honed_version=str(_get(data, "honed_version", str, where)),
            model=EdgeModel.from_dict(data.get("model"), f"{where}: model"),
            session=SessionSettings.from_dict(data.get("session"), f"{where}: session"),
            sample=EdgeSample.from_dict(data.get("sample"), f"{where}: sample"),
            runtime={str(k): str(v) for k, v in runtime.items()},
            source=EdgeSource.from_dict(data.get("source"), f"{where}: source"),
            files={str(k): str(v) for k, v in files.items()},
            notes=tuple(str(n) for n in _get(data, "notes", list, where)),
        )

    @classmethod
    def read(cls, bundle: str | Path) -> EdgeManifest:
        path = Path(bundle) / MANIFEST_FILE
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise InvalidArgument(f"{path} not found: not an edge bundle") from None
        except (OSError, ValueError) as exc:
            raise InvalidArgument(f"cannot read {path}: {exc}") from exc
        return cls.from_dict(data, str(path))
