"""``honed optimize``: find the fastest model inside the accuracy bound (calls :func:`honed.search.optimize`)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.progress import Progress, TaskID

from honed.cli.common import (
    console,
    err_console,
    mlflow_uri_option,
    print_json,
    progress_bar,
    registry_for,
    use_mlflow_uri,
)
from honed.cli.options import RegisterRegistryUrl
from honed.search import OptimizeResult, optimize
from honed.search.engine import Events, Outcome

if TYPE_CHECKING:
    from honed.intake.mlflow import LoggedVersion, MlflowModel

COMMANDS = {
    "optimize": "Find the fastest variant of MODEL on this machine whose accuracy stays inside the bound.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


class OptimizeProgress(Events):
    """A rich progress bar per search stage, on stderr, with one line per finished candidate."""

    def __init__(self, progress: Progress) -> None:
        self.progress = progress
        self.task: TaskID | None = None

    def stage(self, name: str, total: int) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=self.progress.tasks[-1].total)
        self.task = self.progress.add_task(name, total=max(total, 1))

    def done(self, outcome: Outcome) -> None:
        lat = f"{outcome.latency.p50_ms:.3g} ms" if outcome.latency else "–"
        why = f" — {_clip(outcome.reason, 70)}" if outcome.reason else ""
        label = _clip(outcome.candidate.label(), 70)
        self.progress.console.print(
            f"  {outcome.id} {outcome.status:9} {lat:>9}  {label}{why}", overflow="ellipsis", no_wrap=True
        )
        if self.task is not None and outcome.id != "c00":
            self.progress.advance(self.task)


def show_result(result: OptimizeResult) -> None:
    """The candidates table and the verdict of a search, or what a replay reproduced."""
    from honed.report import candidates_table, verdict
    from honed.report.terminal import stopped

    document = result.document
    replay = document.replay
    if replay is None:
        console.print(candidates_table(document))
        console.print(verdict(document))
        if (line := stopped(document)) is not None:
            console.print(line, markup=False)
    elif replay.reproduced:
        console.print(f"reproduced: {result.model_path} sha256 {replay.output_sha256}")
    else:
        err_console.print(
            f"[yellow]warning:[/] {result.model_path} sha256 {replay.output_sha256} differs from the "
            f"recipe's {replay.expected_sha256}; library versions that changed: "
            f"{', '.join(replay.library_changes) or 'none'}"
        )


def _clip(text: str, width: int) -> str:
    return text if len(text) <= width else text[: width - 1] + "…"


def register(app: typer.Typer) -> None:
    @app.command("optimize")
    def optimize_cmd(
        model: Path = typer.Argument(
            ...,
            help="ONNX model file (or a folder holding model.onnx), or an MLflow ONNX model: models:/NAME/VERSION, "
            "models:/NAME@ALIAS or runs:/RUN_ID/PATH.",
        ),
        out: Path = typer.Option(Path("out"), "--out", "-o", help="Output folder: model.onnx, recipe.json, report.*"),
        data: Path | None = typer.Option(None, "--data", help="Calibration data: .npz with one array per input."),
        eval_data: Path | None = typer.Option(None, "--eval-data", help="Eval data (.npz); defaults to --data."),
        labels: Path | None = typer.Option(None, "--labels", help="Labels (.npy/.npz), one per eval sample."),
        metric: str = typer.Option(
            "auto", "--metric", help="agreement, cosine, pooled-cosine, iou, rel-error, sqnr, accuracy or auto."
        ),
        minimum: float | None = typer.Option(None, "--min", help="Lower bound on the metric (e.g. 0.99)."),
        maximum: float | None = typer.Option(None, "--max", help="Upper bound on the metric (e.g. rel-error)."),
        eval_metric: str | None = typer.Option(
            None,
            "--eval",
            help="Your own metric, FILE.py:FUNCTION: f(candidate_outputs, reference_outputs, labels) -> float.",
        ),
        mask_input: str | None = typer.Option(
            None, "--mask-input", help="The attention-mask input whose padded (0) positions the gate leaves out."
        ),
        no_mask: bool = typer.Option(False, "--no-mask", help="Compare every position, padded ones included."),
        iou_threshold: float = typer.Option(0.3, "--iou-threshold", help="Threshold for the iou metric's maps."),
        batch: int = typer.Option(1, "--batch", "-b", help="Batch size latency is measured at."),
        time_budget: str = typer.Option("10m", "--time-budget", help="Wall-clock budget, e.g. 90s, 10m, 1h."),
        objective: str = typer.Option("latency", "--objective", help="latency (p50) or throughput."),
        backends: str | None = typer.Option(
            None, "--backends", help="Comma-separated backends to try (default: every installed one)."
        ),
        shape: list[str] = typer.Option([], "--shape", help="Fix an input's shape: NAME=DIMxDIM (repeatable)."),
        passes: str | None = typer.Option(None, "--passes", help="Comma-separated passes to try (default: all)."),
        no_tune: bool = typer.Option(False, "--no-tune", help="Skip thread/affinity/spinning variants."),
        recipe: Path | None = typer.Option(None, "--recipe", help="Replay a recipe.json instead of searching."),
        reference: Path | None = typer.Option(
            None,
            "--reference",
            help="Compare against this model instead of MODEL (e.g. the float model a quantized one came from).",
        ),
        calibration_samples: int = typer.Option(128, "--calibration-samples", help="Calibration samples used."),
        eval_samples: int | None = typer.Option(None, "--eval-samples", help="Use only the first N eval samples."),
        measure: float = typer.Option(1.0, "--measure", help="Seconds per latency measurement."),
        rounds: int = typer.Option(5, "--rounds", help="Rounds of the interleaved final comparison."),
        cache_dir: Path | None = typer.Option(None, "--cache-dir", help="Candidate cache (default ~/.cache/honed)."),
        no_cache: bool = typer.Option(False, "--no-cache", help="Neither read nor write the candidate cache."),
        as_json: bool = typer.Option(False, "--json", help="Print report.json to stdout instead of the table."),
        register_as: str | None = typer.Option(
            None, "--register", help="Register the source and the result as versions of this model (with lineage)."
        ),
        registry_url: RegisterRegistryUrl = None,
        to_mlflow: str | None = typer.Option(
            None,
            "--to-mlflow",
            help="Log the winner as a new version of this MLflow registered model (onnx flavour, with honed's "
            "runtime options, recipe and report) on --mlflow-uri; searches the onnxruntime backend only.",
        ),
        mlflow_uri: str | None = mlflow_uri_option(),
    ) -> None:
        """Find the fastest variant of MODEL on this machine whose accuracy stays inside the bound.

        Exit 0: a faster model passed; 3: only the original qualifies (it is still written); 2: bad input.
        """
        use_mlflow_uri(mlflow_uri)
        source_model = _fetch_once(model)
        if source_model is not None:  # one version for the whole command, even if the alias moves meanwhile
            model = source_model.model_file
        if to_mlflow is not None:
            from honed.intake.mlflow import check_writable, mlflow_backends

            check_writable(to_mlflow)
            backends = mlflow_backends(backends)
        registry = registry_for(register_as, registry_url)

        with progress_bar(disable=as_json) as progress:
            result = optimize(
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
                mask=not no_mask,
                iou_threshold=iou_threshold,
                batch=batch,
                time_budget=time_budget,
                objective=objective,
                backends=[b for b in backends.split(",") if b.strip()] if backends else None,
                shapes=shape,
                passes=[p for p in passes.split(",") if p.strip()] if passes else None,
                tune_runtime=not no_tune,
                recipe=recipe,
                reference=reference,
                calibration_samples=calibration_samples,
                eval_samples=eval_samples,
                measure_s=measure,
                final_rounds=rounds,
                cache_dir=cache_dir,
                use_cache=not no_cache,
                events=OptimizeProgress(progress),
            )
        if as_json:
            print_json(result.report)
        else:
            show_result(result)
            if result.document.replay is None:
                console.print(
                    f"wrote {result.model_path}, {result.recipe_path}, {result.report_path}, {result.html_path}"
                )
        logged = _write_mlflow(model, source_model, result, to_mlflow) if to_mlflow is not None else None
        if registry is not None and register_as is not None:
            from honed.registry import default_actor, register_optimized

            tags = [f"mlflow={logged.uri}"] if logged is not None else []
            parent, child = register_optimized(
                registry, model, result.out_dir, register_as, actor=default_actor(), tags=tags
            )
            err_console.print(f"registered {child.ref} (sha256 {child.sha256[:12]}), optimized from {parent.ref}")
            if logged is not None:
                from honed.intake.mlflow import tag_version

                tag_version(logged, "honed.registry_ref", child.ref)
        raise typer.Exit(result.exit_code)


def _fetch_once(model: Path) -> MlflowModel | None:
    """The MLflow model a ``models:/`` or ``runs:/`` MODEL names, fetched; None for a path."""
    from honed.model.loader import is_mlflow_uri

    if not is_mlflow_uri(model):
        return None
    from honed.intake.mlflow import fetch

    return fetch(str(model))


def _write_mlflow(model: Path, source_model: MlflowModel | None, result: OptimizeResult, name: str) -> LoggedVersion:
    """Log the winner to MLflow as a new version of ``name``, linked to its source (an MLflow URI or a path)."""
    from honed import __version__
    from honed.intake.mlflow import log_winner
    from honed.model.loader import file_sha256

    lineage = {
        "honed.version": __version__,
        "honed.sha256": file_sha256(result.model_path),
        "honed.exit_code": str(result.exit_code),
    }
    logged = log_winner(
        result.out_dir, name, source=None if source_model else str(model), source_model=source_model, lineage=lineage
    )
    err_console.print(f"logged {logged.uri} to MLflow at {logged.tracking_uri} (run {logged.run_id})")
    return logged
