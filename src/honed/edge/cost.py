"""What a bundle costs to carry and run, measured: its size, the size of the environment it needs, the cold start
to its first answer, peak memory, and steady latency (``cost.json``, schema ``honed.edge-cost/1``).

Cold start and latency are the runner's own commands timed in subprocesses (``selftest`` from process start to
exit, ``bench`` for p50/p90). The environment is ``requirements.txt``: installed into a fresh virtual environment
from a local wheel folder when one is given (no network), otherwise summed from the installed files of the same
distributions and their dependencies here (their RECORD), which the report says.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from packaging.requirements import Requirement
from packaging.utils import canonicalize_name

from honed.edge.runner_files import runner_command
from honed.edge.versus import ServeComparison
from honed.errors import BackendError, InvalidArgument
from honed.fields import Document

COST_SCHEMA = "honed.edge-cost/1"
COST_FILE = "cost.json"
_TIMEOUT_S = 600


@dataclass(frozen=True)
class EnvironmentSize(Document):
    bytes: int
    method: str
    """``venv``: a fresh virtual environment with the requirements installed offline; ``record``: the installed
    files of the same distributions here."""
    distributions: Mapping[str, int] = field(default_factory=dict)
    """Distribution -> installed bytes (``record`` only)."""


@dataclass(frozen=True)
class BundleCost(Document):
    bundle_bytes: int
    environment: EnvironmentSize
    cold_start_s: float
    """Median wall time of ``python -m honed_edge selftest`` (interpreter start, imports, hash check, load, run)."""
    cold_start_runs_s: tuple[float, ...]
    peak_rss_bytes: int
    """The largest resident set of those selftest processes."""
    p50_ms: float
    p90_ms: float
    latency_count: int
    load_ms: Mapping[str, float]
    """Median session-creation time per format compared (from the format choice)."""
    machine: str
    versus_serve: ServeComparison | None = None
    """The runner's p50 against ``honed serve`` on the same model, measured in the same run."""

    def to_dict(self) -> dict[str, Any]:
        return {"schema": COST_SCHEMA, **super().to_dict()}


def bundle_size(bundle: Path, exclude: tuple[str, ...] = (COST_FILE,)) -> int:
    return sum(p.stat().st_size for p in bundle.rglob("*") if p.is_file() and p.name not in exclude)


def _folder_size(folder: Path) -> int:
    return sum(p.lstat().st_size for p in folder.rglob("*") if p.is_file() and not p.is_symlink())


def _closure(names: list[str]) -> list[importlib.metadata.Distribution]:
    """The named distributions and every dependency they need without extras, as installed here."""
    seen: dict[str, importlib.metadata.Distribution] = {}
    todo = list(names)
    while todo:
        name = canonicalize_name(todo.pop())
        if name in seen:
            continue
        try:
            dist = importlib.metadata.distribution(name)
        except importlib.metadata.PackageNotFoundError:
            raise InvalidArgument(f"{name} is not installed here, so its installed size cannot be read") from None
        seen[name] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    return list(seen.values())


def record_size(names: list[str]) -> EnvironmentSize:
    sizes: dict[str, int] = {}
    for dist in _closure(names):
        total = 0
        for entry in dist.files or []:
            path = Path(str(dist.locate_file(entry)))
            if path.is_file():
                total += path.stat().st_size
        sizes[f"{dist.metadata['Name']}=={dist.version}"] = total
    return EnvironmentSize(sum(sizes.values()), "record", dict(sorted(sizes.items())))


def venv_size(requirements: Path, wheelhouse: Path) -> EnvironmentSize:
    """Install ``requirements`` into a fresh virtual environment from ``wheelhouse`` only; its size less the bare
    environment's (pip itself is not what the bundle needs)."""
    if not wheelhouse.is_dir():
        raise InvalidArgument(f"--wheelhouse {wheelhouse} is not a folder of wheels")
    with tempfile.TemporaryDirectory(prefix="honed-edge-venv-") as tmp:
        env = Path(tmp) / "v"
        subprocess.run([sys.executable, "-m", "venv", str(env)], check=True, capture_output=True, timeout=_TIMEOUT_S)
        bare = _folder_size(env)
        pip = [str(env / "bin" / "python"), "-m", "pip", "install", "-q", "--no-index", "--find-links", str(wheelhouse)]
        done = subprocess.run(
            [*pip, "-r", str(requirements)], capture_output=True, text=True, timeout=_TIMEOUT_S, check=False
        )
        if done.returncode != 0:
            lines = [line for line in done.stderr.splitlines() if line.strip()]
            raise InvalidArgument(
                f"pip could not install the bundle's requirements from {wheelhouse}: {lines[-1] if lines else '?'}"
            )
        return EnvironmentSize(_folder_size(env) - bare, "venv")


def _run_measured(command: list[str], cwd: Path) -> tuple[float, int, int, str]:
    """(wall seconds, peak RSS bytes, exit code, stderr+stdout) of one process, timed from spawn to exit."""
    with tempfile.TemporaryFile() as output:
        started = time.perf_counter()
        process = subprocess.Popen(command, cwd=cwd, stdout=output, stderr=subprocess.STDOUT)
        _, status, usage = os.wait4(process.pid, 0)
        elapsed = time.perf_counter() - started
        process.returncode = os.waitstatus_to_exitcode(status)
        output.seek(0)
        text = output.read().decode(errors="replace")
    # ru_maxrss is in KiB on Linux
    return elapsed, int(usage.ru_maxrss) * 1024, process.returncode, text


def cold_starts(bundle: Path, runs: int = 3) -> tuple[tuple[float, ...], int]:
    """``selftest`` ``runs`` times: the wall times and the peak RSS; a selftest that fails is a BackendError."""
    times, peak = [], 0
    for _ in range(runs):
        elapsed, rss, code, text = _run_measured(runner_command("selftest"), bundle)
        if code != 0:
            raise BackendError(
                f"the bundle's selftest failed: {text.strip().splitlines()[-1] if text.strip() else code}"
            )
        times.append(elapsed)
        peak = max(peak, rss)
    return tuple(times), peak


def steady_latency(bundle: Path, count: int) -> dict[str, float]:
    done = subprocess.run(
        runner_command("bench", "--count", str(count)),
        cwd=bundle,
        capture_output=True,
        text=True,
        timeout=_TIMEOUT_S,
        check=False,
    )
    if done.returncode != 0:
        raise BackendError(f"the bundle's bench failed: {done.stderr.strip() or done.returncode}")
    data: dict[str, float] = json.loads(done.stdout.strip().splitlines()[-1])
    return data


def measure_cost(
    bundle: Path,
    requirements: list[str],
    *,
    load_ms: Mapping[str, float],
    latency_count: int = 200,
    cold_runs: int = 3,
    wheelhouse: Path | None = None,
    progress: Callable[[str], None] | None = None,
) -> BundleCost:
    """Measure ``bundle`` (its selftest must pass); ``requirements`` names its distributions (onnxruntime, numpy)."""
    say = progress or (lambda _: None)
    if cold_runs < 1 or latency_count < 1:
        raise InvalidArgument("cold-start runs and the latency count must be at least 1")
    say("environment size")
    environment = (
        venv_size(bundle / "requirements.txt", wheelhouse) if wheelhouse is not None else record_size(requirements)
    )
    say("cold start (selftest)")
    runs, peak = cold_starts(bundle, cold_runs)
    say("steady latency")
    latency = steady_latency(bundle, latency_count)
    return BundleCost(
        bundle_bytes=bundle_size(bundle),
        environment=environment,
        cold_start_s=statistics.median(runs),
        cold_start_runs_s=runs,
        peak_rss_bytes=peak,
        p50_ms=float(latency["p50_ms"]),
        p90_ms=float(latency["p90_ms"]),
        latency_count=latency_count,
        load_ms=dict(load_ms),
        machine=describe_machine(),
    )


def describe_machine() -> str:
    """CPU model, architecture, usable cores and the ISA extensions that decide kernel speed, in one line."""
    from honed.hardware import KEY_ISA, detect_hardware

    spec = detect_hardware()
    isa = " ".join(n for n in spec.isa if n in KEY_ISA) or "no key ISA extensions"
    return f"{spec.cpu_model} ({spec.arch}), {len(spec.usable_cores)} usable cores, {isa}"
