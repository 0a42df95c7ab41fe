"""``honed export edge``: a self-checking bundle for a box with nothing but numpy and ONNX Runtime."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer
from rich.table import Table

from honed.cli.common import console, err_console, print_json

if TYPE_CHECKING:
    from honed.edge import EdgeExport

COMMANDS = {
    "export": "Package a model for another place to run it: an edge bundle (model, runtime pins, stdlib runner).",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 100_000 else f"{n / 1e3:.1f} kB"


def _cost_table(result: EdgeExport) -> Table:
    manifest, cost = result.manifest, result.cost
    table = Table(title=f"edge bundle {result.path}", show_header=False, title_justify="left")
    table.add_column("what", style="bold")
    table.add_column("value")
    table.add_row("model", f"{manifest.model.file} ({manifest.model.format}): {manifest.model.format_reason}")
    session = manifest.session
    threads = session.intra_op_threads or "runtime default"
    table.add_row("session", f"{session.provider}, graph {session.graph_optimization}, threads {threads}")
    table.add_row("requirements", ", ".join(f"{k}=={v}" for k, v in manifest.runtime.items()))
    if cost is not None:
        env = cost.environment
        how = "fresh venv, offline" if env.method == "venv" else "installed files of the same versions here (RECORD)"
        table.add_row("bundle size", _size(cost.bundle_bytes))
        table.add_row("environment size", f"{_size(env.bytes)} [dim]({how})[/dim]")
        runs = ", ".join(f"{s:.2f}" for s in cost.cold_start_runs_s)
        table.add_row(
            "cold start to first answer", f"{cost.cold_start_s:.2f} s [dim](selftest, median of {runs} s)[/dim]"
        )
        table.add_row("peak RSS", _size(cost.peak_rss_bytes))
        table.add_row(
            "steady latency",
            f"p50 {cost.p50_ms:.3f} ms, p90 {cost.p90_ms:.3f} ms [dim]({cost.latency_count} runs)[/dim]",
        )
        if cost.versus_serve is not None:
            v = cost.versus_serve
            table.add_row(
                "p50 against honed serve",
                f"runner {v.runner_p50_ms:.3f} ms, honed serve {v.serve_p50_ms:.3f} ms, ratio {v.ratio:.2f} "
                f"[dim]({v.requests} alternating V2 JSON requests each, after {v.warmup} warm-up)[/dim]",
            )
        table.add_row("machine", cost.machine)
    for note in manifest.notes:
        table.add_row("note", note)
    return table


def register(app: typer.Typer) -> None:
    export_app = typer.Typer(help=COMMANDS["export"], no_args_is_help=True)
    app.add_typer(export_app, name="export")

    @export_app.command("edge")
    def edge_cmd(
        source: str = typer.Argument(
            ...,
            help="An optimize output folder, an .onnx or IR .xml file, or with --registry a reference "
            "(name@alias, name:V).",
        ),
        out: Path = typer.Option(..., "--out", "-o", help="The bundle folder to write (must not exist, or --force)."),
        registry: str | None = typer.Option(
            None, "--registry", help="Registry database URL: SOURCE is then a reference such as scorer@production."
        ),
        name: str | None = typer.Option(None, "--name", help="The model's name in the bundle and its V2 endpoints."),
        model_format: str = typer.Option(
            "auto",
            "--format",
            help="auto (IR on OpenVINO for a winner measured there, else whichever of onnx and ort opens faster "
            "here), onnx, ort (ONNX Runtime's ORT format) or openvino-ir (converted; runs on OpenVINO).",
        ),
        sample: Path | None = typer.Option(
            None, "--sample", help=".npz with one input per model input for the selftest (default: synthetic)."
        ),
        rtol: float = typer.Option(1e-3, "--rtol", help="Relative tolerance of the selftest's output check."),
        atol: float = typer.Option(1e-5, "--atol", help="Absolute tolerance of the selftest's output check."),
        wheelhouse: Path | None = typer.Option(
            None, "--wheelhouse", help="A folder of wheels: measure the environment by installing it offline."
        ),
        latency_count: int = typer.Option(200, "--latency-count", help="Runs behind the steady p50/p90."),
        versus_requests: int = typer.Option(
            100, "--versus-requests", help="Requests to each of the runner and honed serve behind the p50 comparison."
        ),
        measure: bool = typer.Option(
            True, "--measure/--no-measure", help="Measure sizes, cold start, latency and the p50 against honed serve."
        ),
        force: bool = typer.Option(False, "--force", help="Replace an existing bundle folder."),
        as_json: bool = typer.Option(False, "--json", help="Print the manifest and cost as JSON."),
    ) -> None:
        """Write an edge bundle: the model, its session options, a checked sample, pinned requirements, the runner."""
        from honed.edge import export_edge

        with err_console.status("exporting", spinner="dots") as status:
            result = export_edge(
                source,
                out,
                registry=registry,
                name=name,
                model_format=model_format,
                sample=sample,
                rtol=rtol,
                atol=atol,
                force=force,
                measure=measure,
                latency_count=latency_count,
                versus_requests=versus_requests,
                wheelhouse=wheelhouse,
                progress=lambda stage: status.update(f"exporting: {stage}"),
            )
        if as_json:
            cost = result.cost.to_dict() if result.cost is not None else None
            print_json(
                {
                    "path": str(result.path),
                    "manifest_sha256": result.manifest_sha256,
                    "manifest": result.manifest.to_dict(),
                    "cost": cost,
                }
            )
            return
        console.print(_cost_table(result))
        console.print(
            f"check it with: cd {result.path} && python -m honed_edge selftest --expect {result.manifest_sha256[:16]}",
            highlight=False,
        )
