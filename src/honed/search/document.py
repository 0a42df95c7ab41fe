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

from honed.bench.document import BenchDocument, BenchRow, LatencyBlock
from honed.errors import HonedError, InvalidArgument
from honed.evaluate import AccuracyGate, MaskSpec
from honed.fields import Document, Fields
from honed.jsonio import read_json

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


class _Fields(Fields):
    """Typed reads of one JSON object, each error naming where it is (``origin: candidates[3].speedup``)."""

    wrong_says = "{where}.{key} must be {expected}, got {value}"
    missing_says = "{where}: missing {key!r} (a truncated report? rerun honed optimize)"
    finite_only = False
    null_needs_key = True
    or_null = " or null"


E = TypeVar("E", bound=StrEnum)


def _status(kind: type[E], fields: _Fields, key: str = "status") -> E:
    value = fields.text(key)
    try:
        return kind(value)
    except ValueError:
        known = ", ".join(s.value for s in kind)
        raise InvalidArgument(f"{fields.where}.{key} must be one of {known}; got {value!r}") from None


@dataclass(frozen=True)
class CandidateRow(Document):
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

    @classmethod
    def from_dict(cls, data: Any, where: str) -> CandidateRow:
        f = _Fields(data, where)
        passes = f.items("passes")
        for i, step in enumerate(passes):
            _Fields(step, f"{where}.passes[{i}]").text("name")
        latency = f.opt_obj("latency_ms")
        rounds = f.items("final_rounds_ms")
        if not all(isinstance(r, int | float) and not isinstance(r, bool) for r in rounds):
            raise InvalidArgument(f"{where}.final_rounds_ms must be a list of numbers, got {rounds!r}")
        return f.read(
            cls,
            passes=tuple(passes),
            status=_status(CandidateStatus, f),
            latency_ms=LatencyBlock.from_dict(latency, f"{where}.latency_ms") if latency is not None else None,
            final_rounds_ms=tuple(rounds),
        )


@dataclass(frozen=True)
class ReportSettings(Document):
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

    @classmethod
    def from_dict(cls, data: Any, where: str) -> ReportSettings:
        f = _Fields(data, where)
        passes = f.data.get("passes")
        return f.read(
            cls,
            backends=tuple(str(b) for b in f.items("backends")),
            passes=tuple(f.items("passes")) if passes is not None else None,
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
                f.text("metric"),
                f.opt_number("min"),
                f.opt_number("max"),
                str(f.data.get("reason") or ""),
                name=str(f.data["name"]) if f.data.get("name") is not None else None,
            )
            mask = f.data.get("mask")
            spec = MaskSpec.from_dict(mask) if isinstance(mask, Mapping) else None
        except HonedError as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
        return cls(gate, f.number("iou_threshold"), spec)


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
    stop_reason: str | None = None
    """Why the search stopped: ``all-tried``, ``unaffordable`` or ``budget-spent`` (``untried`` says what)."""
    untried: tuple[Json, ...] = ()
    """Each move not made: ``what``, ``reason`` (budget, unaffordable, not-applicable), ``detail``, ``backend``."""
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
    def source_notes(self) -> tuple[tuple[str, str], ...]:
        """What the report says about the model as given: its quantization (and that the quantization passes were
        not tried) and the ``--reference`` the gate compared against, as (label, sentence) pairs."""
        from honed.model.quantized import QuantizationInfo

        notes: list[tuple[str, str]] = []
        quantization = (self.model or {}).get("quantization")
        if quantization:
            reason = QuantizationInfo.from_dict(quantization).reason()
            notes.append(("quantization", f"{reason}: its own scales are kept, quantization passes not tried"))
        reference = (self.data or {}).get("reference")
        if reference:
            notes.append(("reference", f"the gate compares against {reference['path']} (--reference)"))
        return tuple(notes)

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
            "stop_reason": self.stop_reason,
            "untried": [dict(u) for u in self.untried],
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
        exit_code = f.whole("exit_code")
        version = str(data.get("honed_version") or "")
        if data.get("mode") == "replay":
            return cls(
                status=status,
                exit_code=exit_code,
                complete=True,
                winner_bench=None,
                replay=Replay(
                    expected_sha256=f.opt_text("expected_sha256"),
                    output_sha256=str(f.text("output_sha256")),
                    reproduced=f.flag("reproduced"),
                    library_changes=f.obj("library_changes"),
                ),
                honed_version=version,
                model=f.obj("model"),
                recipe=f.obj("recipe"),
            )
        bench = f.opt_obj("winner_bench")
        return cls(
            status=status,
            exit_code=exit_code,
            complete=f.flag("complete"),
            winner_bench=BenchDocument.from_dict(bench, f"{origin}: winner_bench") if bench is not None else None,
            honed_version=version,
            created=f.opt_text("created"),
            model=f.obj("model"),
            hardware=f.obj("hardware"),
            settings=ReportSettings.from_dict(f.raw("settings"), f"{origin}: settings"),
            gate=ReportGate.from_dict(f.raw("gate"), f"{origin}: gate"),
            data=f.obj("data"),
            elapsed_s=f.opt_number("elapsed_s"),
            budget_exhausted=f.flag("budget_exhausted"),
            stop_reason=f.opt_text("stop_reason") if "stop_reason" in data else None,
            untried=tuple(
                _Fields(u, f"{origin}: untried[{i}]").data
                for i, u in enumerate(f.items("untried") if "untried" in data else [])
            ),
            final_compared=f.flag("final_compared"),
            winner=CandidateRow.from_dict(f.raw("winner"), f"{origin}: winner"),
            baseline=CandidateRow.from_dict(f.raw("baseline"), f"{origin}: baseline"),
            winner_results=_bench_rows(f, "winner_results", origin),
            baseline_results=_bench_rows(f, "baseline_results", origin),
            candidates=tuple(
                CandidateRow.from_dict(row, f"{origin}: candidates[{i}]") for i, row in enumerate(f.items("candidates"))
            ),
            skipped=tuple(_Fields(s, f"{origin}: skipped[{i}]").data for i, s in enumerate(f.items("skipped"))),
            candidate_order=f.opt_obj("candidate_order"),
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
