"""Which file the bundle carries: the ONNX model, or ONNX Runtime's ORT format when that loads faster here.

The ORT file is made by ``onnxruntime.tools.convert_onnx_models_to_ort`` (optimization style ``Fixed`` at the
session's recorded graph level; the converter leaves out layout transforms tied to one CPU), in a subprocess
so its progress lines stay off honed's output. The two are timed as the runner opens them (its own
``open_session``, in a fresh interpreter, alternating, median of a few loads) and the faster is kept; the
reason, with both figures, goes into the manifest.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.edge.runner_files import python_command, runner_source
from honed.errors import BackendError, InvalidArgument

FORMAT_CHOICES = ("auto", "onnx", "ort", "openvino-ir")
"""``auto``: the measured runtime's (an IR winner is always bundled as IR; ONNX measured on OpenVINO becomes IR;
other ONNX as ONNX or ORT, whichever opens faster); ``onnx``/``ort`` run on ONNX Runtime, ``openvino-ir`` on
OpenVINO."""
LOAD_REPEATS = 5
_TIMEOUT_S = 600

_TIME_LOADS = """
import json, statistics, sys, time
sys.path.insert(0, sys.argv[1])
from honed_edge.ort_engine import open_session
settings, repeats, paths = json.loads(sys.argv[2]), int(sys.argv[3]), sys.argv[4:]
times = {p: [] for p in paths}
for _ in range(repeats):
    for p in paths:
        started = time.perf_counter()
        open_session(p, settings)
        times[p].append(time.perf_counter() - started)
print(json.dumps({p: statistics.median(v) * 1000 for p, v in times.items()}))
"""


@dataclass(frozen=True)
class FormatChoice:
    path: Path
    format: str
    reason: str
    load_ms: Mapping[str, float]
    """Format -> median session-creation time in ms (empty when only one format was possible or asked for)."""
    required_operators: Path | None


def convert_to_ort(onnx_path: Path, work: Path, graph_optimization: str) -> tuple[Path, Path | None]:
    """``work/model.ort`` (and the required-operators config) from ``onnx_path``; BackendError with the converter's
    last line when it cannot hold the model."""
    work.mkdir(parents=True, exist_ok=True)
    staged = work / "model.onnx"
    shutil.copyfile(onnx_path, staged)
    env = dict(os.environ, ORT_CONVERT_ONNX_MODELS_TO_ORT_OPTIMIZATION_LEVEL=graph_optimization)
    command = python_command(
        "import runpy; runpy.run_module('onnxruntime.tools.convert_onnx_models_to_ort', run_name='__main__')",
        str(staged),
        "--output_dir",
        str(work / "ort"),
        "--optimization_style",
        "Fixed",
    )
    done = subprocess.run(command, capture_output=True, text=True, env=env, timeout=_TIMEOUT_S, check=False)
    suffix = "" if graph_optimization == "all" else f".{graph_optimization}"
    ort_file = work / "ort" / f"model{suffix}.ort"
    if done.returncode != 0 or not ort_file.is_file():
        lines = [line for line in (done.stderr + done.stdout).splitlines() if line.strip()]
        raise BackendError(f"the ORT format converter failed: {lines[-1] if lines else 'no output'}")
    config = work / "ort" / f"model.required_operators{suffix}.config"
    return ort_file, config if config.is_file() else None


def convert_to_ir(onnx_path: Path, dest: Path) -> Path:
    """``dest`` (``model.xml`` + ``model.bin``) from ``onnx_path`` as OpenVINO reads it, weights kept as they are
    (no FP16 compression); BackendError when OpenVINO is not installed or cannot read the model."""
    try:
        import openvino as ov
    except ImportError:
        raise BackendError(
            "a bundle that runs on OpenVINO needs openvino here to convert the model: pip install 'honed[openvino]'"
        ) from None
    try:
        ov.save_model(ov.Core().read_model(str(onnx_path)), str(dest), compress_to_fp16=False)
    except RuntimeError as exc:
        raise BackendError(f"OpenVINO cannot convert {onnx_path.name}: {str(exc).splitlines()[0]}") from exc
    return dest


def time_loads(paths: list[Path], settings: Mapping[str, Any], repeats: int = LOAD_REPEATS) -> dict[Path, float]:
    """Median ms to open each model with the runner's own session code, in one fresh interpreter."""
    command = python_command(
        _TIME_LOADS, str(runner_source().parent), json.dumps(dict(settings)), str(repeats), *map(str, paths)
    )
    done = subprocess.run(command, capture_output=True, text=True, timeout=_TIMEOUT_S, check=False)
    if done.returncode != 0:
        lines = [line for line in done.stderr.splitlines() if line.strip()]
        raise BackendError(f"timing the model loads failed: {lines[-1] if lines else 'no output'}")
    measured = json.loads(done.stdout.strip().splitlines()[-1])
    return {Path(p): float(ms) for p, ms in measured.items()}


def choose_format(onnx_path: Path, work: Path, settings: Mapping[str, Any], wanted: str = "auto") -> FormatChoice:
    if wanted not in FORMAT_CHOICES:
        raise InvalidArgument(f"--format must be one of {', '.join(FORMAT_CHOICES)}; got {wanted!r}")
    if wanted == "openvino-ir":
        raise InvalidArgument("--format openvino-ir is OpenVINO's: choose_format picks between ONNX Runtime's formats")
    if wanted == "onnx":
        return FormatChoice(onnx_path, "onnx", "ONNX asked for (--format onnx)", {}, None)
    try:
        ort_file, config = convert_to_ort(onnx_path, work, str(settings.get("graph_optimization", "all")))
    except BackendError as exc:
        if wanted == "ort":
            raise
        return FormatChoice(onnx_path, "onnx", f"kept ONNX: {exc}", {}, None)
    loads = time_loads([onnx_path, ort_file], settings)
    load_ms = {"onnx": loads[onnx_path], "ort": loads[ort_file]}
    figures = f"ORT format {load_ms['ort']:.2f} ms, ONNX {load_ms['onnx']:.2f} ms to open (median of {LOAD_REPEATS})"
    if wanted == "ort":
        return FormatChoice(ort_file, "ort", f"ORT format asked for (--format ort); {figures}", load_ms, config)
    if load_ms["ort"] < load_ms["onnx"]:
        return FormatChoice(ort_file, "ort", f"ORT format opens faster here: {figures}", load_ms, config)
    return FormatChoice(onnx_path, "onnx", f"ONNX opens as fast or faster here: {figures}", load_ms, config)
