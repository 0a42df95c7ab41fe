"""``honed bench``: latency, throughput, memory and per-op time of a model on this machine."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer
from rich import box
from rich.progress import Progress
from rich.table import Table

from honed.bench import BenchProgress, BenchReport, BenchSettings, run_bench
from honed.cli.common import (
    console,
    err_console,
    mlflow_uri_option,
    parse_int_list,
    print_json,
    progress_bar,
    runtime_config,
    use_mlflow_uri,
)
from honed.errors import InvalidArgument
from honed.jsonio import write_json
from honed.model.spec import parse_shape_overrides
from honed.units import parse_duration

COMMANDS = {
    "bench": "Measure latency percentiles, throughput, peak memory and (with --profile) per-op time.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


class _RichProgress(BenchProgress):
    def __init__(self, progress: Progress) -> None:
        self._progress = progress
        self._task: Any = None

    def start_case(self, label: str, total: int | None, duration_s: float | None) -> None:
        if self._task is not None:
            self._progress.update(self._task, visible=False)
        self._task = self._progress.add_task(label, total=total)

    def advance(self, runs: int) -> None:
        self._progress.advance(self._task, runs)


def bench(
    model: Path = typer.Argument(
        ...,
        help="ONNX model file, OpenVINO IR .xml (with its .bin), a folder holding model.onnx or model.xml (an "
        "optimize output runs at the runtime its recipe.json records; runtime flags override it), or an "
        "MLflow ONNX model: models:/NAME/VERSION, models:/NAME@ALIAS or runs:/RUN_ID/PATH.",
    ),
    batch: str = typer.Option("1", "--batch", "-b", help="Batch sizes, comma-separated, e.g. 1,8,32."),
    threads: str = typer.Option("0", "--threads", "-t", help="Intra-op thread counts, comma-separated; 0 = auto."),
    concurrency: int = typer.Option(1, "--concurrency", "-c", help="Requests in flight at once (threads)."),
    iterations: int | None = typer.Option(None, "--iterations", "-n", help="Timed runs per case (default 100)."),
    duration: str | None = typer.Option(None, "--duration", "-d", help="Time per case instead, e.g. 10s."),
    warmup: int = typer.Option(5, "--warmup", help="Untimed runs before each case."),
    shape: list[str] = typer.Option([], "--shape", help="Fix an input's shape: NAME=1x3x224x224 (repeatable)."),
    data: Path | None = typer.Option(None, "--data", help=".npz of real inputs (name -> array, axis 0 = samples)."),
    vocab_size: int | None = typer.Option(
        None, "--vocab-size", help="Synthetic integer inputs (e.g. token ids) are drawn below this (default 256)."
    ),
    profile: bool = typer.Option(False, "--profile", help="Also profile per-op time with ONNX Runtime."),
    top: int = typer.Option(10, "--top", help="How many ops/nodes to list with --profile."),
    backend: str | None = typer.Option(
        None, "--backend", help="onnxruntime or openvino [default: the recipe's, else onnxruntime].", show_default=False
    ),
    provider: str | None = typer.Option(None, "--provider", help="cpu, cuda or tensorrt [default: cpu]."),
    graph_optimization: str | None = typer.Option(
        None, "--graph-opt", help="disable, basic, extended or all [default: all]."
    ),
    affinity: str | None = typer.Option(None, "--affinity", help="Pin threads to these CPU ids, e.g. 0,1."),
    spinning: bool | None = typer.Option(
        None, "--spinning/--no-spinning", help="Let idle threads spin [default: spin].", show_default=False
    ),
    inter_op: int | None = typer.Option(None, "--inter-op-threads", help="Inter-op threads [default: 0 = auto]."),
    as_json: bool = typer.Option(False, "--json", help="Print the honed.bench/v1 JSON instead of tables."),
    out: Path | None = typer.Option(None, "--out", "-o", help="Also write the JSON to this file."),
    mlflow_uri: str | None = mlflow_uri_option(),
) -> None:
    """Measure latency percentiles, throughput, peak memory and (with --profile) per-op time."""
    use_mlflow_uri(mlflow_uri)
    duration_s = parse_duration(duration, "--duration") if duration else None
    if iterations is not None and duration_s is not None:
        raise InvalidArgument("give --iterations or --duration, not both")
    settings = BenchSettings(
        batches=parse_int_list(batch, "--batch"),
        threads=parse_int_list(threads, "--threads"),
        concurrency=concurrency,
        warmup=warmup,
        iterations=iterations,
        duration_s=duration_s,
        profile=profile,
        top_ops=top,
        shapes=parse_shape_overrides(shape),
        vocab_size=vocab_size,
    )
    from honed.search.recipe import recorded_runtime

    recorded = recorded_runtime(model)
    config = runtime_config(
        recorded[0] if recorded else None,
        backend=backend,
        provider=provider,
        graph_optimization=graph_optimization,
        affinity=affinity,
        spinning=spinning,
        inter_op=inter_op,
    )
    if recorded and not as_json:
        err_console.print(f"[dim]runtime from {recorded[1]}: {recorded[0].label()}[/dim]")
    with progress_bar(bold=False, transient=True, disable=as_json or not err_console.is_terminal) as bar:
        report = run_bench(model, settings, config, data=data, progress=_RichProgress(bar))
    payload = report.to_dict()
    if out is not None:
        write_json(out, payload)
    if as_json:
        print_json(payload)
        return
    render_report(report)
    if out is not None:
        console.print(f"[dim]wrote {out}[/dim]")


def render_report(report: BenchReport) -> None:
    """The people-facing tables of a bench report."""
    flops = f"{report.flops_per_item / 1e9:.3f} GFLOP/item" if report.flops_per_item else "FLOPs unknown"
    peak = report.hardware.peak_gflops(report.precision)
    peak_text = f"peak {report.precision.upper()} {peak:.0f} GFLOP/s" if peak else "peak unknown"
    console.print(
        f"[bold]{report.model_path.name}[/bold]  {flops}  ·  {report.runtime.label()}  ·  data: {report.data}  ·  "
        f"{report.hardware.cpu_model} ({peak_text})"
    )
    table = Table(
        title="Latency (ms) and throughput",
        title_justify="left",
        box=box.SIMPLE_HEAD,
        pad_edge=False,
        collapse_padding=True,
    )
    for col in ("batch", "thr", "conc", "p50", "p90", "p99", "mean", "items/s", "GFLOP/s", "%peak", "MiB"):
        table.add_column(col, justify="right", no_wrap=True)
    for r in report.results:
        lat = r.latency
        table.add_row(
            str(r.batch),
            str(r.threads or "auto"),
            str(r.concurrency),
            _ms(lat.p50_ms),
            _ms(lat.p90_ms),
            _ms(lat.p99_ms),
            _ms(lat.mean_ms),
            f"{r.items_per_s:,.0f}",
            f"{r.achieved_gflops:.1f}" if r.achieved_gflops is not None else "-",
            f"{100 * r.peak_fraction:.1f}%" if r.peak_fraction is not None else "-",
            f"{r.peak_rss_mb:.0f}",
        )
    console.print(table)
    if report.profile is not None:
        case = report.profile_case or {}
        runs = max(report.profile.runs, 1)
        ops = Table(
            title=f"Where the time goes (batch {case.get('batch')}, {report.profile.runs} profiled runs)",
            title_justify="left",
        )
        ops.add_column("op type")
        ops.add_column("ms/run", justify="right")
        ops.add_column("share", justify="right")
        ops.add_column("calls", justify="right")
        for op in report.profile.by_op_type[: report.settings.top_ops]:
            ops.add_row(op.op_type, f"{op.total_ms / runs:.3f}", f"{100 * op.fraction:.1f}%", str(op.calls))
        console.print(ops)
        nodes = Table(title="Slowest nodes", title_justify="left")
        nodes.add_column("node")
        nodes.add_column("op type")
        nodes.add_column("ms/run", justify="right")
        nodes.add_column("share", justify="right")
        for node in report.profile.by_node:
            nodes.add_row(node.name, node.op_type, f"{node.total_ms / runs:.3f}", f"{100 * node.fraction:.1f}%")
        console.print(nodes)


def _ms(value: float) -> str:
    return f"{value:.3f}" if value < 10 else f"{value:.1f}"


def register(app: typer.Typer) -> None:
    app.command("bench")(bench)
