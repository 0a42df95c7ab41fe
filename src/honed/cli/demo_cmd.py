"""``honed demo``: the main job on the built-in example (Magika), end to end on this machine."""

from __future__ import annotations

from pathlib import Path

import typer

from honed.bench import BenchSettings, run_bench
from honed.cli.bench_cmd import render_report
from honed.cli.common import console, parse_int_list, progress_bar
from honed.cli.inspect_cmd import render_info
from honed.cli.optimize_cmd import OptimizeProgress, show_result
from honed.demo import (
    DEMO_CALIBRATION_SAMPLES,
    DEMO_EVAL_SAMPLES,
    DEMO_MIN_AGREEMENT,
    MagikaFeatureConfig,
    build_magika_dataset,
    build_magika_datasets,
    magika_model_dir,
)
from honed.jsonio import write_json
from honed.model.info import inspect_model
from honed.units import parse_duration

COMMANDS = {
    "demo": "Inspect, benchmark and optimize Google's Magika model on real files from this machine.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def demo(
    out: Path = typer.Option(Path("honed-demo"), "--out", "-o", help="Folder for the inputs and results."),
    samples: int = typer.Option(256, "--samples", help="How many real files to turn into bench inputs."),
    duration: str = typer.Option("2s", "--duration", help="Time per bench case."),
    batch: str = typer.Option(
        "1,64", "--batch", "-b", help="Batch sizes to bench, comma-separated; the first is the one optimized."
    ),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs before each bench case."),
    time_budget: str = typer.Option("3m", "--time-budget", help="Wall-clock budget of the optimize step."),
    no_optimize: bool = typer.Option(False, "--no-optimize", help="Stop after inspect and bench."),
) -> None:
    """Inspect, benchmark and optimize Google's Magika model on real files from this machine."""
    if not no_optimize:
        parse_duration(time_budget, "--time-budget")  # a bad --time-budget fails now, not after the bench
    model_dir = magika_model_dir()
    model = model_dir / "model.onnx"
    console.rule("[bold]honed demo[/bold]: Magika file-type classifier")
    config = MagikaFeatureConfig.from_model_dir(model_dir)
    data = build_magika_dataset(out / "magika-inputs.npz", samples=samples, config=config)
    console.print(f"1. inputs: features of {samples} real files from the Python standard library -> {data}")

    console.print("2. inspect")
    render_info(inspect_model(model))

    batches = parse_int_list(batch, "--batch")
    console.print(f"3. bench at batch {', '.join(map(str, batches))}, with per-op profile")
    settings = BenchSettings(
        batches=batches, duration_s=parse_duration(duration, "--duration"), warmup=warmup, profile=True
    )
    report = run_bench(model, settings, data=data)
    render_report(report)
    bench_json = write_json(out / "bench.json", report.to_dict())
    console.print(f"wrote {bench_json}")
    if no_optimize:
        return
    _optimize(model, config, out, batch=batches[0], time_budget=time_budget)


def _optimize(model: Path, config: MagikaFeatureConfig, out: Path, *, batch: int, time_budget: str) -> None:
    from honed.search import optimize

    calib, evals = build_magika_datasets(
        out / "optimize-data", calibration=DEMO_CALIBRATION_SAMPLES, evaluation=DEMO_EVAL_SAMPLES, config=config
    )
    console.print(
        f"4. optimize at batch {batch} within {time_budget}: the fastest variant whose top-1 agreement with the "
        f"original stays >= {DEMO_MIN_AGREEMENT} on {DEMO_EVAL_SAMPLES} files it was not calibrated on "
        f"(calibration: {DEMO_CALIBRATION_SAMPLES} other files)"
    )
    with progress_bar() as progress:
        result = optimize(
            model,
            out=out / "optimized",
            data=calib,
            eval_data=evals,
            metric="agreement",
            minimum=DEMO_MIN_AGREEMENT,
            batch=batch,
            time_budget=time_budget,
            events=OptimizeProgress(progress),
        )
    show_result(result)
    console.print(f"wrote {result.model_path} and {result.recipe_path}", soft_wrap=True)
    console.print(f"report: {result.report_path} and {result.html_path}", soft_wrap=True)


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
