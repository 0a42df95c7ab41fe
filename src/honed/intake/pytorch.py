"""PyTorch in: an ``nn.Module`` with example inputs, a saved ``torch.export`` program (``.pt2``) or a TorchScript
archive (``.pt``), exported with ``torch.onnx.export`` and verified against the module itself.

The dynamo exporter (``torch.export`` underneath) is tried first; where it fails, the TorchScript exporter is used
and the dynamo exporter's error is kept in the record as the reason. Every input's first axis is dynamic
(``batch``) unless ``dynamic_axes`` says otherwise.
"""

from __future__ import annotations

import inspect
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from honed.errors import DataError, InvalidArgument, InvalidModel, ModelNotFound
from honed.intake._quiet import first_line, quiet_converters
from honed.intake.output import Converted, ImportResult, check_out_dir, describe, finish
from honed.intake.samples import parse_input_shape, random_floats, read_sample
from honed.intake.verify import Array, Tolerance

if TYPE_CHECKING:
    import onnx

DynamicAxes = Mapping[str, Mapping[int, str]]


def require_torch() -> Any:
    """``torch``, or a clear error naming the extra that installs it."""
    try:
        import torch
    except ImportError as exc:
        raise InvalidArgument("importing a PyTorch model needs torch: pip install 'honed[import]'") from exc
    return torch


def from_torch(
    module: Any,
    example_inputs: Any,
    *,
    out: str | Path,
    dynamic_axes: DynamicAxes | None = None,
    sample: Mapping[str, Array] | None = None,
    opset: int | None = None,
    tolerance: Tolerance | None = None,
    source: str | None = None,
) -> ImportResult:
    """Export ``module`` to ONNX in ``out`` (``model.onnx`` + ``import.json``), verified on ``sample`` (name ->
    array, named as ``forward``'s parameters) or on ``example_inputs``.

    ``module`` is an ``nn.Module``, a ``torch.jit.ScriptModule`` or a ``torch.export.ExportedProgram``;
    ``example_inputs`` a tensor or a tuple of them. ``dynamic_axes`` (``{input: {axis: name}}``) replaces the
    default of a dynamic first axis on every input. An export outside ``tolerance`` raises
    :class:`honed.errors.ExportMismatch` and writes nothing.
    """
    return _import_module(
        module,
        example_inputs,
        out=out,
        dynamic_axes=dynamic_axes,
        sample=sample,
        opset=opset,
        tolerance=tolerance,
        source=source,
        sample_label="the sample",
    )


def _import_module(
    module: Any,
    example_inputs: Any,
    *,
    out: str | Path,
    dynamic_axes: DynamicAxes | None,
    sample: Mapping[str, Array] | None,
    opset: int | None,
    tolerance: Tolerance | None,
    source: str | None,
    sample_label: str,
    output_names: Sequence[str] | None = None,
    framework: tuple[str, str] | None = None,
    task: str | None = None,
) -> ImportResult:
    """:func:`from_torch`, also used by the Hugging Face importer, which names its framework, task and outputs."""
    torch = require_torch()
    check_out_dir(out)
    args = _as_tuple(example_inputs)
    names = input_names(module)
    if len(names) != len(args):
        raise DataError(f"the model takes {len(names)} input(s) ({', '.join(names)}) but {len(args)} were given")
    exported = isinstance(module, torch.export.ExportedProgram)
    axes = None if exported else _dynamic_axes(names, args, dynamic_axes)
    if sample is not None:
        feeds = {n: np.asarray(sample[n]) for n in names if n in sample}
        if missing := [n for n in names if n not in sample]:
            raise DataError(f"the sample lacks input(s) {', '.join(missing)}; the inputs are: {', '.join(names)}")
        where = sample_label
    else:
        feeds = {n: a.detach().cpu().numpy() for n, a in zip(names, args, strict=True)}
        where = "the example inputs"
    runnable = module.module() if exported else module
    # exported with dropout off and batch norm frozen; the module is put back as it was given
    was_training = not exported and bool(getattr(runnable, "training", False))
    if was_training:
        runnable.eval()
    try:
        expected = reference_outputs(runnable, feeds, names)
        if output_names is None:
            output_names = ["output"] if len(expected) == 1 else [f"output_{i}" for i in range(len(expected))]
        model, converter, reason = export(module, args, names, output_names, axes, opset)
        converted = Converted(
            model=model,
            framework=framework[0] if framework else "torch",
            framework_version=framework[1] if framework else str(torch.__version__),
            source=source or describe(module),
            converter=converter,
            converter_version=str(torch.__version__),
            fallback_reason=reason,
            task=task,
        )
        return finish(
            converted,
            feeds,
            expected,
            tolerance or Tolerance(),
            inputs=where,
            out=out,
            reference=lambda other: reference_outputs(runnable, other, names),
        )
    finally:
        if was_training:
            runnable.train()


def import_torch_file(
    path: str | Path,
    *,
    out: str | Path,
    sample: str | Path | None = None,
    input_shape: str | None = None,
    opset: int | None = None,
    tolerance: Tolerance | None = None,
) -> ImportResult:
    """Import a ``.pt2`` (``torch.export.save``) or TorchScript ``.pt`` file; see :func:`from_torch`.

    The inputs come from ``sample`` (``.npz`` named as ``forward``'s parameters, or ``.npy`` for one input), else
    from ``input_shape`` (random values), else from the example inputs a ``.pt2`` file keeps.
    """
    torch = require_torch()
    check_out_dir(out)
    module = load_torch_file(path)
    names = input_names(module)
    arrays: dict[str, Array] | None = None
    if sample is not None:
        arrays = read_sample(sample, names)
    elif input_shape is not None:
        arrays = random_floats(parse_input_shape(input_shape, names))
    if arrays is not None:
        example: tuple[Any, ...] = tuple(torch.from_numpy(np.ascontiguousarray(arrays[n])) for n in names)
    else:
        kept = getattr(module, "example_inputs", None)
        if not kept or not kept[0]:
            raise InvalidArgument(
                f"{path} keeps no example inputs: give --sample FILE.npz or --input-shape "
                f"{'x'.join(['N', 'C', 'H', 'W'])} for its input(s) {', '.join(names)}"
            )
        example = tuple(kept[0])
    return _import_module(
        module,
        example,
        out=out,
        dynamic_axes=None,
        sample=arrays,
        opset=opset,
        tolerance=tolerance,
        source=str(Path(path).expanduser()),
        sample_label=f"sample {Path(sample).name}" if sample is not None else "generated inputs",
    )


def load_torch_file(path: str | Path) -> Any:
    """A ``.pt2`` file as an ``ExportedProgram``, a ``.pt``/``.pth`` TorchScript archive as a ``ScriptModule``."""
    torch = require_torch()
    p = Path(path).expanduser()
    if not p.exists():
        raise ModelNotFound(f"model file not found: {p}")
    if not p.is_file():
        raise InvalidArgument(f"{p} is a folder; give a .pt2 (torch.export.save) or a TorchScript .pt file")
    suffix = p.suffix.lower()
    with quiet_converters():
        if suffix == ".pt2":
            try:
                return torch.export.load(str(p))
            except Exception as exc:  # torch raises many untyped errors for a file that is not a saved program
                raise InvalidModel(f"{p} is not a torch.export program (torch.export.save): {first_line(exc)}") from exc
        if suffix in (".pt", ".pth", ".ts"):
            try:
                return torch.jit.load(str(p), map_location="cpu")
            except Exception as exc:
                raise InvalidModel(
                    f"{p} is not a TorchScript archive (torch.jit.save); a module pickled with torch.save is not "
                    f"loaded: save it with torch.export.save as .pt2 ({first_line(exc)})"
                ) from exc
    raise InvalidArgument(
        f"{p}: unknown PyTorch file type {p.suffix!r}; give a .pt2 (torch.export) or .pt (TorchScript)"
    )


def input_names(module: Any) -> list[str]:
    """The names of the positional inputs of ``module``'s forward (these name the ONNX graph's inputs)."""
    torch = require_torch()
    if isinstance(module, torch.export.ExportedProgram):
        return [str(n) for n in module.graph_signature.user_inputs]
    if isinstance(module, torch.jit.ScriptModule):
        return [a.name for a in module.forward.schema.arguments[1:]]
    try:
        params = inspect.signature(module.forward).parameters.values()
    except (TypeError, ValueError, AttributeError) as exc:
        raise InvalidArgument(f"cannot read the inputs of {describe(module)}: it has no forward method") from exc
    return [p.name for p in params if p.kind in (p.POSITIONAL_ONLY, p.POSITIONAL_OR_KEYWORD)]


def reference_outputs(module: Any, feeds: Mapping[str, Array], names: Sequence[str]) -> list[Array]:
    """Run the source module on ``feeds`` and return its outputs flattened to arrays, in order."""
    torch = require_torch()
    tensors = [torch.from_numpy(np.ascontiguousarray(feeds[n])) for n in names]
    try:
        with torch.no_grad(), quiet_converters():
            result = module(*tensors)
    except Exception as exc:  # the module's own error for inputs of the wrong shape or dtype
        shapes = ", ".join(f"{n} {tuple(feeds[n].shape)} {feeds[n].dtype}" for n in names)
        raise DataError(f"the model cannot run on the given inputs ({shapes}): {first_line(exc)}") from exc
    flat = _flatten(result)
    if not flat:
        raise InvalidArgument("the model returns no tensors; there is nothing to export")
    return [t.detach().cpu().numpy() for t in flat]


def export(
    module: Any,
    args: tuple[Any, ...],
    names: Sequence[str],
    output_names: Sequence[str],
    dynamic_axes: DynamicAxes | None,
    opset: int | None,
) -> tuple[onnx.ModelProto, str, str | None]:
    """``(model, converter, fallback reason)``: the dynamo exporter, else the TorchScript one."""
    torch = require_torch()
    common: dict[str, Any] = {
        "input_names": list(names),
        "output_names": list(output_names),
        "opset_version": opset,
    }
    if dynamic_axes is not None:
        common["dynamic_axes"] = {k: dict(v) for k, v in dynamic_axes.items()}
    reason: str | None = None
    with quiet_converters():
        if isinstance(module, torch.jit.ScriptModule):
            reason = "a TorchScript module cannot be traced by torch.export, so the TorchScript exporter is used"
        else:
            try:
                program = torch.onnx.export(module, args, dynamo=True, **common)
                if program is None:
                    raise RuntimeError("the dynamo exporter returned no program")
                return program.model_proto, "torch.onnx (dynamo)", None
            except Exception as exc:  # any failure of torch.export is a reason to try the TorchScript exporter
                reason = f"the dynamo exporter failed: {first_line(exc)}"
        import io

        import onnx

        buffer = io.BytesIO()
        try:
            torch.onnx.export(module, args, buffer, dynamo=False, **common)
        except Exception as exc:
            raise InvalidModel(
                f"neither torch.onnx exporter could export the model: {reason}; TorchScript: {first_line(exc)}"
            ) from exc
    return onnx.load_from_string(buffer.getvalue()), "torch.onnx (torchscript)", reason


def _dynamic_axes(names: Sequence[str], args: Sequence[Any], given: DynamicAxes | None) -> dict[str, dict[int, str]]:
    if given is not None:
        unknown = sorted(set(given) - set(names))
        if unknown:
            raise InvalidArgument(
                f"dynamic_axes names unknown input(s) {', '.join(unknown)}; inputs: {', '.join(names)}"
            )
        return {k: {int(a): str(n) for a, n in v.items()} for k, v in given.items()}
    return {n: {0: "batch"} for n, a in zip(names, args, strict=True) if getattr(a, "ndim", 0) >= 1}


def _as_tuple(example_inputs: Any) -> tuple[Any, ...]:
    if isinstance(example_inputs, tuple | list):
        return tuple(example_inputs)
    return (example_inputs,)


def _flatten(result: Any) -> list[Any]:
    torch = require_torch()
    if isinstance(result, torch.Tensor):
        return [result]
    if hasattr(result, "to_tuple"):  # transformers' ModelOutput
        result = result.to_tuple()
    if isinstance(result, Mapping):
        result = list(result.values())
    if isinstance(result, tuple | list):
        return [t for item in result for t in _flatten(item)]
    return []
