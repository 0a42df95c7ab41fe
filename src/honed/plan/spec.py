"""The fleet and deployment files: parsing and validating them into plain, frozen values.

``fleet.yaml`` lists node pools (how many nodes, where they are, what each node has, what it costs);
``deployments.yaml`` lists what must run (model, p99 SLO, peak load, priority, residency). Unknown fields,
missing required fields and impossible values are :class:`~honed.errors.InvalidArgument` with the
file and entry named, so a user can fix the line. Nothing here reads a model or a profile.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from honed.errors import InvalidArgument
from honed.fields import Bound, Fields

PRIORITIES: dict[str, int] = {"low": 0, "medium": 1, "high": 2, "critical": 3}
"""Named priorities, lowest first; an integer >= 0 is accepted too (higher is more important)."""

POLICIES = ("hpa", "predictive")


@dataclass(frozen=True)
class Pool:
    """A group of identical nodes. ``jurisdiction`` None means unlabelled: it serves no residency-bound work."""

    name: str
    count: int
    cpu: float
    memory_gb: float
    cost_per_hour: float
    jurisdiction: str | None = None
    region: str | None = None
    gpus: int = 0
    gpu_type: str | None = None
    pod_start_s: float = 30.0
    profiles: dict[str, Any] = field(default_factory=dict)
    """Declared (not measured) profiles: deployment name -> bench-v1 dict or path to one."""


@dataclass(frozen=True)
class Autoscaling:
    """How a deployment scales; ``policy`` is ``hpa`` (reactive) or ``predictive`` (forecast + reactive)."""

    policy: str = "hpa"
    target_utilization: float = 0.7
    min_replicas: int | None = None
    max_replicas: int | None = None
    scale_up_window_s: float = 0.0
    scale_down_window_s: float | None = None
    """None: 300 s (Kubernetes' default) for ``hpa``; 60 s for ``predictive``, whose forecast holds the floor."""
    max_extra_fraction: float = 1.0
    """Cost cap of the predictive policy: extra replicas above the reactive count, as a fraction of it."""
    max_extra_cost_per_hour: float | None = None
    history: str | None = None
    """A CSV of (time, requests/s) the predictive policy learns the daily pattern from."""
    season_s: float = 86400.0

    @property
    def scale_down_window(self) -> float:
        if self.scale_down_window_s is not None:
            return self.scale_down_window_s
        return 300.0 if self.policy == "hpa" else 60.0


@dataclass(frozen=True)
class Deployment:
    """One model to serve with its SLO, peak load and constraints."""

    name: str
    slo_p99_ms: float
    peak_rps: float
    model: str | None = None
    profile: str | None = None
    priority: int = 1
    residency: tuple[str, ...] | None = None
    min_replicas: int = 1
    namespace: str = "default"
    allow_from_namespaces: tuple[str, ...] = ()
    memory_overhead_mb: float = 256.0
    model_load_s: float | None = None
    autoscaling: Autoscaling = field(default_factory=Autoscaling)
    more_profiles: tuple[str, ...] = ()
    """Further bench-v1 files of the same model (e.g. runs at other --concurrency), merged into one curve."""

    @property
    def priority_name(self) -> str:
        for name, value in PRIORITIES.items():
            if value == self.priority:
                return name
        return str(self.priority)


_POOL_FIELDS = {
    "name": "required",
    "count": "required",
    "cpu": "required",
    "memory_gb": "required",
    "cost_per_hour": "required",
    "jurisdiction": None,
    "region": None,
    "gpus": 0,
    "gpu_type": None,
    "pod_start_s": 30.0,
    "profiles": None,
}
_DEPLOYMENT_FIELDS = {
    "name": "required",
    "slo_p99_ms": "required",
    "peak_rps": "required",
    "model": None,
    "profile": None,
    "priority": "medium",
    "residency": None,
    "min_replicas": 1,
    "namespace": "default",
    "allow_from_namespaces": None,
    "memory_overhead_mb": 256.0,
    "model_load_s": None,
    "autoscaling": None,
}
_AUTOSCALING_FIELDS = {f: None for f in Autoscaling.__dataclass_fields__}


def read_yaml(path: str | Path) -> Any:
    """Read a YAML (or JSON) file, with a domain error for a missing or malformed file."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"file not found: {p}")
    try:
        return yaml.safe_load(p.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise InvalidArgument(f"{p} is not valid YAML: {exc}") from exc


def load_fleet(path: str | Path) -> list[Pool]:
    """Parse ``fleet.yaml``; relative profile paths are resolved against the file's folder."""
    data = read_yaml(path)
    return parse_fleet(data, where=str(path), base=Path(path).parent)


def load_deployments(path: str | Path) -> list[Deployment]:
    """Parse ``deployments.yaml``; relative model/profile paths are resolved against the file's folder."""
    data = read_yaml(path)
    return parse_deployments(data, where=str(path), base=Path(path).parent)


def parse_fleet(data: Any, *, where: str = "fleet", base: Path | None = None) -> list[Pool]:
    pools = [_pool(entry, at, base) for at, entry in _entries(data, "pools", where)]
    _unique([p.name for p in pools], f"{where}: pool")
    return pools


def parse_deployments(data: Any, *, where: str = "deployments", base: Path | None = None) -> list[Deployment]:
    deployments = [_deployment(entry, at, base) for at, entry in _entries(data, "deployments", where)]
    _unique([d.name for d in deployments], f"{where}: deployment")
    return deployments


def _entries(data: Any, key: str, where: str) -> list[tuple[str, Any]]:
    """The entries of a file that is one mapping ``{key: [entry, ...]}``, each with where it stands."""
    if not isinstance(data, dict) or set(data) != {key}:
        raise InvalidArgument(f"{where}: expected a mapping with exactly one key '{key}'")
    entries = data[key]
    if not isinstance(entries, list) or not entries:
        raise InvalidArgument(f"{where}: '{key}' must be a non-empty list")
    return [(f"{where}: {key}[{i}]", entry) for i, entry in enumerate(entries)]


def _fields(entry: Any, allowed: dict[str, Any], where: str) -> dict[str, Any]:
    if not isinstance(entry, dict):
        raise InvalidArgument(f"{where}: expected a mapping, got {type(entry).__name__}")
    unknown = sorted(set(entry) - set(allowed))
    if unknown:
        raise InvalidArgument(f"{where}: unknown field(s) {', '.join(unknown)}; known: {', '.join(sorted(allowed))}")
    missing = sorted(k for k, v in allowed.items() if v == "required" and k not in entry)
    if missing:
        raise InvalidArgument(f"{where}: missing required field(s) {', '.join(missing)}")
    return {k: entry.get(k, v) for k, v in allowed.items()}


def _name(value: Any, where: str) -> str:
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{where}: name must be a non-empty string")
    # Names become Kubernetes object names: DNS-1123 labels.
    ok = value[0].isalnum() and value[-1].isalnum() and all(c.islower() or c.isdigit() or c == "-" for c in value)
    if not ok or len(value) > 63:
        raise InvalidArgument(
            f"{where}: name {value!r} must be lowercase letters, digits and '-', "
            "start and end alphanumeric, <= 63 chars"
        )
    return value


def _opt_str(value: Any, name: str, where: str) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value:
        raise InvalidArgument(f"{where}: {name} must be a non-empty string")
    return value


def _path(value: Any, name: str, where: str, base: Path | None) -> str | None:
    text = _opt_str(value, name, where)
    if text is None:
        return None
    p = Path(text).expanduser()
    if not p.is_absolute() and base is not None:
        p = base / p
    if not p.exists():
        raise InvalidArgument(f"{where}: {name} path does not exist: {p}")
    return str(p)


def _pool(entry: Any, where: str, base: Path | None) -> Pool:
    f = _fields(entry, _POOL_FIELDS, where)
    profiles = f["profiles"] or {}
    if not isinstance(profiles, dict):
        raise InvalidArgument(f"{where}: profiles must map deployment names to a bench-v1 profile or a path")
    resolved: dict[str, Any] = {}
    for key, value in profiles.items():
        if isinstance(value, str):
            resolved[str(key)] = _path(value, f"profiles.{key}", where, base)
        elif isinstance(value, dict):
            resolved[str(key)] = value
        else:
            raise InvalidArgument(f"{where}: profiles.{key} must be a bench-v1 mapping or a path to one")
    jurisdiction = _opt_str(f["jurisdiction"], "jurisdiction", where)
    r = Fields(f, where)
    return Pool(
        name=_name(f["name"], where),
        count=r.whole("count", minimum=1),
        cpu=r.number("cpu", bound="> 0"),
        memory_gb=r.number("memory_gb", bound="> 0"),
        cost_per_hour=r.number("cost_per_hour", bound=">= 0"),
        jurisdiction=jurisdiction.upper() if jurisdiction else None,
        region=_opt_str(f["region"], "region", where),
        gpus=r.whole("gpus", minimum=0),
        gpu_type=_opt_str(f["gpu_type"], "gpu_type", where),
        pod_start_s=r.number("pod_start_s", bound=">= 0"),
        profiles=resolved,
    )


def _priority(value: Any, where: str) -> int:
    if isinstance(value, str) and value.lower() in PRIORITIES:
        return PRIORITIES[value.lower()]
    if isinstance(value, int) and not isinstance(value, bool) and value >= 0:
        return value
    raise InvalidArgument(f"{where}: priority must be one of {', '.join(PRIORITIES)} or an integer >= 0, got {value!r}")


def _strings(value: Any, name: str, where: str, *, upper: bool = False) -> tuple[str, ...]:
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidArgument(f"{where}: {name} must be a non-empty list of strings")
    return tuple(v.upper() if upper else v for v in value)


def _autoscaling(entry: Any, where: str, base: Path | None) -> Autoscaling:
    if entry is None:
        return Autoscaling()
    f = _fields(entry, _AUTOSCALING_FIELDS, f"{where}.autoscaling")
    d = Autoscaling()
    w = f"{where}.autoscaling"
    policy = f["policy"] or d.policy
    if policy not in POLICIES:
        raise InvalidArgument(f"{w}: policy must be one of {', '.join(POLICIES)}, got {policy!r}")
    r = Fields(f, w)

    def num(key: str, bound: Bound = ">= 0") -> float:
        value = r.opt_number(key, bound=bound)
        return float(getattr(d, key)) if value is None else value

    target = num("target_utilization", "> 0")
    if target > 1:
        raise InvalidArgument(f"{w}: target_utilization is a fraction in (0, 1], got {target}")
    min_r = r.opt_whole("min_replicas", minimum=1)
    max_r = r.opt_whole("max_replicas", minimum=1)
    if min_r is not None and max_r is not None and max_r < min_r:
        raise InvalidArgument(f"{w}: max_replicas ({max_r}) is below min_replicas ({min_r})")
    return Autoscaling(
        policy=policy,
        target_utilization=target,
        min_replicas=min_r,
        max_replicas=max_r,
        scale_up_window_s=num("scale_up_window_s"),
        scale_down_window_s=r.opt_number("scale_down_window_s", bound=">= 0"),
        max_extra_fraction=num("max_extra_fraction"),
        max_extra_cost_per_hour=r.opt_number("max_extra_cost_per_hour", bound="> 0"),
        history=_path(f["history"], "history", w, base),
        season_s=num("season_s", "> 0"),
    )


def _deployment(entry: Any, where: str, base: Path | None) -> Deployment:
    f = _fields(entry, _DEPLOYMENT_FIELDS, where)
    name = _name(f["name"], where)
    where = f"{where} ({name})"
    model = _path(f["model"], "model", where, base)
    profiles = f["profile"] if isinstance(f["profile"], list) else [f["profile"]]
    if not profiles or (len(profiles) > 1 and not all(isinstance(x, str) for x in profiles)):
        raise InvalidArgument(f"{where}: profile must be a path or a non-empty list of paths")
    paths = [_path(x, "profile", where, base) for x in profiles]
    profile = paths[0]
    residency = None if f["residency"] is None else _strings(f["residency"], "residency", where, upper=True)
    allow = () if f["allow_from_namespaces"] is None else _strings(f["allow_from_namespaces"], "allow", where)
    if model is None and profile is None:
        raise InvalidArgument(f"{where}: give model: (an .onnx file or an optimize output folder) or profile:")
    r = Fields(f, where)
    return Deployment(
        name=name,
        slo_p99_ms=r.number("slo_p99_ms", bound="> 0"),
        peak_rps=r.number("peak_rps", bound="> 0"),
        model=model,
        profile=profile,
        priority=_priority(f["priority"], where),
        residency=residency,
        min_replicas=r.whole("min_replicas", minimum=1),
        namespace=_name(f["namespace"], f"{where}: namespace"),
        allow_from_namespaces=allow,
        memory_overhead_mb=r.number("memory_overhead_mb", bound=">= 0"),
        model_load_s=r.opt_number("model_load_s", bound=">= 0"),
        autoscaling=_autoscaling(f["autoscaling"], where, base),
        more_profiles=tuple(x for x in paths[1:] if x is not None),
    )


def _unique(names: list[str], what: str) -> None:
    seen: set[str] = set()
    for n in names:
        if n in seen:
            raise InvalidArgument(f"{what} name {n!r} appears twice; names must be unique")
        seen.add(n)
