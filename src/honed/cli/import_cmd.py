"""``honed import torch|hf|sklearn SOURCE --out DIR``: a model into ONNX, verified against its framework
(calls :mod:`honed.intake`), optionally registered with its import record as the start of its lineage."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from honed.cli.common import console, err_console, print_json, registry_for
from honed.cli.options import RegisterRegistryUrl, with_flags
from honed.intake.output import ImportResult
from honed.intake.verify import Tolerance
from honed.model.spec import format_shape

COMMANDS = {
    "import": "Bring a PyTorch, Hugging Face or scikit-learn model in as ONNX, verified against its framework.",
}
"""The commands this module registers and their one-line help (read by honed.cli.commands without importing)."""

_DEFAULT = Tolerance()
OutOpt = typer.Option(..., "--out", "-o", help="Output folder: model.onnx and import.json.")


def _source(help: str) -> Any:
    """The SOURCE argument of an importer: the file or folder it reads."""
    return typer.Argument(..., help=help, metavar="SOURCE")


@dataclass(frozen=True)
class _Settings:
    """The flags every importer takes (given to it by :func:`_importer`)."""

    opset: Annotated[
        int | None, typer.Option("--opset", help="ONNX opset to export at (default: the converter's).")
    ] = None
    atol: Annotated[float, typer.Option("--atol", help="Absolute tolerance of the verification.")] = _DEFAULT.atol
    rtol: Annotated[float, typer.Option("--rtol", help="Relative tolerance of the verification.")] = _DEFAULT.rtol
    register_as: Annotated[
        str | None,
        typer.Option(
            "--register", help="Register the imported model as the next version of this name, with its import record."
        ),
    ] = None
    registry_url: RegisterRegistryUrl = None
    as_json: Annotated[bool, typer.Option("--json", help="Print import.json to stdout instead of the summary.")] = False

    @property
    def tolerance(self) -> Tolerance:
        return Tolerance(self.atol, self.rtol)


def register(app: typer.Typer) -> None:
    group = typer.Typer(help=COMMANDS["import"], no_args_is_help=True)
    app.add_typer(group, name="import")

    @group.command("torch")
    @_importer("torch")
    def torch_cmd(
        source: Path = _source(help="A .pt2 file (torch.export.save) or a TorchScript .pt (torch.jit.save)."),
        out: Path = OutOpt,
        sample: Path | None = typer.Option(
            None, "--sample", help=".npz with one array per forward() argument (by name), or .npy for one input."
        ),
        input_shape: str | None = typer.Option(
            None, "--input-shape", help="Verify on random inputs of this shape: 2x3x32x32, or NAME=2x3x32x32,..."
        ),
        *,
        flags: _Settings,
    ) -> ImportResult:
        """Export a saved PyTorch program to ONNX (dynamo exporter, else TorchScript's), verified against torch."""
        from honed.intake.pytorch import import_torch_file

        return import_torch_file(
            source, out=out, sample=sample, input_shape=input_shape, opset=flags.opset, tolerance=flags.tolerance
        )

    @group.command("hf")
    @_importer("hf")
    def hf_cmd(
        source: Path = _source(help="A local Hugging Face model folder (save_pretrained); no downloads."),
        out: Path = OutOpt,
        task: str = typer.Option("feature-extraction", "--task", help="feature-extraction or text-classification."),
        sample: Path | None = typer.Option(
            None, "--sample", help=".npz of token arrays: input_ids, attention_mask (and token_type_ids)."
        ),
        *,
        flags: _Settings,
    ) -> ImportResult:
        """Export a Hugging Face text model from a local folder to ONNX, dynamic batch and sequence axes."""
        from honed.intake.huggingface import from_hf

        return from_hf(source, out=out, task=task, sample=sample, opset=flags.opset, tolerance=flags.tolerance)

    @group.command("sklearn")
    @_importer("sklearn")
    def sklearn_cmd(
        source: Path = _source(help="A fitted estimator or pipeline saved with joblib or pickle."),
        out: Path = OutOpt,
        trust_pickle: bool = typer.Option(
            False,
            "--trust-pickle",
            help="Load the pickle/joblib file. Unpickling runs code from the file: only for files you trust.",
        ),
        sample: Path | None = typer.Option(
            None, "--sample", help=".npy of feature rows (or .npz with array X); default: generated rows."
        ),
        *,
        flags: _Settings,
    ) -> ImportResult:
        """Convert a scikit-learn estimator to ONNX with skl2onnx; refuses a pickle without --trust-pickle."""
        from honed.intake.scikit import import_sklearn_file

        trust = trust_pickle
        return import_sklearn_file(
            source, out=out, trust_pickle=trust, sample=sample, opset=flags.opset, tolerance=flags.tolerance
        )


def _importer(kind: str) -> Callable[[Callable[..., ImportResult]], Callable[..., None]]:
    """Give an importer command the shared flags (:class:`_Settings`) and the shared run: registry check, progress,
    result, --register. The command declares its own arguments and a keyword-only ``flags``."""

    def wrap(command: Callable[..., ImportResult]) -> Callable[..., None]:
        @functools.wraps(command)
        def run_command(*, flags: _Settings, **values: Any) -> None:
            _run(kind, values["source"], lambda: command(**values, flags=flags), flags)

        return with_flags(_Settings)(run_command)

    return wrap


def _run(kind: str, source: Path, work: Callable[[], ImportResult], settings: _Settings) -> None:
    register_as, as_json = settings.register_as, settings.as_json
    registry = registry_for(register_as, settings.registry_url)
    try:
        # bound to the real stderr: the converters' output is swallowed during the export, the spinner's is not
        spinner = Console(file=sys.stderr)
        with spinner.status(f"importing {escape(str(source))} ({kind}): export, then verify", spinner="dots"):
            result = work()
        if registry is not None and register_as is not None:
            from honed.registry import default_actor

            record = result.record
            version, created = registry.register_with_status(
                result.model_path,
                register_as,
                actor=default_actor(),
                recipe={"import": record.to_dict()},
                tags=[f"imported-from:{record.framework}"],
            )
            state = "registered" if created else "already registered as"
            err_console.print(f"{state} {version.ref} (sha256 {version.sha256[:12]})", highlight=False)
    finally:
        if registry is not None:
            registry.close()
    if as_json:
        print_json(result.record.to_dict())
    else:
        show_result(result)


def show_result(result: ImportResult) -> None:
    """The conversion and its verification, one row per output."""
    record = result.record
    v = record.verification
    console.print(
        f"{record.framework} {record.framework_version} -> ONNX opset {record.opset} with {record.converter} "
        f"{record.converter_version}",
        highlight=False,
    )
    if record.fallback_reason:
        console.print(f"[yellow]used the TorchScript exporter:[/] {escape(record.fallback_reason)}")
    if record.quantization is not None:
        console.print(f"already quantized: {escape(record.quantization.describe())}", highlight=False)
    for spec in record.inputs:
        console.print(f"input {spec.name}: {spec.type_name} {escape(format_shape(spec.shape))}", highlight=False)
    fixed = [s.name for s in record.inputs if s.shape and isinstance(s.shape[0], int)]
    if fixed:
        console.print(
            f"[yellow]note:[/] the batch axis of {', '.join(fixed)} is fixed, as the source fixes it "
            "(a torch.export program keeps the shapes it was exported with: export it with dynamic_shapes)",
            highlight=False,
        )
    table = Table("output", "shape", "max abs error", "max rel error", "elements compared")
    for spec, error in zip(record.outputs, v.outputs, strict=True):
        shape = escape(format_shape(spec.shape))
        errors = (f"{error.max_abs_error:.3g}", f"{error.max_rel_error:.3g}")
        table.add_row(error.name, shape, *errors, str(error.elements))
    console.print(table)
    console.print(
        f"verified on {v.inputs} ({v.samples} sample(s)) at batch {', '.join(map(str, v.batch_sizes))} "
        f"with {v.runtime}, atol={v.tolerance.atol:g} "
        f"rtol={v.tolerance.rtol:g}",
        highlight=False,
    )
    console.print(f"wrote {result.model_path} and {result.record_path}", highlight=False)
