"""``honed inspect MODEL``: what is inside a model file, as tables for people or JSON for machines."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.markup import escape
from rich.table import Table

from honed.cli.common import console, print_json
from honed.errors import InvalidArgument
from honed.model import ModelInfo, format_shape, inspect_model, parse_shape_overrides

COMMANDS = {
    "inspect": "Show a model's inputs, outputs, ops, parameters, estimated FLOPs and sha256.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def register(app: typer.Typer) -> None:
    app.command("inspect")(inspect_command)


def inspect_command(
    model: Path = typer.Argument(..., help="An .onnx file, or a folder holding model.onnx.", metavar="MODEL"),
    shape: list[str] = typer.Option(
        [], "--shape", help="Input shape for the FLOP count, NAME=1x3x224x224; repeatable.", metavar="NAME=SHAPE"
    ),
    batch: int | None = typer.Option(None, "--batch", help="Batch size for a symbolic first dimension (default 1)."),
    as_json: bool = typer.Option(False, "--json", help="Print the result as JSON on stdout."),
) -> None:
    """Show a model's inputs, outputs, ops, parameters, estimated FLOPs and sha256."""
    if batch is not None and batch < 1:
        raise InvalidArgument(f"--batch must be >= 1, got {batch}")
    info = inspect_model(model, parse_shape_overrides(shape), batch=batch)
    if as_json:
        print_json(info.to_dict())
    else:
        render_info(info)


def render_info(info: ModelInfo) -> None:
    summary = Table(title="Model", show_header=False)
    summary.add_column("field", style="bold")
    summary.add_column("value", overflow="fold")
    summary.add_row("path", info.path)
    summary.add_row("sha256", info.sha256)
    summary.add_row("file size", f"{info.file_bytes:,} bytes")
    summary.add_row("producer", f"{info.producer_name} {info.producer_version}".strip() or "-")
    summary.add_row("ir version", str(info.ir_version))
    summary.add_row("opsets", ", ".join(f"{d} {v}" for d, v in info.opsets.items()))
    summary.add_row("graph", info.graph_name or "-")
    summary.add_row("parameters", f"{info.parameters:,} ({info.parameter_bytes / 1e6:.2f} MB)")
    summary.add_row("external data", ", ".join(info.external_data_files) or "no")
    shapes = ", ".join(f"{name}={'x'.join(map(str, dims))}" for name, dims in info.flop_shapes.items())
    summary.add_row("FLOPs", f"{info.flops.gflops:.4g} GFLOP per inference at {shapes}")
    console.print(summary)

    io = Table(title="Inputs and outputs")
    for col in ("kind", "name", "dtype", "shape"):
        io.add_column(col)
    for kind, specs in (("input", info.inputs), ("output", info.outputs)):
        for spec in specs:
            io.add_row(kind, escape(spec.name), spec.type_name, escape(format_shape(spec.shape)))
    console.print(io)

    ops = Table(title="Ops")
    ops.add_column("op type")
    ops.add_column("nodes", justify="right")
    for op, count in info.op_histogram.items():
        ops.add_row(escape(op), str(count))
    console.print(ops)

    flops = Table(title="FLOPs by op type")
    flops.add_column("op type")
    flops.add_column("GFLOP", justify="right")
    flops.add_column("share", justify="right")
    total = info.flops.total or 1
    for op, value in info.flops.by_op_type.items():
        flops.add_row(op, f"{value / 1e9:.4g}", f"{100 * value / total:.1f}%")
    flops.add_row("total", f"{info.flops.gflops:.4g}", "100.0%" if info.flops.total else "-", style="bold")
    console.print(flops)
    if info.flops.uncounted_ops:
        left_out = ", ".join(f"{op} x{n}" for op, n in info.flops.uncounted_ops.items())
        console.print(f"not counted (elementwise, reductions, unknown shapes): {left_out}")
    for note in info.flops.notes:
        console.print(f"note: {note}")
