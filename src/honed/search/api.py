"""``honed.optimize``: the one function the CLI, the demo and the benchmarks call.

It checks the inputs (model, data, labels, bounds), runs the original model once over the eval data as the
reference, runs the :class:`~honed.search.engine.Search`, and writes ``out/``: ``model.onnx`` (the winner,
stamped with provenance), ``recipe.json``, ``report.json`` and ``report.html``. The best model found so far
is written as soon as it is found, so an interrupted run still leaves a usable ``out/``. With ``recipe``
given, it replays that recipe instead of searching.
"""

from __future__ import annotations

import json
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import numpy as np

from honed.canonical import digest
from honed.data import synthetic_feeds
from honed.errors import DataError, InvalidArgument
from honed.evaluate import AccuracyGate, ReferenceOutputs, choose_metric, load_labels, samples_needed
from honed.hardware import HardwareSpec, detect_hardware
from honed.model.loader import file_sha256, load_model, model_io, resolve_model_path, save_model
from honed.model.spec import TensorSpec, concrete_shapes, parse_shape_overrides
from honed.passes import PassContext
from honed.runtime import RuntimeConfig, create_session
from honed.runtime import backends as registered_backends
from honed.search.build import Builder, BuildJob
from honed.search.cache import CandidateCache, default_cache_dir
from honed.search.candidates import Step
from honed.search.datasource import DataSource
from honed.search.document import REPORT_SCHEMA
from honed.search.engine import OBJECTIVES, Clock, Events, Outcome, Search, SearchInputs, Settings
from honed.search.profile import op_profile
from honed.search.recipe import Recipe, build_model, library_versions, stamp_provenance
from honed.search.results import bench_document, bench_rows, candidate_row, pareto_front
from honed.units import parse_duration

Array = np.ndarray[Any, Any]

EXIT_IMPROVED = 0
EXIT_BASELINE_ONLY = 3
MIN_CALIBRATION_SAMPLES = 8
_SYNTHETIC_EVAL_SAMPLES = 64


@dataclass
class OptimizeResult:
    """What :func:`optimize` produced. ``exit_code`` is 0 when a faster model passed the gate, 3 when only the
    original did (it is still written)."""

    out_dir: Path
    model_path: Path
    recipe_path: Path
    report_path: Path
    html_path: Path | None
    report: dict[str, Any]
    exit_code: int

    @property
    def improved(self) -> bool:
        return self.exit_code == EXIT_IMPROVED

    @property
    def winner(self) -> dict[str, Any]:
        return dict(self.report["winner"])

    @property
    def speedup(self) -> float | None:
        value = self.report["winner"].get("speedup")
        return float(value) if value is not None else None


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
    ``objective`` is ``latency`` (p50 at ``batch``) or ``throughput``. ``backends`` defaults to every installed
    backend; ``passes`` limits the passes tried to those names; ``tune_runtime=False`` skips the thread/affinity/
    spinning variants; ``evaluate_slower=True`` judges fidelity even of candidates first measured slower than
    the original (by default they are marked ``slower`` and their eval time is saved), and lets a rejected INT8
    candidate measured slower than the original still get the sensitive-layer fallback.
    ``recipe`` replays a recipe.json instead of searching. ``hardware`` is the machine the candidates are chosen
    for and the report describes (detected when not given); candidates are always measured where this runs.
    Bad input raises a :class:`~honed.errors.HonedError`.
    """
    started_wall = datetime.now(UTC)
    started = clock()
    # Relative paths are the user's working directory's: passes run in scratch folders that they would not survive.
    data, eval_data, labels, recipe = (_absolute(p) for p in (data, eval_data, labels, recipe))
    out, cache_dir = Path(out).absolute(), _absolute(cache_dir)
    budget_s = parse_duration(time_budget, "the time budget")
    if objective not in OBJECTIVES:
        raise InvalidArgument(f"--objective must be one of {', '.join(OBJECTIVES)}; got {objective!r}")
    if not isinstance(batch, int) or batch < 1:
        raise InvalidArgument(f"--batch must be a whole number >= 1, got {batch!r}")
    if calibration_samples < 1:
        raise InvalidArgument("calibration_samples must be >= 1")
    out_dir = Path(out)
    source = resolve_model_path(model)
    proto = load_model(source)
    inputs, outputs = model_io(proto)
    overrides = parse_shape_overrides(list(shapes or ()))
    concrete_shapes(inputs, overrides, batch=batch)  # refuses a batch the model cannot take, early

    def shapes_for(size: int) -> dict[str, tuple[int, ...]]:
        return concrete_shapes(inputs, overrides, batch=size)

    source_sha = file_sha256(source)
    hardware = hardware or detect_hardware()
    work = Path(tempfile.mkdtemp(prefix="honed-optimize-"))
    try:
        if recipe is not None:
            return _replay(
                Recipe.read(Path(recipe)), source, source_sha, out_dir, data, inputs, overrides, hardware, work
            )
        chosen_backends = _choose_backends(backends)
        calib = DataSource(Path(data) if data else None, inputs, overrides, synthetic_samples=32, seed=0)
        if data is not None and calib.samples < MIN_CALIBRATION_SAMPLES:
            raise DataError(
                f"{data} holds {calib.samples} sample(s); calibration needs at least {MIN_CALIBRATION_SAMPLES} "
                "(100-300 representative samples calibrate well)"
            )
        if eval_data is not None:
            evaluation = DataSource(Path(eval_data), inputs, overrides)
        elif data is not None:
            evaluation = calib
        else:
            evaluation = DataSource(None, inputs, overrides, synthetic_samples=_SYNTHETIC_EVAL_SAMPLES, seed=1_000)
        versions = library_versions()
        eval_batch = _first_dim(inputs) or 16
        calib_batch = _first_dim(inputs) or 1
        eval_limit = eval_samples if eval_samples is not None else evaluation.samples

        baseline_session = create_session(source, RuntimeConfig())
        cache = CandidateCache(Path(cache_dir) if cache_dir else default_cache_dir(), enabled=use_cache)
        reference_key = digest(
            {"model": source_sha, "eval": evaluation.sha256, "limit": eval_limit, "batch": eval_batch, "v": versions}
        )
        reference_dir = cache.folder / "reference" / reference_key if cache.enabled else work / "reference"
        reference = ReferenceOutputs.cached(
            baseline_session, lambda: evaluation.batches(eval_batch, eval_limit), reference_dir
        )
        label_array = load_labels(Path(labels), reference.samples) if labels is not None else None
        metric_name, why = choose_metric(metric, reference.output_shapes(), has_labels=label_array is not None)
        gate = AccuracyGate.with_defaults(metric_name, minimum, maximum, why)
        if metric_name == "accuracy" and minimum is None and maximum is None:
            gate = _accuracy_default_gate(baseline_session, reference, label_array, why)
        needed = samples_needed(gate)
        if reference.samples < needed and evaluation.synthetic and eval_samples is None:
            # synthetic eval data: draw as many samples as the bound needs
            evaluation = DataSource(None, inputs, overrides, synthetic_samples=needed, seed=1_000)
            eval_limit = needed
            reference = ReferenceOutputs.compute(
                baseline_session, lambda: evaluation.batches(eval_batch, eval_limit), work / "reference-synthetic"
            )
        if reference.samples < needed:
            where = eval_data or data
            raise DataError(
                f"the eval data ({where or 'synthetic'}) holds {reference.samples} sample(s); the gate "
                f"{gate.describe()} needs at least {needed} to tell a passing model from a failing one"
            )
        feeds = _latency_feeds(evaluation, batch, shapes_for)

        def calibration_source() -> Iterator[dict[str, Array]]:
            return calib.batches(calib_batch, calibration_samples)

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
            job = BuildJob(
                source=source,
                steps=steps,
                backend=backend,
                calibration=calib,
                calibration_batch=calib_batch,
                calibration_limit=calibration_samples,
                hardware=hardware,
                work_dir=work / "passes",
                out_path=path,
            )
            return builder.build(job, timeout_s)

        calib_info = {**calib.describe(min(calib.samples, calibration_samples)), "batch": calib_batch}
        calib_info.pop("path")
        context_key = {
            "model": {"source": source_sha, "calibration": calib_info, "versions": versions},
            "eval": evaluation.sha256,
            "eval_samples": reference.samples,
            "labels": file_sha256(Path(labels)) if labels is not None else None,
            "batch": batch,
            "shapes": {k: list(v) for k, v in shapes_for(batch).items()},
            "iou_threshold": iou_threshold,
            "hardware": hardware.to_dict(),
            "versions": versions,
        }
        settings = Settings(
            batch=batch,
            objective=objective,
            time_budget_s=budget_s - (clock() - started),
            backends=tuple(chosen_backends),
            cpus=tuple(hardware.usable_cores) or (0,),
            flops_per_item=_flops_per_item(proto, inputs, overrides),
            measure_s=measure_s,
            final_rounds=final_rounds,
            passes=tuple(_check_passes(passes)) if passes is not None else None,
            tune_top=Settings.tune_top if tune_runtime else 0,
            evaluate_slower=evaluate_slower,
        )
        inputs_ = SearchInputs(
            source=source,
            source_sha256=source_sha,
            reference=reference,
            gate=gate,
            feeds=feeds,
            make_context=make_context,
            build=build,
            context_key=context_key,
            labels=label_array,
            iou_threshold=iou_threshold,
        )
        writer = _Writer(
            out_dir=out_dir,
            source=source,
            source_sha=source_sha,
            calibration=calib_info,
            versions=versions,
            base_report={
                "schema": REPORT_SCHEMA,
                "honed_version": _honed_version(),
                "created": started_wall.isoformat(timespec="seconds"),
                "model": {
                    "path": str(source),
                    "sha256": source_sha,
                    "size_bytes": source.stat().st_size,
                    "inputs": [s.to_dict() for s in inputs],
                    "outputs": [s.to_dict() for s in outputs],
                },
                "hardware": hardware.to_dict(),
                "settings": {
                    "batch": batch,
                    "objective": objective,
                    "time_budget_s": budget_s,
                    "backends": list(chosen_backends),
                    "shapes": {k: list(v) for k, v in shapes_for(batch).items()},
                    "measure_s": measure_s,
                    "final_rounds": final_rounds,
                    "passes": list(passes) if passes is not None else None,
                    "tune_runtime": tune_runtime,
                },
                "gate": gate.to_dict() | {"describe": gate.describe(), "iou_threshold": iou_threshold},
                "data": {
                    "calibration": calib.describe(min(calib.samples, calibration_samples)),
                    "eval": evaluation.describe(reference.samples),
                    "labels": str(labels) if labels is not None else None,
                    "synthetic": data is None and eval_data is None,
                    "eval_is_calibration": eval_data is None and data is not None,
                },
            },
            html=html,
        )
        search = Search(inputs_, settings, cache, work, clock=clock, events=_Chain(events, writer), hardware=hardware)
        writer.search = search
        winner = search.run()
        profiles = _profiles(search, winner, feeds, work)
        return writer.finish(winner, profiles, elapsed_s=clock() - started)
    finally:
        shutil.rmtree(work, ignore_errors=True)


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
    """Per-op time of the winner and the baseline (skipped when the budget is spent)."""
    result: dict[str, Any] = {}
    for name, outcome in (("baseline", search.baseline()), ("winner", winner)):
        if outcome.model_path is None or search.remaining() <= 0:
            continue
        result[name] = op_profile(outcome.model_path, outcome.candidate.runtime, feeds, work / "profile" / name)
    return result


class _Chain(Events):
    def __init__(self, *targets: Events | None) -> None:
        self.targets = [t for t in targets if t is not None]

    def stage(self, name: str, total: int) -> None:
        for t in self.targets:
            t.stage(name, total)

    def done(self, outcome: Outcome) -> None:
        for t in self.targets:
            t.done(outcome)

    def best(self, outcome: Outcome) -> None:
        for t in self.targets:
            t.best(outcome)


class _Writer(Events):
    """Writes out/: the best model so far at every improvement, the full report at the end."""

    def __init__(
        self,
        *,
        out_dir: Path,
        source: Path,
        source_sha: str,
        calibration: dict[str, Any],
        versions: dict[str, str | None],
        base_report: dict[str, Any],
        html: bool,
    ) -> None:
        self.out_dir = out_dir
        self.source = source
        self.source_sha = source_sha
        self.calibration = calibration
        self.versions = versions
        self.base_report = base_report
        self.html = html
        self.search: Search | None = None

    def best(self, outcome: Outcome) -> None:
        self._write_model(outcome)
        if self.search is not None:
            self._write_report(self._report(outcome, {}, elapsed_s=None, final=False))

    def _recipe(self, outcome: Outcome) -> Recipe:
        return Recipe(
            source_sha256=self.source_sha,
            source_name=self.source.name,
            steps=outcome.candidate.steps,
            runtime=outcome.candidate.runtime,
            calibration=self.calibration,
            libraries=self.versions,
        )

    def _write_model(self, outcome: Outcome) -> Recipe:
        if outcome.model_path is None:
            raise InvalidArgument(f"candidate {outcome.id} has no model file")
        recipe = self._recipe(outcome)
        self.out_dir.mkdir(parents=True, exist_ok=True)
        model = stamp_provenance(load_model(outcome.model_path), recipe, _honed_version())
        path = save_model(model, self.out_dir / "model.onnx")
        recipe = Recipe(**{**recipe.__dict__, "output_sha256": file_sha256(path)})
        recipe.write(self.out_dir / "recipe.json")
        return recipe

    def _report(
        self, winner: Outcome, profiles: dict[str, Any], *, elapsed_s: float | None, final: bool
    ) -> dict[str, Any]:
        search = self.search
        if search is None:
            raise RuntimeError("writer used before the search started")
        baseline = search.baseline()
        gate = search.inputs.gate
        settings = search.settings
        rows = [
            candidate_row(o, baseline=baseline, gate=gate, batch=settings.batch, objective=settings.objective)
            for o in search.outcomes
        ]
        winner_row = next(r for r in rows if r["id"] == winner.id)
        baseline_row = rows[0]
        improved = winner is not baseline
        return {
            **self.base_report,
            "complete": final,
            "status": "improved" if improved else "baseline-only",
            "exit_code": EXIT_IMPROVED if improved else EXIT_BASELINE_ONLY,
            "elapsed_s": round(elapsed_s, 3) if elapsed_s is not None else None,
            "budget_exhausted": search.budget_exhausted,
            "final_compared": search.final_compared,
            "winner": winner_row,
            "baseline": baseline_row,
            "winner_results": [r.to_dict() for r in bench_rows(winner, settings, search.hardware)],
            "baseline_results": [r.to_dict() for r in bench_rows(baseline, settings, search.hardware)],
            "winner_bench": self._winner_bench(winner, search),
            "candidates": rows,
            "skipped": [s.to_dict() for s in search.skipped],
            "candidate_order": search.profile.to_dict() if search.profile else None,
            "pareto": pareto_front(rows, gate.higher_is_better),
            "profile": profiles,
            "closest": _closest(rows),
        }

    def _winner_bench(self, winner: Outcome, search: Search) -> dict[str, Any] | None:
        model = self.out_dir / "model.onnx"
        if search.hardware is None or not model.is_file():
            return None
        doc = bench_document(
            winner, search.settings, search.hardware, model_path=model.resolve(), model_sha256=file_sha256(model)
        )
        return doc.to_dict() if doc is not None else None

    def _write_report(self, report: dict[str, Any]) -> Path:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        path = self.out_dir / "report.json"
        tmp = path.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(report, indent=2, default=str) + "\n")
        tmp.replace(path)
        return path

    def finish(self, winner: Outcome, profiles: dict[str, Any], *, elapsed_s: float) -> OptimizeResult:
        recipe = self._write_model(winner)
        report = self._report(winner, profiles, elapsed_s=elapsed_s, final=True)
        report["recipe"] = recipe.to_dict()
        report_path = self._write_report(report)
        html_path = None
        if self.html:
            from honed.report import write_html

            html_path = write_html(report, self.out_dir / "report.html")
        return OptimizeResult(
            out_dir=self.out_dir,
            model_path=self.out_dir / "model.onnx",
            recipe_path=self.out_dir / "recipe.json",
            report_path=report_path,
            html_path=html_path,
            report=report,
            exit_code=int(report["exit_code"]),
        )


def _closest(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Rejected candidates that were faster than the baseline, nearest to the bound first: how close each came."""
    rejected = [r for r in rows if r["status"] == "rejected" and r.get("margin") is not None]
    rejected.sort(key=lambda r: -float(r["margin"]))
    return [
        {
            "id": r["id"],
            "label": r["label"],
            "metric_value": r["metric_value"],
            "margin": r["margin"],
            "speedup": r["speedup"],
        }
        for r in rejected
    ]


def _replay(
    recipe: Recipe,
    source: Path,
    source_sha: str,
    out_dir: Path,
    data: str | Path | None,
    inputs: list[TensorSpec],
    overrides: dict[str, tuple[int, ...]],
    hardware: HardwareSpec,
    work: Path,
) -> OptimizeResult:
    """Apply a recipe to ``source`` and write the model, recipe and a short report."""
    if recipe.source_sha256 != source_sha:
        raise InvalidArgument(
            f"the recipe was made from a model with sha256 {recipe.source_sha256[:12]}..., but {source} has "
            f"{source_sha[:12]}...; give the recipe the model it was made from"
        )
    calib_info = recipe.calibration
    calibration = None
    if recipe.needs_calibration:
        if calib_info.get("source") == "npz":
            if data is None:
                raise DataError("this recipe calibrates with an .npz file; give the same file with --data")
            if file_sha256(Path(data)) != calib_info.get("sha256"):
                raise DataError(
                    f"{data} is not the calibration data the recipe was made with (sha256 differs); "
                    "give the same --data file to reproduce the model"
                )
            calib = DataSource(Path(data), inputs, overrides)
        else:
            samples = int(calib_info.get("samples", 32))
            calib = DataSource(None, inputs, overrides, synthetic_samples=samples, seed=0)
        calib_batch = int(calib_info.get("batch", 1))
        limit = int(calib_info.get("samples_used", calib.samples))

        def calibration_source() -> Iterator[dict[str, Array]]:
            return calib.batches(calib_batch, limit)

        calibration = calibration_source
    ctx = PassContext(
        target_backend=recipe.runtime.backend,
        hardware=hardware,
        calibration=calibration,
        work_dir=work / "passes",
        seed=0,
    )
    model = stamp_provenance(build_model(source, recipe.steps, ctx), recipe, _honed_version())
    out_dir.mkdir(parents=True, exist_ok=True)
    path = save_model(model, out_dir / "model.onnx")
    sha = file_sha256(path)
    replayed = Recipe(**{**recipe.__dict__, "output_sha256": sha, "libraries": library_versions()})
    replayed.write(out_dir / "recipe.json")
    reproduced = recipe.output_sha256 is None or recipe.output_sha256 == sha
    report = {
        "schema": REPORT_SCHEMA,
        "honed_version": _honed_version(),
        "mode": "replay",
        "model": {"path": str(source), "sha256": source_sha},
        "recipe": replayed.to_dict(),
        "expected_sha256": recipe.output_sha256,
        "output_sha256": sha,
        "reproduced": reproduced,
        "library_changes": {
            k: {"recipe": recipe.libraries.get(k), "now": v}
            for k, v in library_versions().items()
            if recipe.libraries and recipe.libraries.get(k) != v
        },
        "exit_code": EXIT_IMPROVED,
        "status": "replayed",
    }
    report_path = out_dir / "report.json"
    report_path.write_text(json.dumps(report, indent=2) + "\n")
    return OptimizeResult(out_dir, path, out_dir / "recipe.json", report_path, None, report, EXIT_IMPROVED)


def _honed_version() -> str:
    from honed import __version__

    return str(__version__)


__all__ = ["EXIT_BASELINE_ONLY", "EXIT_IMPROVED", "OptimizeResult", "digest", "optimize", "parse_duration"]
