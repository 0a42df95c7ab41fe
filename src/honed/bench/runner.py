"""``honed bench``: latency and throughput of a model over batch sizes and thread counts, on this machine.

The result is a :class:`BenchReport` whose ``to_dict()`` is the ``honed.bench/v1`` JSON documented in
docs/bench.md; optimize and plan read that shape.
"""

from __future__ import annotations

import tempfile
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import onnx

from honed.bench.document import BenchDocument, BenchModel, BenchRow, LatencyBlock, items_per_second
from honed.bench.latency import LatencyStats, measure_latency
from honed.bench.memory import RssSampler, current_rss_bytes
from honed.bench.profile import OpProfile, parse_ort_profile
from honed.data.dataset import Dataset, batch_of, open_dataset
from honed.errors import InvalidArgument
from honed.hardware import HardwareSpec, detect_hardware
from honed.model.artifact import artifact_sha256, is_ir
from honed.model.flops import count_flops
from honed.model.loader import load_model, model_io, resolve_model_path
from honed.model.spec import concrete_shapes
from honed.runtime.config import RuntimeConfig
from honed.runtime.factory import create_session, runtime_for

_PROFILE_RUNS = 5
_INT8_OPS = {
    "QuantizeLinear",
    "DynamicQuantizeLinear",
    "MatMulInteger",
    "ConvInteger",
    "QLinearConv",
    "QLinearMatMul",
    "DynamicQuantizeMatMul",
    "MatMulIntegerToFloat",
}


@dataclass(frozen=True)
class BenchSettings:
    """What to measure. ``threads`` of 0 means the runtime config's own thread setting."""

    batches: tuple[int, ...] = (1,)
    threads: tuple[int, ...] = (0,)
    concurrency: int = 1
    warmup: int = 5
    iterations: int | None = None
    duration_s: float | None = None
    profile: bool = False
    top_ops: int = 10
    shapes: dict[str, tuple[int, ...]] = field(default_factory=dict)
    seed: int = 0
    vocab_size: int | None = None

    def __post_init__(self) -> None:
        if not self.batches or any(b < 1 for b in self.batches):
            raise InvalidArgument(f"batch sizes must be >= 1, got {list(self.batches)}")
        if not self.threads or any(t < 0 for t in self.threads):
            raise InvalidArgument(f"thread counts must be >= 0 (0 = default), got {list(self.threads)}")
        if self.concurrency < 1:
            raise InvalidArgument(f"concurrency must be >= 1, got {self.concurrency}")
        if self.iterations is not None and self.iterations < 1:
            raise InvalidArgument(f"iterations must be >= 1, got {self.iterations}")
        if self.duration_s is not None and self.duration_s <= 0:
            raise InvalidArgument(f"duration must be > 0 seconds, got {self.duration_s}")
        if self.warmup < 0:
            raise InvalidArgument(f"warm-up runs must be >= 0, got {self.warmup}")
        if self.vocab_size is not None and self.vocab_size < 1:
            raise InvalidArgument(f"--vocab-size must be >= 1, got {self.vocab_size}")
        if self.top_ops < 1:
            raise InvalidArgument(f"--top must be >= 1, got {self.top_ops}")

    def to_dict(self) -> dict[str, Any]:
        return {
            "batches": list(self.batches),
            "threads": list(self.threads),
            "concurrency": self.concurrency,
            "warmup": self.warmup,
            "iterations": self.iterations,
            "duration_s": self.duration_s,
            "profile": self.profile,
            "shapes": {k: list(v) for k, v in self.shapes.items()},
            "seed": self.seed,
            "vocab_size": self.vocab_size,
        }


@dataclass(frozen=True)
class BenchResult:
    """One measured case: a batch size and thread count."""

    batch: int
    threads: int
    concurrency: int
    latency: LatencyStats
    items_per_s: float
    achieved_gflops: float | None
    peak_fraction: float | None
    peak_rss_mb: float
    runtime: RuntimeConfig

    def row(self) -> BenchRow:
        """This case as a bench-v1 row."""
        return BenchRow(
            batch=self.batch,
            threads=self.threads,
            concurrency=self.concurrency,
            iterations=self.latency.count,
            latency_ms=LatencyBlock.from_stats(self.latency),
            throughput_items_per_s=self.items_per_s,
            achieved_gflops=self.achieved_gflops,
            peak_fraction=self.peak_fraction,
            peak_rss_mb=self.peak_rss_mb,
            runtime=self.runtime,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.row().to_dict()


@dataclass(frozen=True)
class BenchReport:
    """Everything one ``honed bench`` run measured."""

    model_path: Path
    sha256: str
    flops_per_item: float | None
    precision: str
    hardware: HardwareSpec
    runtime: RuntimeConfig
    settings: BenchSettings
    data: str
    results: list[BenchResult]
    peak_rss_mb: float
    session_rss_mb: float
    profile: OpProfile | None
    profile_case: dict[str, int] | None

    def document(self) -> BenchDocument:
        """The run as the ``honed.bench/v1`` document (what ``--json`` prints and ``honed plan`` reads)."""
        return BenchDocument(
            results=tuple(r.row() for r in self.results),
            model=BenchModel(str(self.model_path), self.sha256, self.flops_per_item, self.precision),
            hardware_name=self.hardware.cpu_model,
            hardware=self.hardware,
            runtime=self.runtime,
            peak_rss_mb=self.peak_rss_mb,
            session_rss_mb=self.session_rss_mb,
            data=self.data,
            settings=self.settings.to_dict(),
            profile=self.profile,
            profile_case=self.profile_case,
        )

    def to_dict(self) -> dict[str, Any]:
        return self.document().to_dict()


class BenchProgress:
    """Receives progress; the CLI passes one that drives a rich progress bar. Does nothing by default."""

    def start_case(self, label: str, total: int | None, duration_s: float | None) -> None:
        """A case begins: ``total`` timed runs, or runs for ``duration_s`` seconds."""

    def advance(self, runs: int) -> None:
        """``runs`` more timed runs completed."""


def ir_is_quantized(path: Path) -> bool:
    """Whether an OpenVINO IR holds INT8 quantization (FakeQuantize layers, as NNCF writes them)."""
    return 'type="FakeQuantize"' in path.read_text(errors="replace")


def model_precision(model: onnx.ModelProto | None, runtime: RuntimeConfig | None = None) -> str:
    """Which peak applies: ``int8`` when the graph computes in integers (quantized ops), ``bf16`` when the runtime
    is asked to compute in bfloat16, else ``fp32``. The one rule bench and optimize reports use."""
    if model is not None and any(node.op_type in _INT8_OPS for node in model.graph.node):
        return "int8"
    if runtime is not None and str(runtime.options.get("INFERENCE_PRECISION_HINT", "f32")).lower() == "bf16":
        return "bf16"
    return "fp32"


def run_bench(
    model: str | Path,
    settings: BenchSettings | None = None,
    runtime: RuntimeConfig | None = None,
    *,
    data: str | Path | Dataset | None = None,
    hardware: HardwareSpec | None = None,
    progress: BenchProgress | None = None,
    on_result: Callable[[BenchResult], None] | None = None,
) -> BenchReport:
    """Measure ``model`` for every (threads, batch) pair in ``settings``; see :class:`BenchReport`."""
    settings = settings or BenchSettings()
    runtime = runtime or RuntimeConfig()
    progress = progress or BenchProgress()
    path = resolve_model_path(model)
    if is_ir(path):
        # OpenVINO IR runs on OpenVINO only; its FLOPs are not counted (the counter reads ONNX graphs)
        runtime = runtime_for(path, runtime)
        inputs = list(create_session(path, runtime).inputs)
        precision = "int8" if ir_is_quantized(path) else model_precision(None, runtime)
        flops_per_item = None
    else:
        proto = load_model(path)
        inputs, _ = model_io(proto)
        precision = model_precision(proto, runtime)
        flops_per_item = _flops_per_item(proto, inputs, settings)
        del proto
    dataset = _dataset(data, inputs, settings)
    hardware = hardware or detect_hardware()
    peak = hardware.peak_gflops(precision)

    results: list[BenchResult] = []
    overall_peak = 0
    session_rss = 0.0
    for threads in settings.threads:
        config = runtime.with_(intra_op_threads=threads) if threads else runtime
        before = current_rss_bytes()
        session = create_session(path, config)
        session_rss = max(session_rss, (current_rss_bytes() - before) / 2**20)
        for batch in settings.batches:
            feeds = batch_of(dataset, batch)
            progress.start_case(
                f"batch {batch}, threads {config.threads or 'auto'}", settings.iterations, settings.duration_s
            )
            with RssSampler() as rss:
                stats = measure_latency(
                    session,
                    feeds,
                    warmup=settings.warmup,
                    iterations=settings.iterations,
                    duration_s=settings.duration_s,
                    concurrency=settings.concurrency,
                    progress=progress.advance,
                )
            overall_peak = max(overall_peak, rss.peak_bytes)
            items_per_s = items_per_second(stats, batch)
            gflops = flops_per_item * items_per_s / 1e9 if flops_per_item else None
            result = BenchResult(
                batch=batch,
                threads=config.threads or hardware.default_threads,
                concurrency=settings.concurrency,
                latency=stats,
                items_per_s=items_per_s,
                achieved_gflops=gflops,
                peak_fraction=gflops / peak if gflops is not None and peak else None,
                peak_rss_mb=rss.peak_bytes / 2**20,
                runtime=config,
            )
            results.append(result)
            if on_result is not None:
                on_result(result)
        del session

    op_profile, case = None, None
    if settings.profile:
        op_profile, case = _profile(path, runtime, settings, dataset)
    return BenchReport(
        model_path=path,
        sha256=artifact_sha256(path),
        flops_per_item=flops_per_item,
        precision=precision,
        hardware=hardware,
        runtime=runtime,
        settings=settings,
        data=dataset.describe(),
        results=results,
        peak_rss_mb=overall_peak / 2**20,
        session_rss_mb=session_rss,
        profile=op_profile,
        profile_case=case,
    )


def _dataset(data: str | Path | Dataset | None, inputs: list[Any], settings: BenchSettings) -> Dataset:
    if data is None or isinstance(data, str | Path):
        return open_dataset(
            data,
            inputs,
            shapes=settings.shapes or None,
            num_samples=max(settings.batches),
            seed=settings.seed,
            int_high=settings.vocab_size,
        )
    return data


def _flops_per_item(proto: onnx.ModelProto, inputs: list[Any], settings: BenchSettings) -> float | None:
    shapes = concrete_shapes(inputs, settings.shapes or None, batch=1)
    count = count_flops(proto, shapes)
    batch = next(iter(shapes.values()))[0] if shapes else 1
    return count.total / batch if count.total else None


def _profile(
    path: Path, runtime: RuntimeConfig, settings: BenchSettings, dataset: Dataset
) -> tuple[OpProfile, dict[str, int]]:
    """One extra profiled measurement at the largest batch and the first thread setting."""
    threads = settings.threads[0]
    config = runtime.with_(intra_op_threads=threads) if threads else runtime
    batch = max(settings.batches)
    with tempfile.TemporaryDirectory(prefix="honed-profile-") as tmp:
        session = create_session(path, config, profile_dir=Path(tmp))
        measure_latency(
            session,
            batch_of(dataset, batch),
            warmup=1,
            iterations=min(settings.iterations or _PROFILE_RUNS, 50),
            concurrency=1,
        )
        trace = session.end_profiling()
        if trace is None:
            raise InvalidArgument(f"the {config.backend} backend does not support --profile")
        parsed = parse_ort_profile(trace, top=settings.top_ops)
    return parsed, {"batch": batch, "threads": config.threads}
