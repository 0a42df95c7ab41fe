"""``honed demo``: the main job on the built-in example (Magika), end to end on this machine."""

from __future__ import annotations

import json
from pathlib import Path

import typer

from honed.bench import BenchSettings, run_bench
from honed.cli.bench_cmd import render_report
from honed.cli.common import console, parse_duration, parse_int_list
from honed.cli.inspect_cmd import render_info
from honed.demo import MagikaFeatureConfig, build_magika_dataset, magika_model_dir
from honed.model.info import inspect_model


def demo(
    out: Path = typer.Option(Path("honed-demo"), "--out", "-o", help="Folder for the inputs and results."),
    samples: int = typer.Option(256, "--samples", help="How many real files to turn into model inputs."),
    duration: str = typer.Option("2s", "--duration", help="Time per bench case."),
    batch: str = typer.Option("1,64", "--batch", "-b", help="Batch sizes to bench, comma-separated."),
    warmup: int = typer.Option(2, "--warmup", help="Untimed runs before each bench case."),
) -> None:
    """Inspect and benchmark Google's Magika model on real files from this machine."""
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
    bench_json = out / "bench.json"
    bench_json.write_text(json.dumps(report.to_dict(), indent=2) + "\n")
    console.print(f"wrote {bench_json}")


def register(app: typer.Typer) -> None:
    app.command("demo")(demo)
