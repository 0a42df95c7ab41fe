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
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, ClassVar

from honed.errors import InvalidArgument
from honed.fields import Document, Fields, as_dict
from honed.jsonio import read_json

SCHEMA = "honed.plan/v1"
MEASURED = "measured"
DECLARED = "declared, not measured"
OBSERVED = "observed"
"""A figure read from the serving fleet's own metrics (Prometheus), not from a bench machine."""


class _Fields(Fields):
    """One JSON object of a plan with where it stands (file and path), so every complaint names the field."""

    not_object_says = "{where}: expected an object, got {value}; regenerate it with honed plan"
    wrong_says = "{where}: {key} must be {expected}, got {value}; regenerate it with honed plan"
    missing_says = "{where}: missing field {key!r}; regenerate it with honed plan"

    @classmethod
    def render(cls, value: Any) -> str:
        return _kind(value)


class _Value(Document):
    """A value of plan.json: read with the plan's phrasing."""

    reader = _Fields


def _kind(value: Any) -> str:
    return "null" if value is None else f"{type(value).__name__} {value!r}"[:80]


@dataclass(frozen=True)
class OperatingPoint(_Value):
    """One measured (or declared) way to run the model: a bench row."""

    json_keys: ClassVar[Mapping[str, str]] = {"throughput": "throughput_items_per_s"}
    batch: int
    threads: int
    instances: int
    p99_ms: float
    mean_ms: float
    throughput: float
    """Items per second the replica sustained at this point, all instances together."""


@dataclass(frozen=True)
class Profile(_Value):
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
        out = super().to_dict()
        out["points"] = out.pop("points")  # written last: the curve after what it describes
        return out


@dataclass(frozen=True)
class ScheduleWindow(_Value):
    """One hour of the day-ahead schedule of a predictive placement (``HH:MM`` UTC, starting a lead early)."""

    start: str
    end: str
    replicas: int
    forecast_rps: float


@dataclass(frozen=True)
class PlannedScaling(_Value):
    """How a placement scales, as planned: the numbers the HPA, KEDA and the simulator run with."""

    json_unless_none = ("history", "schedule")
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

    @classmethod
    def from_dict(cls, data: Any, where: str) -> PlannedScaling:
        scaling = _Fields(data, where).read(cls)
        if scaling.policy not in ("hpa", "predictive"):
            raise InvalidArgument(f"{where}: policy must be hpa or predictive, got {scaling.policy!r}")
        if not 1 <= scaling.min_replicas <= scaling.max_replicas:
            raise InvalidArgument(f"{where}: need 1 <= min_replicas <= max_replicas, got {scaling.min_replicas}")
        return scaling


@dataclass(frozen=True)
class Resources(_Value):
    """What one replica requests (= its limits): CPUs, memory in MiB, GPUs."""

    cpu: float
    memory_mb: float
    gpus: int = 0


@dataclass(frozen=True)
class Figure(_Value):
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
        return super().to_dict() | {"deviation": None if dev is None else round(dev, 4)}

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Figure:
        figure = _Fields(data, where).read(cls)
        if figure.source not in (MEASURED, DECLARED, OBSERVED):
            raise InvalidArgument(
                f"{where}: source must be {MEASURED}, {DECLARED!r} or {OBSERVED}, got {figure.source!r}"
            )
        return figure


@dataclass(frozen=True)
class LiveFigures(_Value):
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
    cpu_metric: str | None = None
    """The series ``cpu_per_replica`` was observed in: ``process_cpu_seconds_total`` (the server process's CPU) or
    ``honed_instance_busy_seconds_total`` (its model runs only, where no replica exported the first; None: neither)."""

    def figure(self, name: str) -> Figure | None:
        return next((f for f in self.figures if f.name == name), None)

    @property
    def contradicted(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.figures if f.contradicts)

    def to_dict(self) -> dict[str, Any]:
        out = super().to_dict()
        out["figures"] = out.pop("figures")  # written last: the figures after the window they were read over
        return out


@dataclass(frozen=True)
class Placement(_Value):
    """Where one deployment runs, sized from its profile, with every reason for the choice."""

    json_unless_none = ("live",)

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

    @classmethod
    def from_dict(cls, data: Any, where: str) -> Placement:
        f = _Fields(data, where)
        f.where = f"{where} ({f.text('deployment')})"
        return f.read(cls)


@dataclass(frozen=True)
class Unplaced(_Value):
    """A deployment the plan could not place, and the one reason why."""

    deployment: str
    priority: str
    reason: str


@dataclass(frozen=True)
class PoolUse(_Value):
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


@dataclass(frozen=True)
class Decision(_Value):
    """Per deployment: a note for every pool considered, and what was chosen (a placement or why not)."""

    json_unless_none = ("chosen",)
    pools: dict[str, str]
    chosen: str | None = None


@dataclass(frozen=True)
class Solver(_Value):
    """Which solver placed the plan and how it ended."""

    name: str
    status: str
    time_limit_s: float
    objective: float


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
        return {"schema": SCHEMA} | as_dict(self)

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
        decisions = f.nested("decisions")
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
    data = read_json(path, "plan", hint=f"write one with: honed plan --out {Path(path)}")
    return Plan.from_dict(data, str(Path(path)))


def write_plan(plan: Plan, path: str | Path) -> Path:
    """Write ``plan.json`` (creating its folder)."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(plan.to_json(), encoding="utf-8")
    return p
