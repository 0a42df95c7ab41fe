"""The plan document (``plan.json``, schema ``honed.plan/v1``): typed, frozen values and their JSON form.

``honed plan`` builds a :class:`Plan` and writes :meth:`Plan.to_dict`; ``honed deploy``, the simulator and the
forecast server read it back with :func:`read_plan`. This module imports nothing beyond the standard library, so
reading a plan never needs the planning extra (PuLP, statsmodels). Every value is checked on the way in: a
missing field, a wrong type or another schema is an :class:`~honed.errors.InvalidArgument` naming the file and
the field, never a ``KeyError``.

The shape on disk (field order as written)::

    {"schema": "honed.plan/v1",
     "solver": {"name", "status", "time_limit_s", "objective"},
     "placements": [{"deployment", "namespace", "pool", "replicas", "instances", "threads", "batch",
                     "expected_p99_ms", "slo_p99_ms", "peak_rps", "cost_per_hour", "priority", "residency",
                     "jurisdiction", "region", "gpu_type", "resources": {"cpu", "memory_mb", "gpus"},
                     "nodes": {node: replicas}, "model", "model_sha256", "allow_from_namespaces",
                     "profile_source", "profile": {...}, "autoscaling": {...}, "reasons": [...],
                     "live": {"prometheus", "since_s", "margin", "history_points", "step_s",  (--prometheus)
                              "figures": [{"name", "value", "source", "measured", "observed", "deviation",
                                           "contradicts"}]}}],
     "unplaced": [{"deployment", "priority", "reason"}],
     "pools": [{"name", "jurisdiction", "region", "nodes", "nodes_used", "cost_per_hour_used", "cpu_requested",
                "cpu_total", "memory_mb_requested", "gpus_requested", "gpu_type"}],
     "decisions": {deployment: {"pools": {pool: note}, "chosen": reason}},
     "total_cost_per_hour"}
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument

SCHEMA = "honed.plan/v1"
MEASURED = "measured"
DECLARED = "declared, not measured"
OBSERVED = "observed"
"""A figure read from the serving fleet's own metrics (Prometheus), not from a bench machine."""


class _Fields:
    """One JSON object of a plan with where it stands (file and path), so every complaint names the field."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, dict):
            raise InvalidArgument(f"{where}: expected an object, got {_kind(data)}; regenerate it with honed plan")
        self.data = data
        self.where = where

    def _bad(self, key: str, expected: str) -> InvalidArgument:
        return InvalidArgument(
            f"{self.where}: {key} must be {expected}, got {_kind(self.data[key])}; regenerate it with honed plan"
        )

    def raw(self, key: str) -> Any:
        if key not in self.data:
            raise InvalidArgument(f"{self.where}: missing field {key!r}; regenerate it with honed plan")
        return self.data[key]

    def text(self, key: str) -> str:
        value = self.raw(key)
        if not isinstance(value, str):
            raise self._bad(key, "a string")
        return value

    def opt_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def number(self, key: str) -> float:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
            raise self._bad(key, "a number")
        return float(value)

    def opt_number(self, key: str) -> float | None:
        return None if self.data.get(key) is None else self.number(key)

    def whole(self, key: str) -> int:
        value = self.raw(key)
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._bad(key, "a whole number")
        return value

    def obj(self, key: str) -> _Fields:
        return _Fields(self.raw(key), f"{self.where}.{key}" if ": " in self.where else f"{self.where}: {key}")

    def objects(self, key: str) -> list[_Fields]:
        value = self.raw(key)
        if not isinstance(value, list):
            raise self._bad(key, "a list")
        sep = "." if ": " in self.where else ": "
        return [_Fields(item, f"{self.where}{sep}{key}[{i}]") for i, item in enumerate(value)]

    def strings(self, key: str) -> tuple[str, ...]:
        value = self.raw(key)
        if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self._bad(key, "a list of strings")
        return tuple(value)

    def opt_strings(self, key: str) -> tuple[str, ...] | None:
        return None if self.data.get(key) is None else self.strings(key)

    def mapping(self, key: str, of: type) -> dict[str, Any]:
        value = self.raw(key)
        ok = isinstance(value, dict) and all(
            isinstance(k, str) and isinstance(v, of) and not isinstance(v, bool) for k, v in value.items()
        )
        if not ok:
            raise self._bad(key, f"an object of {of.__name__} values")
        return dict(value)


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


@dataclass(frozen=True)
class OperatingPoint:
    """One measured (or declared) way to run the model: a bench row."""

    batch: int
    threads: int
    instances: int
    p99_ms: float
    mean_ms: float
    throughput: float
    """Items per second the replica sustained at this point, all instances together."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "threads": self.threads,
            "instances": self.instances,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "throughput_items_per_s": self.throughput,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> OperatingPoint:
        f = _Fields(data, where)
        return cls(
            batch=f.whole("batch"),
            threads=f.whole("threads"),
            instances=f.whole("instances"),
            p99_ms=f.number("p99_ms"),
            mean_ms=f.number("mean_ms"),
            throughput=f.number("throughput_items_per_s"),
        )


@dataclass(frozen=True)
class Profile:
    """A model's latency/throughput curve on one kind of hardware, with where it came from."""

    points: tuple[OperatingPoint, ...]
    source: str
    origin: str
    hardware: str
    peak_rss_mb: float
    model_load_s: float
    model_path: str | None = None
    model_sha256: str | None = None

    @property
    def declared(self) -> bool:
        return self.source == DECLARED

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "origin": self.origin,
            "hardware": self.hardware,
            "peak_rss_mb": self.peak_rss_mb,
            "model_load_s": self.model_load_s,
            "model_path": self.model_path,
            "model_sha256": self.model_sha256,
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Profile:
        f = _Fields(data, where)
        return cls(
            points=tuple(OperatingPoint.from_dict(p.data, p.where) for p in f.objects("points")),
            source=f.text("source"),
            origin=f.text("origin"),
            hardware=f.text("hardware"),
            peak_rss_mb=f.number("peak_rss_mb"),
            model_load_s=f.number("model_load_s"),
            model_path=f.opt_text("model_path"),
            model_sha256=f.opt_text("model_sha256"),
        )


@dataclass(frozen=True)
class ScheduleWindow:
    """One hour of the day-ahead schedule of a predictive placement (``HH:MM`` UTC, starting a lead early)."""

    start: str
    end: str
    replicas: int
    forecast_rps: float

    def to_dict(self) -> dict[str, Any]:
        return {"start": self.start, "end": self.end, "replicas": self.replicas, "forecast_rps": self.forecast_rps}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ScheduleWindow:
        f = _Fields(data, where)
        return cls(f.text("start"), f.text("end"), f.whole("replicas"), f.number("forecast_rps"))


@dataclass(frozen=True)
class PlannedScaling:
    """How a placement scales, as planned: the numbers the HPA, KEDA and the simulator run with."""

    policy: str
    min_replicas: int
    max_replicas: int
    target_utilization: float
    capacity_per_replica_rps: float
    target_rps_per_replica: float
    scale_up_window_s: float
    scale_down_window_s: float
    model_load_s: float
    pod_start_s: float
    provisioning_lead_s: float
    max_extra_fraction: float
    max_extra_cost_per_hour: float | None
    replica_cost_per_hour: float
    season_s: float
    history: str | None = None
    """Predictive placements only: the load history CSV the schedule was forecast from."""
    schedule: tuple[ScheduleWindow, ...] | None = None
    """Predictive placements only: hourly replica floors for the next day (for reading)."""

    @property
    def predictive(self) -> bool:
        return self.policy == "predictive"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "policy": self.policy,
            "min_replicas": self.min_replicas,
            "max_replicas": self.max_replicas,
            "target_utilization": self.target_utilization,
            "capacity_per_replica_rps": self.capacity_per_replica_rps,
            "target_rps_per_replica": self.target_rps_per_replica,
            "scale_up_window_s": self.scale_up_window_s,
            "scale_down_window_s": self.scale_down_window_s,
            "model_load_s": self.model_load_s,
            "pod_start_s": self.pod_start_s,
            "provisioning_lead_s": self.provisioning_lead_s,
            "max_extra_fraction": self.max_extra_fraction,
            "max_extra_cost_per_hour": self.max_extra_cost_per_hour,
            "replica_cost_per_hour": self.replica_cost_per_hour,
            "season_s": self.season_s,
        }
        if self.history is not None:
            out["history"] = self.history
        if self.schedule is not None:
            out["schedule"] = [w.to_dict() for w in self.schedule]
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PlannedScaling:
        f = _Fields(data, where)
        schedule = None
        if f.data.get("schedule") is not None:
            schedule = tuple(ScheduleWindow.from_dict(w.data, w.where) for w in f.objects("schedule"))
        policy = f.text("policy")
        if policy not in ("hpa", "predictive"):
            raise InvalidArgument(f"{where}: policy must be hpa or predictive, got {policy!r}")
        scaling = cls(
            policy=policy,
            min_replicas=f.whole("min_replicas"),
            max_replicas=f.whole("max_replicas"),
            target_utilization=f.number("target_utilization"),
            capacity_per_replica_rps=f.number("capacity_per_replica_rps"),
            target_rps_per_replica=f.number("target_rps_per_replica"),
            scale_up_window_s=f.number("scale_up_window_s"),
            scale_down_window_s=f.number("scale_down_window_s"),
            model_load_s=f.number("model_load_s"),
            pod_start_s=f.number("pod_start_s"),
            provisioning_lead_s=f.number("provisioning_lead_s"),
            max_extra_fraction=f.number("max_extra_fraction"),
            max_extra_cost_per_hour=f.opt_number("max_extra_cost_per_hour"),
            replica_cost_per_hour=f.number("replica_cost_per_hour"),
            season_s=f.number("season_s"),
            history=f.opt_text("history"),
            schedule=schedule,
        )
        if not 1 <= scaling.min_replicas <= scaling.max_replicas:
            raise InvalidArgument(f"{where}: need 1 <= min_replicas <= max_replicas, got {scaling.min_replicas}")
        return scaling


@dataclass(frozen=True)
class Resources:
    """What one replica requests (= its limits): CPUs, memory in MiB, GPUs."""

    cpu: float
    memory_mb: float
    gpus: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {"cpu": self.cpu, "memory_mb": self.memory_mb, "gpus": self.gpus}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Resources:
        f = _Fields(data, where)
        return cls(f.number("cpu"), f.number("memory_mb"), f.whole("gpus"))


@dataclass(frozen=True)
class Figure:
    """One figure of a placement with where the plan took it from: ``source`` is measured (a bench machine),
    declared (a deployment or pool file) or observed (production, through Prometheus).

    ``contradicts``: production differs from the bench/declared figure by more than the live margin.
    """

    name: str
    value: float
    source: str
    measured: float | None
    observed: float | None
    contradicts: bool = False

    @property
    def deviation(self) -> float | None:
        """observed / measured - 1, when both exist and the measured figure is not zero."""
        if self.measured is None or self.observed is None or self.measured == 0:
            return None
        return self.observed / self.measured - 1.0

    def to_dict(self) -> dict[str, Any]:
        dev = self.deviation
        return {
            "name": self.name,
            "value": self.value,
            "source": self.source,
            "measured": self.measured,
            "observed": self.observed,
            "deviation": None if dev is None else round(dev, 4),
            "contradicts": self.contradicts,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Figure:
        f = _Fields(data, where)
        source = f.text("source")
        if source not in (MEASURED, DECLARED, OBSERVED):
            raise InvalidArgument(f"{where}: source must be {MEASURED}, {DECLARED!r} or {OBSERVED}, got {source!r}")
        contradicts = f.raw("contradicts")
        if not isinstance(contradicts, bool):
            raise f._bad("contradicts", "true or false")
        return cls(
            name=f.text("name"),
            value=f.number("value"),
            source=source,
            measured=f.opt_number("measured"),
            observed=f.opt_number("observed"),
            contradicts=contradicts,
        )


@dataclass(frozen=True)
class LiveFigures:
    """What production showed for a placement over a window: its figures and whether they contradict the profile."""

    prometheus: str
    since_s: float
    margin: float
    """A bench figure that production misses by more than this fraction (either way) is contradicted."""
    figures: tuple[Figure, ...]
    history_points: int = 0
    """Load-history samples from Prometheus the predictive policy planned with (0: none used)."""
    step_s: float | None = None
    """The range-query step the figures were read with (None: the reader's default)."""

    def figure(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    @property
    def contradicted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.figures if f.contradicts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "prometheus": self.prometheus,
            "since_s": self.since_s,
            "margin": self.margin,
            "history_points": self.history_points,
            "step_s": self.step_s,
            "figures": [f.to_dict() for f in self.figures],
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LiveFigures:
        f = _Fields(data, where)
        return cls(
            prometheus=f.text("prometheus"),
            since_s=f.number("since_s"),
            margin=f.number("margin"),
            figures=tuple(Figure.from_dict(x.data, x.where) for x in f.objects("figures")),
            history_points=f.whole("history_points"),
            step_s=f.opt_number("step_s"),
        )


@dataclass(frozen=True)
class Placement:
    """Where one deployment runs, sized from its profile, with every reason for the choice."""

    deployment: str
    namespace: str
    pool: str
    replicas: int
    """The count at peak load, and the autoscaler's maximum unless one was configured."""
    instances: int
    threads: int
    batch: int
    expected_p99_ms: float
    slo_p99_ms: float
    peak_rps: float
    cost_per_hour: float
    priority: str
    residency: tuple[str, ...] | None
    jurisdiction: str | None
    region: str | None
    gpu_type: str | None
    resources: Resources
    nodes: dict[str, int]
    """Node name (``<pool>-<index>``) -> replicas on it at peak."""
    model: str | None
    model_sha256: str | None
    allow_from_namespaces: tuple[str, ...]
    profile_source: str
    profile: Profile
    autoscaling: PlannedScaling
    reasons: tuple[str, ...] = field(default=())
    live: LiveFigures | None = None
    """What production showed (``honed plan --prometheus``); None when the plan was made from files alone."""

    def operating_point(self) -> OperatingPoint:
        """The profile's point this placement runs at (its batch, threads and instances)."""
        key = (self.batch, self.threads, self.instances)
        for p in self.profile.points:
            if (p.batch, p.threads, p.instances) == key:
                return p
        raise InvalidArgument(
            f"placement {self.deployment!r}: its profile has no point at batch {key[0]}, threads {key[1]}, "
            f"instances {key[2]}; regenerate the plan with honed plan"
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "deployment": self.deployment,
            "namespace": self.namespace,
            "pool": self.pool,
            "replicas": self.replicas,
            "instances": self.instances,
            "threads": self.threads,
            "batch": self.batch,
            "expected_p99_ms": self.expected_p99_ms,
            "slo_p99_ms": self.slo_p99_ms,
            "peak_rps": self.peak_rps,
            "cost_per_hour": self.cost_per_hour,
            "priority": self.priority,
            "residency": list(self.residency) if self.residency is not None else None,
            "jurisdiction": self.jurisdiction,
            "region": self.region,
            "gpu_type": self.gpu_type,
            "resources": self.resources.to_dict(),
            "nodes": dict(self.nodes),
            "model": self.model,
            "model_sha256": self.model_sha256,
            "allow_from_namespaces": list(self.allow_from_namespaces),
            "profile_source": self.profile_source,
            "profile": self.profile.to_dict(),
            "autoscaling": self.autoscaling.to_dict(),
            "reasons": list(self.reasons),
            **({"live": self.live.to_dict()} if self.live is not None else {}),
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Placement:
        f = _Fields(data, where)
        name = f.text("deployment")
        f.where = f"{where} ({name})"
        return cls(
            deployment=name,
            namespace=f.text("namespace"),
            pool=f.text("pool"),
            replicas=f.whole("replicas"),
            instances=f.whole("instances"),
            threads=f.whole("threads"),
            batch=f.whole("batch"),
            expected_p99_ms=f.number("expected_p99_ms"),
            slo_p99_ms=f.number("slo_p99_ms"),
            peak_rps=f.number("peak_rps"),
            cost_per_hour=f.number("cost_per_hour"),
            priority=f.text("priority"),
            residency=f.opt_strings("residency"),
            jurisdiction=f.opt_text("jurisdiction"),
            region=f.opt_text("region"),
            gpu_type=f.opt_text("gpu_type"),
            resources=Resources.from_dict(f.raw("resources"), f"{f.where}.resources"),
            nodes=f.mapping("nodes", int),
            model=f.opt_text("model"),
            model_sha256=f.opt_text("model_sha256"),
            allow_from_namespaces=f.strings("allow_from_namespaces"),
            profile_source=f.text("profile_source"),
            profile=Profile.from_dict(f.raw("profile"), f"{f.where}.profile"),
            autoscaling=PlannedScaling.from_dict(f.raw("autoscaling"), f"{f.where}.autoscaling"),
            reasons=f.strings("reasons"),
            live=None if f.data.get("live") is None else LiveFigures.from_dict(f.raw("live"), f"{f.where}.live"),
        )


@dataclass(frozen=True)
class Unplaced:
    """A deployment the plan could not place, and the one reason why."""

    deployment: str
    priority: str
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {"deployment": self.deployment, "priority": self.priority, "reason": self.reason}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Unplaced:
        f = _Fields(data, where)
        return cls(f.text("deployment"), f.text("priority"), f.text("reason"))


@dataclass(frozen=True)
class PoolUse:
    """How much of one node pool the plan uses."""

    name: str
    jurisdiction: str | None
    region: str | None
    nodes: int
    nodes_used: int
    cost_per_hour_used: float
    cpu_requested: float
    cpu_total: float
    memory_mb_requested: float
    gpus_requested: int
    gpu_type: str | None

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "jurisdiction": self.jurisdiction,
            "region": self.region,
            "nodes": self.nodes,
            "nodes_used": self.nodes_used,
            "cost_per_hour_used": self.cost_per_hour_used,
            "cpu_requested": self.cpu_requested,
            "cpu_total": self.cpu_total,
            "memory_mb_requested": self.memory_mb_requested,
            "gpus_requested": self.gpus_requested,
            "gpu_type": self.gpu_type,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PoolUse:
        f = _Fields(data, where)
        return cls(
            name=f.text("name"),
            jurisdiction=f.opt_text("jurisdiction"),
            region=f.opt_text("region"),
            nodes=f.whole("nodes"),
            nodes_used=f.whole("nodes_used"),
            cost_per_hour_used=f.number("cost_per_hour_used"),
            cpu_requested=f.number("cpu_requested"),
            cpu_total=f.number("cpu_total"),
            memory_mb_requested=f.number("memory_mb_requested"),
            gpus_requested=f.whole("gpus_requested"),
            gpu_type=f.opt_text("gpu_type"),
        )


@dataclass(frozen=True)
class Decision:
    """Per deployment: a note for every pool considered, and what was chosen (a placement or why not)."""

    pools: dict[str, str]
    chosen: str | None = None

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {"pools": dict(self.pools)}
        if self.chosen is not None:
            out["chosen"] = self.chosen
        return out

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Decision:
        f = _Fields(data, where)
        return cls(f.mapping("pools", str), f.opt_text("chosen"))


@dataclass(frozen=True)
class Solver:
    """Which solver placed the plan and how it ended."""

    name: str
    status: str
    time_limit_s: float
    objective: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "status": self.status,
            "time_limit_s": self.time_limit_s,
            "objective": self.objective,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Solver:
        f = _Fields(data, where)
        return cls(f.text("name"), f.text("status"), f.number("time_limit_s"), f.number("objective"))


@dataclass(frozen=True)
class Plan:
    """A whole plan: placements, what could not be placed, pool use, the decisions and the total cost."""

    solver: Solver
    placements: tuple[Placement, ...]
    unplaced: tuple[Unplaced, ...] = ()
    pools: tuple[PoolUse, ...] = ()
    decisions: dict[str, Decision] = field(default_factory=dict)
    total_cost_per_hour: float = 0.0

    def placement(self, name: str) -> Placement:
        for p in self.placements:
            if p.deployment == name:
                return p
        raise InvalidArgument(f"the plan has no placement {name!r}; it places {', '.join(self.names()) or 'nothing'}")

    def names(self) -> list[str]:
        return [p.deployment for p in self.placements]

    def only(self, placements: list[Placement] | tuple[Placement, ...]) -> Plan:
        """The plan cut down to ``placements`` (e.g. the predictive ones a forecast server reads)."""
        names = {p.deployment for p in placements}
        return replace(
            self,
            placements=tuple(placements),
            unplaced=(),
            decisions={k: v for k, v in self.decisions.items() if k in names},
            total_cost_per_hour=round(sum(p.cost_per_hour for p in placements), 4),
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "solver": self.solver.to_dict(),
            "placements": [p.to_dict() for p in self.placements],
            "unplaced": [u.to_dict() for u in self.unplaced],
            "pools": [p.to_dict() for p in self.pools],
            "decisions": {k: d.to_dict() for k, d in self.decisions.items()},
            "total_cost_per_hour": self.total_cost_per_hour,
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Plan:
        if not isinstance(data, dict) or data.get("schema") != SCHEMA:
            found = data.get("schema") if isinstance(data, dict) else None
            raise InvalidArgument(
                f"{where} is not a honed plan (schema {SCHEMA}, found {found!r}); write one with honed plan"
            )
        f = _Fields(data, where)
        decisions = f.obj("decisions")
        placements = tuple(Placement.from_dict(p.data, p.where) for p in f.objects("placements"))
        names = [p.deployment for p in placements]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise InvalidArgument(f"{where}: deployment(s) {', '.join(twice)} placed twice")
        return cls(
            solver=Solver.from_dict(f.raw("solver"), f"{where}: solver"),
            placements=placements,
            unplaced=tuple(Unplaced.from_dict(u.data, u.where) for u in f.objects("unplaced")),
            pools=tuple(PoolUse.from_dict(p.data, p.where) for p in f.objects("pools")),
            decisions={k: Decision.from_dict(v, f"{decisions.where}.{k}") for k, v in decisions.data.items()},
            total_cost_per_hour=f.number("total_cost_per_hour"),
        )


def read_plan(path: str | Path) -> Plan:
    """Read and check ``plan.json``; every problem is an InvalidArgument naming the file and the field."""
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"plan not found: {p} (write one with: honed plan --out {p})")
    try:
        data = json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{p} is not valid JSON: {exc}") from exc
    return Plan.from_dict(data, str(p))


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.json`` (creating its folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(plan.to_json(), encoding="utf-8")
    return p
