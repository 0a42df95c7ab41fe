"""The optimize report (``report.json``, schema ``honed-optimize-report/1``) as a typed value.

:mod:`honed.search.api` builds an :class:`OptimizeReport` and writes ``to_dict()``; the readers downstream of the
search (``honed plan``'s profiles, the registry, the CLI and the HTML/terminal views) read it back with
:meth:`OptimizeReport.from_dict` / :meth:`OptimizeReport.read`, so a report of another schema, or a truncated
one, is refused with the file and the field named. docs/optimize.md describes every key.

Parts no reader here interprets (the model's tensors, the hardware, the data sources, per-op profiles, fidelity
details, the recipe) stay JSON objects: they are carried through unchanged, so ``to_dict()`` of what
``from_dict`` read is the JSON it read.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeVar

from honed.bench.document import BenchDocument, BenchRow, LatencyBlock, read_json
from honed.errors import HonedError, InvalidArgument
from honed.evaluate import AccuracyGate, MaskSpec

REPORT_SCHEMA = "honed-optimize-report/1"
REPORT_FILE = "report.json"

Json = Mapping[str, Any]


class Status(StrEnum):
    """The report's verdict (``status``)."""

    IMPROVED = "improved"
    BASELINE_ONLY = "baseline-only"
    REPLAYED = "replayed"


class CandidateStatus(StrEnum):
    """What happened to one candidate (a row's ``status``)."""

    BASELINE = "baseline"
    ACCEPTED = "accepted"
    REJECTED = "rejected"
    SLOWER = "slower"
    FAILED = "failed"
    NOT_RUN = "not-run"
    PENDING = "pending"


class _Fields:
    """Typed reads of one JSON object, each error naming where it is (``origin: candidates[3].speedup``)."""

    def __init__(self, data: Any, where: str) -> None:
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{where} must be a JSON object, got {type(data).__name__}")
        self.data, self.where = data, where

    def _fail(self, key: str, want: str) -> InvalidArgument:
        if key not in self.data:
            return InvalidArgument(f"{self.where}: missing {key!r} (a truncated report? rerun honed optimize)")
        return InvalidArgument(f"{self.where}.{key} must be {want}, got {self.data[key]!r}")

    def required(self, key: str) -> Any:
        if key not in self.data:
            raise self._fail(key, "present")
        return self.data[key]

    def text(self, key: str, *, optional: bool = False) -> str | None:
        value = self.data.get(key)
        if value is None and optional and key in self.data:
            return None
        if not isinstance(value, str):
            raise self._fail(key, "a string" + (" or null" if optional else ""))
        return value

    def flag(self, key: str) -> bool:
        value = self.data.get(key)
        if not isinstance(value, bool):
            raise self._fail(key, "true or false")
        return value

    def whole(self, key: str, *, optional: bool = False) -> int | None:
        value = self.data.get(key)
        if value is None and optional and key in self.data:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise self._fail(key, "a whole number")
        return value

    def number(self, key: str, *, optional: bool = False) -> float | None:
        value = self.data.get(key)
        if value is None and optional and key in self.data:
            return None
        if isinstance(value, bool) or not isinstance(value, int | float):
            raise self._fail(key, "a number" + (" or null" if optional else ""))
        return value

    def obj(self, key: str, *, optional: bool = False) -> Json | None:
        value = self.data.get(key)
        if value is None and optional and key in self.data:
            return None
        if not isinstance(value, Mapping):
            raise self._fail(key, "a JSON object" + (" or null" if optional else ""))
        return value

    def items(self, key: str) -> list[Any]:
        value = self.data.get(key)
        if not isinstance(value, list):
            raise self._fail(key, "a list")
        return value


E = TypeVar("E", bound=StrEnum)


def _status(kind: type[E], fields: _Fields, key: str = "status") -> E:
    value = str(fields.text(key))
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(s.value for s in kind)
        raise InvalidArgument(f"{fields.where}.{key} must be one of {known}; got {value!r}") from None


@dataclass(frozen=True)
class CandidateRow:
    """One candidate as the report shows it: what it was, what happened, how fast and how faithful it was."""

    id: str
    label: str
    passes: tuple[Json, ...]
    """The pipeline: ``{name, params}`` per pass (empty for the original)."""
    backend: str
    runtime: Json
    """The :class:`~honed.runtime.RuntimeConfig` as a dict."""
    status: CandidateStatus
    reason: str | None
    note: str | None
    metric_value: float | None
    margin: float | None
    """How far inside (+) or outside (-) the bound, in the metric's units."""
    fidelity: Json | None
    fidelity_from: str | None
    latency_ms: LatencyBlock | None
    throughput_items_per_s: float | None
    final_rounds_ms: tuple[float, ...]
    cost_ms: float | None
    speedup: float | None
    size_bytes: int | None
    model_sha256: str | None
    cached: bool
    seconds: float

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "label": self.label,
            "passes": [dict(p) for p in self.passes],
            "backend": self.backend,
            "runtime": dict(self.runtime),
            "status": self.status.value,
            "reason": self.reason,
            "note": self.note,
            "metric_value": self.metric_value,
            "margin": self.margin,
            "fidelity": dict(self.fidelity) if self.fidelity is not None else None,
            "fidelity_from": self.fidelity_from,
            "latency_ms": self.latency_ms.to_dict() if self.latency_ms is not None else None,
            "throughput_items_per_s": self.throughput_items_per_s,
            "final_rounds_ms": list(self.final_rounds_ms),
            "cost_ms": self.cost_ms,
            "speedup": self.speedup,
            "size_bytes": self.size_bytes,
            "model_sha256": self.model_sha256,
            "cached": self.cached,
            "seconds": self.seconds,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CandidateRow:
        f = _Fields(data, where)
        passes = f.items("passes")
        for i, step in enumerate(passes):
            _Fields(step, f"{where}.passes[{i}]").text("name")
        latency = f.obj("latency_ms", optional=True)
        rounds = f.items("final_rounds_ms")
        if not all(isinstance(r, int | float) and not isinstance(r, bool) for r in rounds):
            raise InvalidArgument(f"{where}.final_rounds_ms must be a list of numbers, got {rounds!r}")
        return cls(
            id=str(f.text("id")),
            label=str(f.text("label")),
            passes=tuple(passes),
            backend=str(f.text("backend")),
            runtime=f.obj("runtime") or {},
            status=_status(CandidateStatus, f),
            reason=f.text("reason", optional=True),
            note=f.text("note", optional=True),
            metric_value=f.number("metric_value", optional=True),
            margin=f.number("margin", optional=True),
            fidelity=f.obj("fidelity", optional=True),
            fidelity_from=f.text("fidelity_from", optional=True),
            latency_ms=LatencyBlock.from_dict(latency, f"{where}.latency_ms") if latency is not None else None,
            throughput_items_per_s=f.number("throughput_items_per_s", optional=True),
            final_rounds_ms=tuple(rounds),
            cost_ms=f.number("cost_ms", optional=True),
            speedup=f.number("speedup", optional=True),
            size_bytes=f.whole("size_bytes", optional=True),
            model_sha256=f.text("model_sha256", optional=True),
            cached=f.flag("cached"),
            seconds=float(f.number("seconds") or 0.0),
        )


@dataclass(frozen=True)
class ReportSettings:
    """How the search was asked to run (``settings``)."""

    batch: int
    objective: str
    time_budget_s: float
    backends: tuple[str, ...]
    shapes: Json
    """Input name -> the concrete shape measured at ``batch``."""
    measure_s: float
    final_rounds: int
    passes: tuple[str, ...] | None
    tune_runtime: bool

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "objective": self.objective,
            "time_budget_s": self.time_budget_s,
            "backends": list(self.backends),
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "measure_s": self.measure_s,
            "final_rounds": self.final_rounds,
            "passes": list(self.passes) if self.passes is not None else None,
            "tune_runtime": self.tune_runtime,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ReportSettings:
        f = _Fields(data, where)
        passes = f.data.get("passes")
        return cls(
            batch=int(f.whole("batch") or 0),
            objective=str(f.text("objective")),
            time_budget_s=float(f.number("time_budget_s") or 0.0),
            backends=tuple(str(b) for b in f.items("backends")),
            shapes=f.obj("shapes") or {},
            measure_s=float(f.number("measure_s") or 0.0),
            final_rounds=int(f.whole("final_rounds") or 0),
            passes=tuple(f.items("passes")) if passes is not None else None,
            tune_runtime=f.flag("tune_runtime"),
        )


@dataclass(frozen=True)
class ReportGate:
    """The accuracy gate the candidates were judged by, the IoU threshold its ``iou`` metric uses, and the
    attention-mask input whose padded positions were left out of the comparison (None: every position)."""

    gate: AccuracyGate
    iou_threshold: float
    mask: MaskSpec | None = None

    @property
    def metric(self) -> str:
        """The metric as shown: its name, or the user's ``FILE.py:FUNCTION`` for ``--eval``."""
        return self.gate.label

    def describe(self) -> str:
        return self.gate.describe()

    def describe_mask(self) -> str:
        """One phrase for the report: which positions the comparison covered."""
        if self.mask is None:
            return "every position (no attention-mask input found)"
        if self.mask.input is None:
            return "every position (--no-mask)"
        how = "found by name and values" if self.mask.source == "auto" else "given with --mask-input"
        return f"padded positions left out: input {self.mask.input!r} ({how})"

    def to_dict(self) -> dict[str, Any]:
        return self.gate.to_dict() | {
            "describe": self.gate.describe(),
            "iou_threshold": self.iou_threshold,
            "mask": self.mask.to_dict() if self.mask is not None else None,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ReportGate:
        f = _Fields(data, where)
        try:
            gate = AccuracyGate(
                str(f.text("metric")),
                f.number("min", optional=True),
                f.number("max", optional=True),
                str(f.data.get("reason") or ""),
                name=str(f.data["name"]) if f.data.get("name") is not None else None,
            )
            mask = f.data.get("mask")
            spec = MaskSpec.from_dict(mask) if isinstance(mask, Mapping) else None
        except HonedError as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
        return cls(gate, float(f.number("iou_threshold") or 0.0), spec)


@dataclass(frozen=True)
class Replay:
    """What a ``--recipe`` replay produced: whether the rebuilt model is the recipe's, byte for byte."""

    expected_sha256: str | None
    output_sha256: str
    reproduced: bool
    library_changes: Json
    """Library -> ``{recipe, now}`` for each version that differs from the recipe's."""


@dataclass(frozen=True)
class OptimizeReport:
    """report.json as a value. A search's report fills every field; a replay's (``replay`` set) only the header,
    ``model``, ``recipe`` and the verdict."""

    status: Status
    exit_code: int
    complete: bool
    winner_bench: BenchDocument | None
    """The winner (``out/model.onnx`` or ``out/model.xml``) as a bench-v1 document: its measured rows on the
    optimize machine."""
    replay: Replay | None = None
    honed_version: str = ""
    created: str | None = None
    model: Json | None = None
    hardware: Json | None = None
    settings: ReportSettings | None = None
    gate: ReportGate | None = None
    data: Json | None = None
    elapsed_s: float | None = None
    budget_exhausted: bool = False
    final_compared: bool = False
    winner: CandidateRow | None = None
    baseline: CandidateRow | None = None
    winner_results: tuple[BenchRow, ...] = ()
    baseline_results: tuple[BenchRow, ...] = ()
    candidates: tuple[CandidateRow, ...] = ()
    skipped: tuple[Json, ...] = ()
    candidate_order: Json | None = None
    profile: Json | None = None
    recipe: Json | None = None
    """The winner's recipe.json (absent from the best-so-far report written while the search runs)."""

    @property
    def improved(self) -> bool:
        return self.status is Status.IMPROVED

    @property
    def pareto(self) -> tuple[str, ...]:
        """Ids of the candidates no other beats on both cost and the gate metric."""
        if self.gate is None:
            return ()
        return pareto_front(self.candidates, self.gate.gate.higher_is_better)

    @property
    def closest(self) -> tuple[CandidateRow, ...]:
        """Rejected candidates with a distance to the bound, nearest first: how close each came."""
        rejected = [r for r in self.candidates if r.status is CandidateStatus.REJECTED and r.margin is not None]
        return tuple(sorted(rejected, key=lambda r: -float(r.margin or 0.0)))

    def to_dict(self) -> dict[str, Any]:
        head: dict[str, Any] = {"schema": REPORT_SCHEMA, "honed_version": self.honed_version}
        if self.replay is not None:
            return head | {
                "mode": "replay",
                "model": dict(self.model or {}),
                "recipe": dict(self.recipe or {}),
                "expected_sha256": self.replay.expected_sha256,
                "output_sha256": self.replay.output_sha256,
                "reproduced": self.replay.reproduced,
                "library_changes": dict(self.replay.library_changes),
                "exit_code": self.exit_code,
                "status": self.status.value,
            }
        if self.settings is None or self.gate is None or self.winner is None or self.baseline is None:
            raise InvalidArgument("a search report needs its settings, gate, winner and baseline")
        data = head | {
            "created": self.created,
            "model": dict(self.model or {}),
            "hardware": dict(self.hardware or {}),
            "settings": self.settings.to_dict(),
            "gate": self.gate.to_dict(),
            "data": dict(self.data or {}),
            "complete": self.complete,
            "status": self.status.value,
            "exit_code": self.exit_code,
            "elapsed_s": self.elapsed_s,
            "budget_exhausted": self.budget_exhausted,
            "final_compared": self.final_compared,
            "winner": self.winner.to_dict(),
            "baseline": self.baseline.to_dict(),
            "winner_results": [r.to_dict() for r in self.winner_results],
            "baseline_results": [r.to_dict() for r in self.baseline_results],
            "winner_bench": self.winner_bench.to_dict() if self.winner_bench is not None else None,
            "candidates": [r.to_dict() for r in self.candidates],
            "skipped": [dict(s) for s in self.skipped],
            "candidate_order": dict(self.candidate_order) if self.candidate_order is not None else None,
            "pareto": list(self.pareto),
            "profile": dict(self.profile or {}),
            "closest": [_close_call(r) for r in self.closest],
        }
        if self.recipe is not None:
            data["recipe"] = dict(self.recipe)
        return data

    @classmethod
    def from_dict(cls, data: Any, origin: str) -> OptimizeReport:
        if not isinstance(data, Mapping):
            raise InvalidArgument(f"{origin}: an optimize report must be a JSON object")
        schema = data.get("schema")
        if schema != REPORT_SCHEMA:
            raise InvalidArgument(
                f"{origin}: expected schema {REPORT_SCHEMA!r}, got {schema!r}; write it with honed optimize"
            )
        f = _Fields(data, origin)
        status = _status(Status, f)
        exit_code = int(f.whole("exit_code") or 0)
        version = str(data.get("honed_version") or "")
        if data.get("mode") == "replay":
            return cls(
                status=status,
                exit_code=exit_code,
                complete=True,
                winner_bench=None,
                replay=Replay(
                    expected_sha256=f.text("expected_sha256", optional=True),
                    output_sha256=str(f.text("output_sha256")),
                    reproduced=f.flag("reproduced"),
                    library_changes=f.obj("library_changes") or {},
                ),
                honed_version=version,
                model=f.obj("model"),
                recipe=f.obj("recipe"),
            )
        bench = f.obj("winner_bench", optional=True)
        return cls(
            status=status,
            exit_code=exit_code,
            complete=f.flag("complete"),
            winner_bench=BenchDocument.from_dict(bench, f"{origin}: winner_bench") if bench is not None else None,
            honed_version=version,
            created=f.text("created", optional=True),
            model=f.obj("model"),
            hardware=f.obj("hardware"),
            settings=ReportSettings.from_dict(f.required("settings"), f"{origin}: settings"),
            gate=ReportGate.from_dict(f.required("gate"), f"{origin}: gate"),
            data=f.obj("data"),
            elapsed_s=f.number("elapsed_s", optional=True),
            budget_exhausted=f.flag("budget_exhausted"),
            final_compared=f.flag("final_compared"),
            winner=CandidateRow.from_dict(f.required("winner"), f"{origin}: winner"),
            baseline=CandidateRow.from_dict(f.required("baseline"), f"{origin}: baseline"),
            winner_results=_bench_rows(f, "winner_results", origin),
            baseline_results=_bench_rows(f, "baseline_results", origin),
            candidates=tuple(
                CandidateRow.from_dict(row, f"{origin}: candidates[{i}]") for i, row in enumerate(f.items("candidates"))
            ),
            skipped=tuple(_Fields(s, f"{origin}: skipped[{i}]").data for i, s in enumerate(f.items("skipped"))),
            candidate_order=f.obj("candidate_order", optional=True),
            profile=f.obj("profile"),
            recipe=f.obj("recipe") if "recipe" in data else None,
        )

    @classmethod
    def read(cls, path: str | Path) -> OptimizeReport:
        return cls.from_dict(read_json(path, "optimize report"), str(path))


def _bench_rows(f: _Fields, key: str, origin: str) -> tuple[BenchRow, ...]:
    return tuple(BenchRow.from_dict(r, f"{origin}: {key}[{i}]") for i, r in enumerate(f.items(key)))


def _close_call(row: CandidateRow) -> dict[str, Any]:
    return {
        "id": row.id,
        "label": row.label,
        "metric_value": row.metric_value,
        "margin": row.margin,
        "speedup": row.speedup,
    }


def pareto_front(rows: tuple[CandidateRow, ...] | list[CandidateRow], higher_is_better: bool) -> tuple[str, ...]:
    """Ids of rows with a cost and a metric value that no other such row beats on both (ties kept)."""
    points = [
        (r.id, float(r.cost_ms), float(r.metric_value))
        for r in rows
        if r.cost_ms is not None and r.metric_value is not None
    ]

    def better(a: float, b: float) -> bool:
        return a > b if higher_is_better else a < b

    def at_least(a: float, b: float) -> bool:
        return a >= b if higher_is_better else a <= b

    return tuple(
        pid
        for pid, cost, value in points
        if not any(
            (c <= cost and at_least(v, value)) and (c < cost or better(v, value)) for qid, c, v in points if qid != pid
        )
    )
