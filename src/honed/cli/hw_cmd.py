"""``honed hw``: show what this machine can do (cores, ISA, caches, clock, memory, GPUs, peak throughput)."""

from __future__ import annotations

import typer
from rich.table import Table

from honed.cli.common import console, print_json
from honed.hardware import KEY_ISA, HardwareSpec, detect_hardware

COMMANDS = {
    "hw": "Show what this machine can do: usable cores, ISA, caches, clock, memory, GPUs, estimated peak FLOP/s.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def _bytes(n: int) -> str:
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if size < 1024 or unit == "TiB":
            return f"{size:.0f} {unit}" if unit in ("B", "KiB") else f"{size:.1f} {unit}"
        size /= 1024
    return f"{n} B"


def _peak(value: float | None, unit: str) -> str:
    return "unknown" if value is None else f"{value:,.1f} {unit}"


def _table(spec: HardwareSpec) -> Table:
    table = Table(title="honed hw", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    est = set(spec.estimated)

    def mark(name: str) -> str:
        return " [dim](estimated)[/dim]" if name in est else ""

    table.add_row("CPU", f"{spec.cpu_model} ({spec.vendor}, {spec.arch})")
    usable = ",".join(str(c) for c in spec.usable_cores)
    table.add_row(
        "cores",
        f"{len(spec.usable_cores)} usable [dim]({usable})[/dim] / {spec.logical_cores} logical / "
        f"{spec.physical_cores} physical{mark('physical_cores')}",
    )
    isa = " ".join(f"[bold green]{n}[/bold green]" if n in KEY_ISA else n for n in spec.isa) or "none detected"
    table.add_row("ISA", isa + mark("isa"))
    table.add_row("ISA class", f"{spec.isa_class} [dim](decides which optimize candidates are tried first)[/dim]")
    caches = "  ".join(f"{k.upper()} {_bytes(v)}" for k, v in spec.caches.items()) or "unknown"
    table.add_row("caches", caches + (" [dim](per core; L3 one shared instance)[/dim]" if spec.caches else ""))
    clock = "unknown" if spec.clock_ghz is None else f"{spec.clock_ghz:.2f} GHz"
    table.add_row("clock", f"{clock} [dim](from {spec.clock_source})[/dim]{mark('clock_ghz')}")
    if spec.cpu_quota_cores is not None:
        table.add_row("CPU quota", f"{spec.cpu_quota_cores:g} cores [dim](cgroup; caps the peaks)[/dim]")
    memory = _bytes(spec.memory_bytes) if spec.memory_bytes else "unknown"
    if spec.memory_limit_bytes is not None:
        memory += f" [dim](cgroup limit {_bytes(spec.memory_limit_bytes)})[/dim]"
    table.add_row("memory", memory)
    table.add_row("ORT providers", ", ".join(spec.ort_providers) or "none (is onnxruntime installed?)")
    gpus = [
        f"{g.name} ({_bytes(g.memory_bytes) if g.memory_bytes else 'memory unknown'}; "
        f"ORT: {', '.join(g.ort_providers) or 'no GPU provider installed'})"
        for g in spec.gpus
    ]
    table.add_row("GPUs", "\n".join(gpus) or "none")
    table.add_row(f"peak FP32 ({spec.peak_cores} cores)", _peak(spec.peak_fp32_gflops, "GFLOP/s"))
    table.add_row("peak BF16", _peak(spec.peak_bf16_gflops, "GFLOP/s"))
    table.add_row("peak INT8", _peak(spec.peak_int8_gops, "GOP/s"))
    table.add_row("peak basis", f"[dim]{spec.peak_basis}[/dim]")
    return table


def hw(
    as_json: bool = typer.Option(False, "--json", help="Print the HardwareSpec as JSON instead of a table."),
    refresh: bool = typer.Option(False, "--refresh", help="Detect again instead of using the cached result."),
) -> None:
    """Show what this machine can do: usable cores, ISA, caches, clock, memory, GPUs, estimated peak FLOP/s."""
    spec = detect_hardware(refresh=refresh)
    if as_json:
        print_json(spec.to_dict())
    else:
        console.print(_table(spec))


def register(app: typer.Typer) -> None:
    app.command("hw")(hw)
