"""The edge bundle's manifest (``manifest.json``, schema ``honed.edge/1``) as a typed value.

:func:`honed.edge.bundle.export_edge` writes it; the bundle's own runner (``honed_edge/bundle.py``, which cannot
import honed and so reads the same keys with a few lines of its own) reads it on the device. ``files`` maps every
file of the bundle but the manifest itself (and the cost report written after it) to its sha256. Each part is a
:class:`~honed.fields.Document`, read through :class:`ManifestFields`, so a complaint names the file and field.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from honed.errors import InvalidArgument
from honed.fields import Document, Fields, as_dict
from honed.runtime import RuntimeConfig

EDGE_SCHEMA = "honed.edge/1"
MANIFEST_FILE = "manifest.json"
MODEL_FORMATS = ("onnx", "ort", "openvino-ir")
BACKENDS = ("onnxruntime", "openvino")
SOURCE_KINDS = ("optimize", "model", "registry")


class ManifestFields(Fields):
    wrong_says = "{where}.{key} must be {expected}, got {value}"
    missing_says = "{where}: missing {key!r}; export the bundle again with honed export edge"

    def one_of(self, key: str, choices: tuple[str, ...], *, default: str | None = None) -> str:
        value = self.text(key) if default is None else self.text(key, default=default)
        if value not in choices:
            raise self.wrong(key, f"one of {', '.join(choices)}")
        return value


class _Part(Document):
    reader: ClassVar[type[Fields]] = ManifestFields
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {}
    """Text fields that must be one of a few values."""

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Any:
        f = ManifestFields(data, where)
        return f.read(cls, cls.json_keys, **{key: f.one_of(key, values) for key, values in cls.choices.items()})


@dataclass(frozen=True)
class EdgeTensor(_Part):
    """One model input or output: numpy dtype name and shape (``None`` for a dimension of any size)."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeTensor:
        f = ManifestFields(data, where)
        shape = f.items("shape")
        if not all(d is None or (isinstance(d, int) and not isinstance(d, bool)) for d in shape):
            raise f.wrong("shape", "a list of whole numbers or nulls")
        return f.read(cls, shape=tuple(shape))


@dataclass(frozen=True)
class SessionSettings(_Part):
    """The session the bundle's runner opens (recorded from the winner's runtime config): the runtime, and ONNX
    Runtime's session options or, for OpenVINO, the full set of compile properties honed's own session uses
    (``options``: precision hint, performance hint, threads), which the runner passes as they are.

    CPU pinning (``affinity``) is not carried: core ids of the optimize machine mean nothing on another box.
    ``static_shapes`` (OpenVINO) are carried: the runner compiles a copy for each, as honed's own session does.
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
    static_shapes: tuple[Mapping[str, tuple[int, ...]], ...] = ()

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
            static_shapes=config.static_shapes,
        )

    def runtime_config(self) -> RuntimeConfig:
        """The same options as honed's RuntimeConfig (validated), for running the reference in-process."""
        return RuntimeConfig(
            **{**as_dict(self), "options": dict(self.options), "static_shapes": tuple(map(dict, self.static_shapes))}
        )

    @classmethod
    def from_dict(cls, data: Any, where: str) -> SessionSettings:
        f = ManifestFields(data, where)
        options = f.mapping("options", str) if "options" in f.data else {}
        static = f.items("static_shapes") if "static_shapes" in f.data else []
        settings = f.read(
            cls,
            backend=f.one_of("backend", BACKENDS, default="onnxruntime"),
            options=options,
            static_shapes=tuple(static),
        )
        try:
            config = settings.runtime_config()  # the same validation as every runtime config
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from None
        return replace(settings, static_shapes=config.static_shapes)


@dataclass(frozen=True)
class EdgeModel(_Part):
    """The model file in the bundle and why it is in that format."""

    file: str
    format: str
    format_reason: str
    inputs: tuple[EdgeTensor, ...]
    outputs: tuple[EdgeTensor, ...]
    required_operators: str | None = None
    """The ``required_operators.config`` a reduced ONNX Runtime build takes (when the ORT converter ran)."""
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"format": MODEL_FORMATS}


@dataclass(frozen=True)
class EdgeSample(_Part):
    """The recorded input and the reference output honed's own session gave for it, and the tolerance."""

    inputs: str
    outputs: str
    rtol: float
    atol: float


@dataclass(frozen=True)
class EdgeSource(_Part):
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
    choices: ClassVar[Mapping[str, tuple[str, ...]]] = {"kind": SOURCE_KINDS}


@dataclass(frozen=True)
class EdgeManifest(_Part):
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
        return {"schema": EDGE_SCHEMA, **super().to_dict(), "files": dict(sorted(self.files.items()))}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> EdgeManifest:
        if not isinstance(data, Mapping) or data.get("schema") != EDGE_SCHEMA:
            got = data.get("schema") if isinstance(data, Mapping) else None
            raise InvalidArgument(f"{where}: expected schema {EDGE_SCHEMA!r}, got {got!r}; export it with honed export")
        f = ManifestFields(data, where)
        return f.read(cls, runtime=f.mapping("runtime", str), files=f.mapping("files", str))

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
