"""RuntimeConfig: how a model is run, as plain, validated, JSON-serialisable data.

A config is a value: recipes, bench results and serving configs store it with :meth:`RuntimeConfig.to_dict`
and rebuild it with :meth:`RuntimeConfig.from_dict`, which refuses unknown keys and bad values.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import asdict, dataclass, field, fields, replace
from typing import Any

from honed.errors import InvalidArgument

BACKEND_NAMES = ("onnxruntime", "openvino")
PROVIDERS = ("cpu", "cuda", "tensorrt")
GRAPH_OPTIMIZATION_LEVELS = ("disable", "basic", "extended", "all")
EXECUTION_MODES = ("sequential", "parallel")


@dataclass(frozen=True)
class RuntimeConfig:
    """Everything that decides how one inference session runs.

        ``intra_op_threads``/``inter_op_threads`` of 0 leave the choice to the backend. ``affinity`` lists the
        CPU ids (0-based, as ``taskset`` and ``os.sched_getaffinity`` number them) the session's threads are
        pinned to; when given and ``intra_op_threads`` is 0, one thread per listed core is used. ``options``
        holds backend-specific settings (for OpenVINO, e.g. ``INFERENCE_PRECISION_HINT``; for ONNX Runtime, keys
    starting with ``session.`` are passed as session config entries, e.g. ``session.force_spinning_stop``).
    ``static_shapes`` lists input shape sets (``{input name: shape}``) the backend also compiles the model for
    with every dimension fixed; a run whose inputs have exactly one of those shapes uses that compiled copy, any
    other runs the model as it is, so the answers never depend on it (OpenVINO only: its CPU plugin can run a
    model compiled for static shapes markedly faster than the same model with a symbolic batch).
    """

    backend: str = "onnxruntime"
    provider: str = "cpu"
    graph_optimization: str = "all"
    intra_op_threads: int = 0
    inter_op_threads: int = 0
    execution_mode: str = "sequential"
    affinity: tuple[int, ...] | None = None
    spinning: bool = True
    memory_arena: bool = True
    device_id: int = 0
    options: dict[str, str] = field(default_factory=dict)
    static_shapes: tuple[dict[str, tuple[int, ...]], ...] = ()

    def __post_init__(self) -> None:
        _one_of("backend", self.backend, BACKEND_NAMES)
        _one_of("provider", self.provider, PROVIDERS)
        _one_of("graph_optimization", self.graph_optimization, GRAPH_OPTIMIZATION_LEVELS)
        _one_of("execution_mode", self.execution_mode, EXECUTION_MODES)
        for name in ("intra_op_threads", "inter_op_threads", "device_id"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise InvalidArgument(f"{name} must be a whole number >= 0, got {value!r}")
        if self.affinity is not None:
            cores = tuple(self.affinity)
            if not cores or any(not isinstance(c, int) or c < 0 for c in cores):
                raise InvalidArgument(f"affinity must list CPU ids >= 0, got {self.affinity!r}")
            if len(set(cores)) != len(cores):
                raise InvalidArgument(f"affinity lists a CPU twice: {self.affinity!r}")
            object.__setattr__(self, "affinity", cores)
        if self.backend == "openvino" and self.provider != "cpu":
            raise InvalidArgument("the openvino backend runs on provider 'cpu' only in honed")
        object.__setattr__(self, "options", {str(k): str(v) for k, v in dict(self.options).items()})
        object.__setattr__(self, "static_shapes", _shape_sets(self.static_shapes))
        if self.static_shapes and self.backend != "openvino":
            raise InvalidArgument(f"static_shapes is an openvino setting; backend {self.backend!r} has none")

    @property
    def threads(self) -> int:
        """Intra-op threads actually requested (0 = backend default)."""
        if self.intra_op_threads:
            return self.intra_op_threads
        return len(self.affinity) if self.affinity else 0

    def with_(self, **changes: Any) -> RuntimeConfig:
        """A copy with some fields changed (validated again)."""
        return replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """Plain JSON-ready data; ``static_shapes`` only when set, so configs without it keep their old form."""
        data = asdict(self)
        data["affinity"] = list(self.affinity) if self.affinity is not None else None
        if self.static_shapes:
            data["static_shapes"] = [{name: list(shape) for name, shape in s.items()} for s in self.static_shapes]
        else:
            del data["static_shapes"]
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> RuntimeConfig:
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise InvalidArgument(
                f"unknown runtime setting(s): {', '.join(unknown)}; known: {', '.join(sorted(known))}"
            )
        values = dict(data)
        if values.get("affinity") is not None:
            values["affinity"] = tuple(values["affinity"])
        return cls(**values)

    def label(self) -> str:
        """A short human label, e.g. ``onnxruntime/cpu t2``."""
        parts = [f"{self.backend}/{self.provider}"]
        if self.threads:
            parts.append(f"t{self.threads}")
        if self.affinity:
            parts.append("pin" + ",".join(map(str, self.affinity)))
        if not self.spinning:
            parts.append("nospin")
        if self.options:
            parts.extend(f"{k}={v}" for k, v in sorted(self.options.items()))
        for shapes in self.static_shapes:
            parts.append("static " + ",".join(sorted({"x".join(map(str, shape)) for shape in shapes.values()})))
        return " ".join(parts)


def _one_of(name: str, value: object, allowed: tuple[str, ...]) -> None:
    if value not in allowed:
        raise InvalidArgument(f"{name} must be one of {', '.join(allowed)}; got {value!r}")


def _shape_sets(value: object) -> tuple[dict[str, tuple[int, ...]], ...]:
    """``static_shapes`` as a tuple of ``{name: shape}`` with whole positive dims; refuses anything else."""
    if isinstance(value, (str, bytes, dict)) or not isinstance(value, (list, tuple)):
        raise InvalidArgument(f"static_shapes must list {{input name: shape}} mappings, got {value!r}")
    sets: list[dict[str, tuple[int, ...]]] = []
    for item in value:
        if not isinstance(item, dict) or not item:
            raise InvalidArgument(f"static_shapes must list non-empty {{input name: shape}} mappings, got {item!r}")
        shapes: dict[str, tuple[int, ...]] = {}
        for name, shape in item.items():
            dims = tuple(shape) if isinstance(shape, (list, tuple)) else ()
            if not dims or any(not isinstance(d, int) or isinstance(d, bool) or d < 1 for d in dims):
                raise InvalidArgument(f"static_shapes: input {name!r} needs a shape of whole sizes >= 1, got {shape!r}")
            shapes[str(name)] = dims
        if shapes in sets:
            raise InvalidArgument(f"static_shapes lists one shape set twice: {item!r}")
        sets.append(shapes)
    return tuple(sets)


def unique_configs(configs: Iterable[RuntimeConfig]) -> list[RuntimeConfig]:
    """``configs`` without repeats, in first-seen order."""
    seen: set[str] = set()
    out = []
    for config in configs:
        key = json.dumps(config.to_dict(), sort_keys=True)
        if key not in seen:
            seen.add(key)
            out.append(config)
    return out
