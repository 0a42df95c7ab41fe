"""``honed.optimize``: the one function the CLI, the demo and the benchmarks call.

It checks the inputs (model, data, labels, bounds), runs the original model once over the eval data as the
reference, runs the :class:`~honed.search.engine.Search`, and writes ``out/``: ``model.onnx`` (the winner,
stamped with provenance; ``model.xml`` + ``model.bin`` for an OpenVINO IR winner), ``recipe.json``,
``report.json`` and ``report.html``. The best model found so far is written as soon as it is found, so an
interrupted run still leaves a usable ``out/``. With ``recipe``
given, it replays that recipe instead of searching.

The chain, one step each: :class:`OptimizeJob` (the checked arguments), :func:`_prepare` (data, reference
outputs, gate), :func:`_search` (the engine run), :func:`search_report` (the typed report, a pure function of
what the search found) and :class:`_Writer` (out/, from those values).
"""

from __future__ import annotations

import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from honed.bench import BenchDocument
from honed.canonical import digest
from honed.data import synthetic_feeds
from honed.errors import DataError, InvalidArgument
from honed.evaluate import (
    AccuracyGate,
    Comparison,
    ReferenceOutputs,
    UserMetric,
    choose_mask,
    choose_metric,
    load_labels,
    load_user_metric,
    samples_needed,
)
from honed.evaluate.user_metric import UserFunction
from honed.hardware import HardwareSpec, detect_hardware
from honed.jsonio import write_json
from honed.model.artifact import artifact_sha256, winner_file
from honed.model.loader import file_sha256, load_model, model_io, resolve_model_path
from honed.model.quantized import QuantizationInfo, detect_quantization
from honed.model.spec import TensorSpec, concrete_shapes, parse_shape_overrides
from honed.passes import PassContext
from honed.runtime import RuntimeConfig, create_session
from honed.runtime import backends as registered_backends
from honed.search.build import Builder, BuildJob
from honed.search.cache import CandidateCache, default_cache_dir
from honed.search.candidates import ModelProfile, Skipped, Step
from honed.search.datasource import DataSource
from honed.search.document import REPORT_FILE, OptimizeReport, Replay, ReportGate, ReportSettings, Status
from honed.search.engine import OBJECTIVES, Clock, Events, Outcome, Search, SearchInputs, Settings, Untried
from honed.search.profile import op_profile
from honed.search.recipe import RECIPE_FILE, Recipe, build_artifact, library_versions, write_artifact
from honed.search.reference_model import ReferenceModel, load_reference
from honed.search.results import bench_document, bench_rows, candidate_row
from honed.units import parse_duration

Array = np.ndarray[Any, Any]

EXIT_IMPROVED = 0
EXIT_BASELINE_ONLY = 3
MIN_CALIBRATION_SAMPLES = 8
_SYNTHETIC_EVAL_SAMPLES = 64


@dataclass
class OptimizeResult:
    """What :func:`optimize` produced. ``exit_code`` is 0 when a faster model passed the gate, 3 when only the
    original did (it is still written). ``document`` is report.json as a typed value, ``report`` as its dict."""

    out_dir: Path
    model_path: Path
    recipe_path: Path
    report_path: Path
    html_path: Path | None
    report: dict[str, Any]
    exit_code: int
    document: OptimizeReport

    @classmethod
    def of(cls, document: OptimizeReport, out_dir: Path, report_path: Path, html_path: Path | None) -> OptimizeResult:
        return cls(
            out_dir=out_dir,
            model_path=winner_file(out_dir),
            recipe_path=out_dir / RECIPE_FILE,
            report_path=report_path,
            html_path=html_path,
            report=document.to_dict(),
            exit_code=document.exit_code,
            document=document,
        )

    @property
    def improved(self) -> bool:
        return self.exit_code == EXIT_IMPROVED

    @property
    def speedup(self) -> float | None:
        winner = self.document.winner
        return float(winner.speedup) if winner is not None and winner.speedup is not None else None


def optimize(
    model: str | Path,
    *,
    out: str | Path,
    data: str | Path | None = None,
    eval_data: str | Path | None = None,
    labels: str | Path | None = None,
    metric: str = "auto",
    minimum: float | None = None,
    maximum: float | None = None,
    eval_metric: str | Path | UserFunction | None = None,
    mask_input: str | None = None,
    mask: bool = True,
    iou_threshold: float = 0.3,
    batch: int = 1,
    time_budget: str | float = "10m",
    objective: str = "latency",
    backends: Sequence[str] | None = None,
    shapes: Sequence[str] | None = None,
    passes: Sequence[str] | None = None,
    tune_runtime: bool = True,
    evaluate_slower: bool = False,
    recipe: str | Path | None = None,
    reference: str | Path | None = None,
    calibration_samples: int = 128,
    eval_samples: int | None = None,
    measure_s: float = 1.0,
    final_rounds: int = 5,
    cache_dir: str | Path | None = None,
    use_cache: bool = True,
    html: bool = True,
    clock: Clock = time.monotonic,
    events: Events | None = None,
    hardware: HardwareSpec | None = None,
) -> OptimizeResult:
    """Find the fastest variant of ``model`` on this machine whose fidelity passes the gate; write it to ``out``.

    ``data`` is calibration data (.npz, one array per input, samples on axis 0); ``eval_data`` the data fidelity
    is judged on (``data`` when not given; synthetic inputs when neither is, and the report says so).
    ``metric``/``minimum``/``maximum`` (``--min``/``--max``) set the gate (``auto`` picks from the outputs);
    ``eval_metric`` (``--eval``) is the user's own metric instead: ``"FILE.py:FUNCTION"`` or a callable of
    ``(candidate_outputs, reference_outputs, labels)`` returning a float, bounded by ``minimum``/``maximum``.
    An attention-mask input (found by name and values, or named by ``mask_input``; ``mask=False`` turns it
    off) leaves padded positions out of the comparison.
    ``objective`` is ``latency`` (p50 at ``batch``) or ``throughput``. ``backends`` defaults to every installed
    backend; ``passes`` limits the passes tried to those names; ``tune_runtime=False`` skips the thread/affinity/
    spinning variants; ``evaluate_slower=True`` judges fidelity even of candidates first measured slower than
    the original (by default they are marked ``slower`` and their eval time is saved), and lets a rejected INT8
    candidate measured slower than the original still get the sensitive-layer fallback.
    ``recipe`` replays a recipe.json instead of searching. ``reference`` is a model the gate compares against
    instead of ``model`` itself (e.g. the float model an already-quantized one came from); it must have the same
    inputs and outputs. A model that is already quantized (QDQ or QOperator) keeps its quantization: the
    quantization passes are skipped with the reason in the report; graph passes and backends still apply.
    ``hardware`` is the machine the candidates are chosen
    for and the report describes (detected when not given); candidates are always measured where this runs.
    Bad input raises a :class:`~honed.errors.HonedError`.
    """
    started_wall = datetime.now(UTC)
    started = clock()
    job = OptimizeJob.check(
        model,
        out=out,
        data=data,
        eval_data=eval_data,
        labels=labels,
        metric=metric,
        minimum=minimum,
        maximum=maximum,
        eval_metric=eval_metric,
        mask_input=mask_input,
        mask=mask,
        iou_threshold=iou_threshold,
        batch=batch,
        time_budget=time_budget,
        objective=objective,
        backends=backends,
        shapes=shapes,
        passes=passes,
        tune_runtime=tune_runtime,
        evaluate_slower=evaluate_slower,
        recipe=recipe,
        reference=reference,
        calibration_samples=calibration_samples,
        eval_samples=eval_samples,
        measure_s=measure_s,
        final_rounds=final_rounds,
        cache_dir=cache_dir,
        use_cache=use_cache,
        html=html,
    )
    source = _SourceModel.load(job)
    hardware = hardware or detect_hardware()
    work = Path(tempfile.mkdtemp(prefix="honed-optimize-"))
    try:
        if job.recipe is not None:
            return _replay(job, Recipe.read(job.recipe), source, hardware, work)
        prepared = _prepare(job, source, work)
        writer = _Writer(
            job=job,
            source=source,
            template=_report_template(job, source, prepared, hardware, started_wall),
            calibration=prepared.calibration_key,
            versions=prepared.versions,
        )
        search, feeds = _search(job, source, prepared, hardware, work, clock, events, writer, started)
        winner = search.run()
        profiles = _profiles(search, winner, feeds, work)
        return writer.finish(winner, _state(search), profiles, elapsed_s=clock() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


@dataclass(frozen=True)
class OptimizeJob:
    """The checked, normalised arguments of one :func:`optimize` run (paths absolute, budget in seconds)."""

    model: Path
    out_dir: Path
    data: Path | None
    eval_data: Path | None
    labels: Path | None
    recipe: Path | None
    reference: Path | None
    """The model the gate compares against (``--reference``); None: the model itself."""
    cache_dir: Path | None
    metric: str
    minimum: float | None
    maximum: float | None
    user_metric: UserMetric | None
    """The user's own metric (``--eval``), loaded and checked; None: ``metric`` decides."""
    mask_input: str | None
    mask: bool
    iou_threshold: float
    batch: int
    budget_s: float
    objective: str
    backends: tuple[str, ...]
    """The backends tried (ONNX Runtime first: the baseline runs on it); empty for a replay."""
    shapes: tuple[str, ...]
    passes: tuple[str, ...] | None
    tune_runtime: bool
    evaluate_slower: bool
    calibration_samples: int
    eval_samples: int | None
    measure_s: float
    final_rounds: int
    use_cache: bool
    html: bool

    @classmethod
    def check(
        cls,
        model: str | Path,
        *,
        out: str | Path,
        data: str | Path | None,
        eval_data: str | Path | None,
        labels: str | Path | None,
        metric: str,
        minimum: float | None,
        maximum: float | None,
        eval_metric: str | Path | UserFunction | None,
        mask_input: str | None,
        mask: bool,
        iou_threshold: float,
        batch: int,
        time_budget: str | float,
        objective: str,
        backends: Sequence[str] | None,
        shapes: Sequence[str] | None,
        passes: Sequence[str] | None,
        tune_runtime: bool,
        evaluate_slower: bool,
        recipe: str | Path | None,
        reference: str | Path | None,
        calibration_samples: int,
        eval_samples: int | None,
        measure_s: float,
        final_rounds: int,
        cache_dir: str | Path | None,
        use_cache: bool,
        html: bool,
    ) -> OptimizeJob:
        """The job, or an :class:`~honed.errors.InvalidArgument` naming the flag that is wrong."""
        budget_s = parse_duration(time_budget, "the time budget")
        if objective not in OBJECTIVES:
            raise InvalidArgument(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
        if not isinstance(batch, int) or batch < 1:
            raise InvalidArgument(f"--batch must be a whole number >= 1, got {batch!r}")
        if calibration_samples < 1:
            raise InvalidArgument("calibration_samples must be >= 1")
        if mask_input is not None and not mask:
            raise InvalidArgument("--mask-input and --no-mask contradict each other; give one of them")
        if reference is not None and recipe is not None:
            raise InvalidArgument("--reference sets what a search is judged against; a --recipe replay judges nothing")
        user_metric = None
        if eval_metric is not None and recipe is None:
            if metric != "auto":
                raise InvalidArgument(f"--eval replaces --metric; drop --metric {metric} or --eval")
            if minimum is None and maximum is None:
                raise InvalidArgument("--eval needs a bound: give --min (or --max when lower values are better)")
            user_metric = load_user_metric(eval_metric)
        # Relative paths are the user's working directory's: passes run in scratch folders they would not survive.
        return cls(
            model=Path(model),
            out_dir=Path(out).absolute(),
            data=_absolute(data),
            eval_data=_absolute(eval_data),
            labels=_absolute(labels),
            recipe=_absolute(recipe),
            reference=_absolute(reference),
            cache_dir=_absolute(cache_dir),
            metric=metric,
            minimum=minimum,
            maximum=maximum,
            user_metric=user_metric,
            mask_input=mask_input,
            mask=mask,
            iou_threshold=iou_threshold,
            batch=batch,
            budget_s=budget_s,
            objective=objective,
            backends=tuple(_choose_backends(backends)) if recipe is None else (),
            shapes=tuple(shapes or ()),
            passes=tuple(passes) if passes is not None else None,
            tune_runtime=tune_runtime,
            evaluate_slower=evaluate_slower,
            calibration_samples=calibration_samples,
            eval_samples=eval_samples,
            measure_s=measure_s,
            final_rounds=final_rounds,
            use_cache=use_cache,
            html=html,
        )


@dataclass(frozen=True)
class _SourceModel:
    """The model being optimized: its file, graph, tensors and the shapes asked for."""

    path: Path
    sha256: str
    proto: Any
    inputs: list[TensorSpec]
    outputs: list[TensorSpec]
    overrides: dict[str, tuple[int, ...]]
    quantization: QuantizationInfo | None
    """How the model is already quantized (its quantization passes are then skipped); None: a float model."""
    reference: ReferenceModel | None
    """The model the gate compares against (``--reference``), checked against this one; None: this model."""

    @classmethod
    def load(cls, job: OptimizeJob) -> _SourceModel:
        path = resolve_model_path(job.model)
        proto = load_model(path)
        inputs, outputs = model_io(proto)
        overrides = parse_shape_overrides(list(job.shapes))
        concrete_shapes(inputs, overrides, batch=job.batch)  # refuses a batch the model cannot take, early
        reference = load_reference(job.reference, inputs, outputs) if job.reference is not None else None
        quantization = detect_quantization(proto)
        return cls(path, file_sha256(path), proto, inputs, outputs, overrides, quantization, reference)

    @property
    def reference_path(self) -> Path:
        """The model whose outputs the candidates are compared with."""
        return self.reference.path if self.reference is not None else self.path

    def shapes_for(self, size: int) -> dict[str, tuple[int, ...]]:
        return concrete_shapes(self.inputs, self.overrides, batch=size)


@dataclass(frozen=True)
class _Prepared:
    """The data, reference outputs and gate a search is judged against (computed once, before it starts)."""

    calib: DataSource
    calib_batch: int
    evaluation: DataSource
    reference: ReferenceOutputs
    labels: Array | None
    comparison: Comparison
    cache: CandidateCache
    versions: dict[str, str | None]
    calibration_samples: int

    @property
    def gate(self) -> AccuracyGate:
        return self.comparison.gate

    @property
    def calibration_key(self) -> dict[str, Any]:
        """What the calibration data is, for cache keys and recipes (without its path: moving it changes nothing)."""
        used = min(self.calib.samples, self.calibration_samples)
        info = {**self.calib.describe(used), "batch": self.calib_batch}
        info.pop("path")
        return info


def _prepare(job: OptimizeJob, source: _SourceModel, work: Path) -> _Prepared:
    """Load the calibration and eval data, run the original model once over the eval data, and set the gate."""
    inputs, overrides = source.inputs, source.overrides
    calib = DataSource(job.data, inputs, overrides, synthetic_samples=32, seed=0)
    if job.data is not None and calib.samples < MIN_CALIBRATION_SAMPLES:
        raise DataError(
            f"{job.data} holds {calib.samples} sample(s); calibration needs at least {MIN_CALIBRATION_SAMPLES} "
            "(100-300 representative samples calibrate well)"
        )
    if job.eval_data is not None:
        evaluation = DataSource(job.eval_data, inputs, overrides)
    elif job.data is not None:
        evaluation = calib
    else:
        evaluation = DataSource(None, inputs, overrides, synthetic_samples=_SYNTHETIC_EVAL_SAMPLES, seed=1_000)
    versions = library_versions()
    eval_batch = _first_dim(inputs) or 16
    eval_limit = job.eval_samples if job.eval_samples is not None else evaluation.samples

    reference_session = create_session(source.reference_path, RuntimeConfig())
    cache = CandidateCache(job.cache_dir or default_cache_dir(), enabled=job.use_cache)
    reference_sha = source.reference.sha256 if source.reference is not None else source.sha256
    reference_key = digest(
        {"model": reference_sha, "eval": evaluation.sha256, "limit": eval_limit, "batch": eval_batch, "v": versions}
    )
    reference_dir = cache.folder / "reference" / reference_key if cache.enabled else work / "reference"
    reference = ReferenceOutputs.cached(
        reference_session, lambda: evaluation.batches(eval_batch, eval_limit), reference_dir
    )
    labels = load_labels(job.labels, reference.samples) if job.labels is not None else None
    if job.user_metric is not None:
        name = job.user_metric.name
        gate = AccuracyGate("eval", job.minimum, job.maximum, f"{name} (chosen with --eval)", name=name)
    else:
        metric_name, why = choose_metric(job.metric, reference.output_shapes(), has_labels=labels is not None)
        gate = AccuracyGate.with_defaults(metric_name, job.minimum, job.maximum, why)
        if metric_name == "accuracy" and job.minimum is None and job.maximum is None:
            gate = _accuracy_default_gate(reference_session, reference, labels, why)
    needed = samples_needed(gate)
    if reference.samples < needed and evaluation.synthetic and job.eval_samples is None:
        # synthetic eval data: draw as many samples as the bound needs
        evaluation = DataSource(None, inputs, overrides, synthetic_samples=needed, seed=1_000)
        reference = ReferenceOutputs.compute(
            reference_session, lambda: evaluation.batches(eval_batch, needed), work / "reference-synthetic"
        )
    if reference.samples < needed:
        where = job.eval_data or job.data
        raise DataError(
            f"the eval data ({where or 'synthetic'}) holds {reference.samples} sample(s); the gate "
            f"{gate.describe()} needs at least {needed} to tell a passing model from a failing one"
        )
    mask = choose_mask(
        [s.name for s in inputs],
        reference.batches,
        reference.output_shapes(),
        requested=job.mask_input,
        disabled=not job.mask,
    )
    comparison = Comparison(gate, mask, job.user_metric, job.iou_threshold)
    if comparison.user_metric is not None:
        comparison.original(reference, labels)  # a user's metric that raises or returns no number stops here
    return _Prepared(
        calib=calib,
        calib_batch=_first_dim(inputs) or 1,
        evaluation=evaluation,
        reference=reference,
        labels=labels,
        comparison=comparison,
        cache=cache,
        versions=versions,
        calibration_samples=job.calibration_samples,
    )


def _search(
    job: OptimizeJob,
    source: _SourceModel,
    prepared: _Prepared,
    hardware: HardwareSpec,
    work: Path,
    clock: Clock,
    events: Events | None,
    writer: _Writer,
    started: float,
) -> tuple[Search, dict[str, Array]]:
    """The :class:`Search` over the prepared data, its progress going to ``events`` and ``writer``."""
    calib, calib_batch = prepared.calib, prepared.calib_batch
    feeds = _latency_feeds(prepared.evaluation, job.batch, source.shapes_for)

    def calibration_source() -> Iterator[dict[str, Array]]:
        return calib.batches(calib_batch, job.calibration_samples)

    def make_context(backend: str) -> PassContext:
        return PassContext(
            target_backend=backend,
            target_provider="cpu",
            hardware=hardware,
            calibration=calibration_source,
            work_dir=work / "passes",
            seed=0,
        )

    builder = Builder()

    def build(steps: tuple[Step, ...], backend: str, path: Path, timeout_s: float) -> Path:
        build_job = BuildJob(
            source=source.path,
            steps=steps,
            backend=backend,
            calibration=calib,
            calibration_batch=calib_batch,
            calibration_limit=job.calibration_samples,
            hardware=hardware,
            work_dir=work / "passes",
            out_path=path,
        )
        return builder.build(build_job, timeout_s)

    context_key = {
        "model": {"source": source.sha256, "calibration": prepared.calibration_key, "versions": prepared.versions},
        "eval": prepared.evaluation.sha256,
        "reference": source.reference.sha256 if source.reference is not None else None,
        "eval_samples": prepared.reference.samples,
        "labels": file_sha256(job.labels) if job.labels is not None else None,
        "batch": job.batch,
        "shapes": {k: list(v) for k, v in source.shapes_for(job.batch).items()},
        "iou_threshold": job.iou_threshold,
        "comparison": {
            "mask": prepared.comparison.mask.to_dict() if prepared.comparison.mask else None,
            "eval": prepared.comparison.user_metric.fingerprint if prepared.comparison.user_metric else None,
        },
        "hardware": hardware.to_dict(),
        "versions": prepared.versions,
    }
    settings = Settings(
        batch=job.batch,
        objective=job.objective,
        time_budget_s=job.budget_s - (clock() - started),
        backends=job.backends,
        cpus=tuple(hardware.usable_cores) or (0,),
        flops_per_item=_flops_per_item(source.proto, source.inputs, source.overrides),
        measure_s=job.measure_s,
        final_rounds=job.final_rounds,
        passes=tuple(_check_passes(job.passes)) if job.passes is not None else None,
        tune_top=Settings.tune_top if job.tune_runtime else 0,
        evaluate_slower=job.evaluate_slower,
    )
    inputs = SearchInputs(
        source=source.path,
        source_sha256=source.sha256,
        reference=prepared.reference,
        comparison=prepared.comparison,
        feeds=feeds,
        make_context=make_context,
        build=build,
        context_key=context_key,
        labels=prepared.labels,
        own_reference=source.reference is None,
    )
    chain = _Chain(events)
    search = Search(inputs, settings, prepared.cache, work, clock=clock, events=chain, hardware=hardware)
    chain.targets.append(_BestSoFar(writer, lambda: _state(search)))
    return search, feeds


@dataclass(frozen=True)
class SearchState:
    """What a search has found so far, as values: what the report is written from."""

    outcomes: tuple[Outcome, ...]
    skipped: tuple[Skipped, ...]
    untried: tuple[Untried, ...]
    stop_reason: str
    budget_exhausted: bool
    final_compared: bool
    candidate_order: ModelProfile | None
    settings: Settings
    gate: AccuracyGate
    hardware: HardwareSpec | None

    @property
    def baseline(self) -> Outcome:
        return self.outcomes[0]


def _state(search: Search) -> SearchState:
    return SearchState(
        outcomes=tuple(search.outcomes),
        skipped=tuple(search.skipped),
        untried=tuple(search.all_untried()),
        stop_reason=search.stop_reason,
        budget_exhausted=search.budget_exhausted,
        final_compared=search.final_compared,
        candidate_order=search.profile,
        settings=search.settings,
        gate=search.inputs.gate,
        hardware=search.hardware,
    )


def _report_template(
    job: OptimizeJob, source: _SourceModel, prepared: _Prepared, hardware: HardwareSpec, started: datetime
) -> OptimizeReport:
    """The parts of the report fixed before the search starts; :func:`search_report` fills in the rest."""
    calib, evaluation = prepared.calib, prepared.evaluation
    return OptimizeReport(
        status=Status.BASELINE_ONLY,
        exit_code=EXIT_BASELINE_ONLY,
        complete=False,
        winner_bench=None,
        honed_version=_honed_version(),
        created=started.isoformat(timespec="seconds"),
        model={
            "path": str(source.path),
            "sha256": source.sha256,
            "size_bytes": source.path.stat().st_size,
            "inputs": [s.to_dict() for s in source.inputs],
            "outputs": [s.to_dict() for s in source.outputs],
            "quantization": source.quantization.to_dict() if source.quantization is not None else None,
        },
        hardware=hardware.to_dict(),
        settings=ReportSettings(
            batch=job.batch,
            objective=job.objective,
            time_budget_s=job.budget_s,
            backends=job.backends,
            shapes=source.shapes_for(job.batch),
            measure_s=job.measure_s,
            final_rounds=job.final_rounds,
            passes=job.passes,
            tune_runtime=job.tune_runtime,
        ),
        gate=ReportGate(prepared.gate, job.iou_threshold, prepared.comparison.mask),
        data={
            "calibration": calib.describe(min(calib.samples, job.calibration_samples)),
            "eval": evaluation.describe(prepared.reference.samples),
            "labels": str(job.labels) if job.labels is not None else None,
            "reference": source.reference.to_dict() if source.reference is not None else None,
            "synthetic": job.data is None and job.eval_data is None,
            "eval_is_calibration": job.eval_data is None and job.data is not None,
        },
    )


def verdict(baseline_id: str, winner_id: str) -> tuple[Status, int]:
    """The report's status and the exit code: improved (0) unless the winner is the original (3)."""
    if winner_id == baseline_id:
        return Status.BASELINE_ONLY, EXIT_BASELINE_ONLY
    return Status.IMPROVED, EXIT_IMPROVED


def search_report(
    template: OptimizeReport,
    state: SearchState,
    winner: Outcome,
    *,
    winner_bench: BenchDocument | None,
    profiles: dict[str, Any],
    elapsed_s: float | None,
    recipe: Recipe | None,
) -> OptimizeReport:
    """The report of a search (final when ``recipe`` is given): a pure function of what the search found."""
    settings, baseline = state.settings, state.baseline
    rows = tuple(
        candidate_row(o, baseline=baseline, gate=state.gate, batch=settings.batch, objective=settings.objective)
        for o in state.outcomes
    )
    by_id = {r.id: r for r in rows}
    status, exit_code = verdict(baseline.id, winner.id)
    return replace(
        template,
        status=status,
        exit_code=exit_code,
        complete=recipe is not None,
        elapsed_s=round(elapsed_s, 3) if elapsed_s is not None else None,
        budget_exhausted=state.budget_exhausted,
        stop_reason=state.stop_reason,
        untried=tuple(u.to_dict() for u in state.untried),
        final_compared=state.final_compared,
        winner=by_id[winner.id],
        baseline=rows[0],
        winner_results=bench_rows(winner, settings, state.hardware),
        baseline_results=bench_rows(baseline, settings, state.hardware),
        winner_bench=winner_bench,
        candidates=rows,
        skipped=tuple(s.to_dict() for s in state.skipped),
        candidate_order=state.candidate_order.to_dict() if state.candidate_order else None,
        profile=profiles,
        recipe=recipe.to_dict() if recipe is not None else None,
    )


def _absolute(path: str | Path | None) -> Path | None:
    return None if path is None else Path(path).absolute()


def _flops_per_item(proto: Any, inputs: list[TensorSpec], overrides: dict[str, tuple[int, ...]]) -> float | None:
    """FLOPs of one item of the original model (the same arithmetic every variant does), or None when unknown."""
    from honed.model.flops import count_flops

    shapes = concrete_shapes(inputs, overrides, batch=1)
    total = count_flops(proto, shapes).total
    return float(total) if total else None


def _accuracy_default_gate(session: Any, reference: ReferenceOutputs, labels: Array | None, why: str) -> AccuracyGate:
    """accuracy >= the original model's accuracy on the labels minus 0.01."""
    from honed.evaluate import evaluate_session

    result = evaluate_session(session, reference, labels=labels)
    base = result.reference_accuracy or 0.0
    return AccuracyGate("accuracy", min=round(base - 0.01, 6), reason=f"{why}; bound: original accuracy - 0.01")


def _first_dim(inputs: list[TensorSpec]) -> int | None:
    """The fixed batch size when every input fixes its first dimension, else None."""
    dims = {s.shape[0] if s.shape else None for s in inputs}
    if len(dims) == 1:
        dim = next(iter(dims))
        if isinstance(dim, int) and dim > 0:
            return dim
    return None


def _latency_feeds(
    data: DataSource, batch: int, shapes_for: Callable[[int], dict[str, tuple[int, ...]]]
) -> dict[str, Array]:
    if data.samples >= batch:
        first = next(data.batches(batch, batch), None)
        if first is not None and all(a.shape[0] == batch for a in first.values()):
            return first
    return synthetic_feeds(data.specs, shapes_for(batch), seed=7)


def _check_passes(names: Sequence[str]) -> list[str]:
    from honed.passes import pass_names

    known = pass_names()
    chosen = [n.strip() for n in names if n.strip()]
    unknown = [n for n in chosen if n not in known]
    if unknown:
        raise InvalidArgument(f"unknown pass {unknown[0]!r}; known: {', '.join(known)}")
    return chosen


def _choose_backends(requested: Sequence[str] | None) -> list[str]:
    known = registered_backends()
    if requested is None:
        return [name for name, b in known.items() if b.available()]
    chosen = []
    for name in requested:
        name = name.strip()
        if name not in known:
            raise InvalidArgument(f"unknown backend {name!r}; known: {', '.join(sorted(known))}")
        if not known[name].available():
            raise InvalidArgument(f"backend {name!r} is not installed; install it with: pip install 'honed[{name}]'")
        if name not in chosen:
            chosen.append(name)
    if "onnxruntime" not in chosen:
        chosen.insert(0, "onnxruntime")  # the baseline runs on ONNX Runtime
    return chosen


def _profiles(search: Search, winner: Outcome, feeds: dict[str, Array], work: Path) -> dict[str, Any]:
    """Per-op time of the winner and the baseline (skipped when the budget is spent; cached like results, so
    a rerun does not profile again)."""
    result: dict[str, Any] = {}
    for name, outcome in (("baseline", search.baseline()), ("winner", winner)):
        if outcome.model_path is None or search.remaining() <= 0:
            continue
        key = search.profile_key(outcome.candidate)
        cached = search.cache.get(key)
        if cached is not None and isinstance(cached.get("rows"), list):
            result[name] = cached["rows"]
            continue
        rows = op_profile(outcome.model_path, outcome.candidate.runtime, feeds, work / "profile" / name)
        if rows:
            search.cache.put(key, {"rows": rows})
        result[name] = rows
    return result


class _Chain(Events):
    """Forwards each search event to every target in turn."""

    def __init__(self, *targets: Events | None) -> None:
        self.targets = [t for t in targets if t is not None]

    def stage(self, name: str, total: int) -> None:
        self._each(lambda t: t.stage(name, total))

    def done(self, outcome: Outcome) -> None:
        self._each(lambda t: t.done(outcome))

    def best(self, outcome: Outcome) -> None:
        self._each(lambda t: t.best(outcome))

    def _each(self, call: Callable[[Events], None]) -> None:
        for target in self.targets:
            call(target)


class _BestSoFar(Events):
    """Writes out/ at every improvement, from a snapshot of the search taken then."""

    def __init__(self, writer: _Writer, state: Callable[[], SearchState]) -> None:
        self.writer, self.state = writer, state

    def best(self, outcome: Outcome) -> None:
        self.writer.write_best(outcome, self.state())


class _Writer:
    """Writes out/: the best model so far at every improvement, the full report at the end."""

    def __init__(
        self,
        *,
        job: OptimizeJob,
        source: _SourceModel,
        template: OptimizeReport,
        calibration: dict[str, Any],
        versions: dict[str, str | None],
    ) -> None:
        self.job, self.source, self.template = job, source, template
        self.calibration, self.versions = calibration, versions

    @property
    def model_path(self) -> Path:
        return winner_file(self.job.out_dir)

    def write_best(self, outcome: Outcome, state: SearchState) -> None:
        self._write_model(outcome)
        self._write_report(self._report(outcome, state, {}, elapsed_s=None, recipe=None))

    def _write_model(self, outcome: Outcome) -> Recipe:
        if outcome.model_path is None:
            raise InvalidArgument(f"candidate {outcome.id} has no model file")
        recipe = Recipe(
            source_sha256=self.source.sha256,
            source_name=self.source.path.name,
            steps=outcome.candidate.steps,
            runtime=outcome.candidate.runtime,
            calibration=self.calibration,
            libraries=self.versions,
        )
        path = write_artifact(outcome.model_path, recipe, self.job.out_dir, _honed_version())
        recipe = replace(recipe, output_sha256=artifact_sha256(path))
        recipe.write(self.job.out_dir / RECIPE_FILE)
        return recipe

    def _report(
        self,
        winner: Outcome,
        state: SearchState,
        profiles: dict[str, Any],
        *,
        elapsed_s: float | None,
        recipe: Recipe | None,
    ) -> OptimizeReport:
        bench = None
        if state.hardware is not None and self.model_path.is_file():
            bench = bench_document(
                winner,
                state.settings,
                state.hardware,
                model_path=self.model_path.resolve(),
                model_sha256=artifact_sha256(self.model_path),
            )
        return search_report(
            self.template, state, winner, winner_bench=bench, profiles=profiles, elapsed_s=elapsed_s, recipe=recipe
        )

    def _write_report(self, report: OptimizeReport) -> Path:
        return write_json(self.job.out_dir / REPORT_FILE, report.to_dict())

    def finish(
        self, winner: Outcome, state: SearchState, profiles: dict[str, Any], *, elapsed_s: float
    ) -> OptimizeResult:
        recipe = self._write_model(winner)
        document = self._report(winner, state, profiles, elapsed_s=elapsed_s, recipe=recipe)
        report_path = self._write_report(document)
        html_path = None
        if self.job.html:
            from honed.report import write_html

            html_path = write_html(document, self.job.out_dir / "report.html")
        return OptimizeResult.of(document, self.job.out_dir, report_path, html_path)


def _replay(
    job: OptimizeJob, recipe: Recipe, source: _SourceModel, hardware: HardwareSpec, work: Path
) -> OptimizeResult:
    """Apply a recipe to the source model and write the model, recipe and a short report."""
    if recipe.source_sha256 != source.sha256:
        raise InvalidArgument(
            f"the recipe was made from a model with sha256 {recipe.source_sha256[:12]}..., but {source.path} has "
            f"{source.sha256[:12]}...; give the recipe the model it was made from"
        )
    ctx = PassContext(
        target_backend=recipe.runtime.backend,
        hardware=hardware,
        calibration=_replay_calibration(recipe, job.data, source) if recipe.needs_calibration else None,
        work_dir=work / "passes",
        seed=0,
    )
    built = build_artifact(source.path, recipe.steps, ctx, work / "replayed.onnx")
    out_dir = job.out_dir
    path = write_artifact(built, recipe, out_dir, _honed_version())
    sha = artifact_sha256(path)
    now = library_versions()
    replayed = replace(recipe, output_sha256=sha, libraries=now)
    replayed.write(out_dir / RECIPE_FILE)
    document = OptimizeReport(
        status=Status.REPLAYED,
        exit_code=EXIT_IMPROVED,
        complete=True,
        winner_bench=None,
        replay=Replay(
            expected_sha256=recipe.output_sha256,
            output_sha256=sha,
            reproduced=recipe.output_sha256 is None or recipe.output_sha256 == sha,
            library_changes={
                k: {"recipe": recipe.libraries.get(k), "now": v}
                for k, v in now.items()
                if recipe.libraries and recipe.libraries.get(k) != v
            },
        ),
        honed_version=_honed_version(),
        model={"path": str(source.path), "sha256": source.sha256},
        recipe=replayed.to_dict(),
    )
    report_path = write_json(out_dir / REPORT_FILE, document.to_dict())
    return OptimizeResult.of(document, out_dir, report_path, None)


def _replay_calibration(
    recipe: Recipe, data: Path | None, source: _SourceModel
) -> Callable[[], Iterator[dict[str, Array]]]:
    """The calibration batches the recipe was made with: the same .npz (checked by hash) or the same synthetic draw."""
    info = recipe.calibration
    if info.get("source") == "npz":
        if data is None:
            raise DataError("this recipe calibrates with an .npz file; give the same file with --data")
        if file_sha256(data) != info.get("sha256"):
            raise DataError(
                f"{data} is not the calibration data the recipe was made with (sha256 differs); "
                "give the same --data file to reproduce the model"
            )
        calib = DataSource(data, source.inputs, source.overrides)
    else:
        samples = int(info.get("samples", 32))
        calib = DataSource(None, source.inputs, source.overrides, synthetic_samples=samples, seed=0)
    batch = int(info.get("batch", 1))
    limit = int(info.get("samples_used", calib.samples))

    def calibration_source() -> Iterator[dict[str, Array]]:
        return calib.batches(batch, limit)

    return calibration_source


def _honed_version() -> str:
    from honed import __version__

    return str(__version__)


__all__ = [
    "EXIT_BASELINE_ONLY",
    "EXIT_IMPROVED",
    "OptimizeJob",
    "OptimizeResult",
    "SearchState",
    "digest",
    "optimize",
    "parse_duration",
    "search_report",
    "verdict",
]
