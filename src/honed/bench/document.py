"""The ``honed.bench/v1`` document: what ``honed bench --json`` writes, what an optimize report carries for its
winner, and what ``honed plan`` reads as a measured profile.

The types here are the document; :mod:`honed.bench.runner` produces them and every reader goes through
:meth:`BenchDocument.from_dict` (or :func:`read_bench`), which names the file and the field when a document is
wrong. The throughput formula (:func:`items_per_second`) lives here once, for bench and search alike.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

from honed.bench.latency import LatencyStats
from honed.bench.profile import OpProfile
from honed.errors import InvalidArgument
from honed.fields import Document, Fields
from honed.hardware import HardwareSpec
from honed.jsonio import read_json
from honed.runtime.config import RuntimeConfig

SCHEMA = "honed.bench/v1"
PRECISIONS = ("fp32", "bf16", "int8")


def items_per_second(stats: LatencyStats, batch: int) -> float:
    """Items per second over a measurement: completed calls per second of wall time (all threads) times the batch."""
    return stats.calls_per_s * batch


class _Fields(Fields):
    """Typed reads of one bench-v1 object; every number in one is finite and >= 0."""

    number_kind = "a finite number"


@dataclass(frozen=True)
class LatencyBlock:
    """bench-v1's ``latency_ms`` block: per-call latency statistics in milliseconds.

    ``mean`` and ``p99`` are what planning needs; a declared profile may state only those two.
    """

    mean: float
    p99: float
    p50: float | None = None
    p90: float | None = None
    min: float | None = None
    max: float | None = None
    std: float | None = None

    @classmethod
    def from_stats(cls, stats: LatencyStats) -> LatencyBlock:
        return cls(**{f.name: getattr(stats, f"{f.name}_ms") for f in fields(cls)})

    def to_dict(self) -> dict[str, float | None]:
        return {
            "mean": self.mean,
            "p50": self.p50,
            "p90": self.p90,
            "p99": self.p99,
            "min": self.min,
            "max": self.max,
            "std": self.std,
        }

    @classmethod
    def from_dict(cls, data: Any, where: str) -> LatencyBlock:
        f = _Fields(data, where)
        for key in ("mean", "p99"):
            if key not in f.data:
                raise InvalidArgument(f"{where}: missing {key} (a latency block needs at least mean and p99)")
        return cls(
            mean=f.number("mean", bound="> 0"),
            p99=f.number("p99", bound="> 0"),
            **{k: f.opt_number(k, bound=">= 0") for k in ("p50", "p90", "min", "max", "std")},
        )


@dataclass(frozen=True)
class BenchRow(Document):
    """One measured case: a batch size, a thread count and a number of concurrent callers."""

    json_unless_none = ("runtime",)

    batch: int
    threads: int
    concurrency: int
    iterations: int
    latency_ms: LatencyBlock
    throughput_items_per_s: float
    achieved_gflops: float | None = None
    peak_fraction: float | None = None
    peak_rss_mb: float | None = None
    runtime: RuntimeConfig | None = None

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BenchRow:
        f = _Fields(data, where)
        row = f.data
        if "latency_ms" not in row:
            raise InvalidArgument(
                f"{where}: missing latency_ms (a bench row needs batch, threads, latency_ms, throughput_items_per_s)"
            )
        runtime = row.get("runtime")
        return cls(
            batch=f.whole("batch", minimum=1),
            threads=f.whole("threads", minimum=0),
            concurrency=f.whole("concurrency", minimum=1, default=1),
            iterations=f.whole("iterations", minimum=0, default=0),
            latency_ms=LatencyBlock.from_dict(row["latency_ms"], f"{where}.latency_ms"),
            throughput_items_per_s=f.number("throughput_items_per_s", bound="> 0"),
            achieved_gflops=f.opt_number("achieved_gflops", bound=">= 0"),
            peak_fraction=f.opt_number("peak_fraction", bound=">= 0"),
            peak_rss_mb=f.opt_number("peak_rss_mb", bound=">= 0"),
            runtime=_runtime(runtime, f"{where}.runtime") if runtime is not None else None,
        )


def _runtime(data: Any, where: str) -> RuntimeConfig:
    try:
        return RuntimeConfig.from_dict(dict(_Fields(data, where).data))
    except InvalidArgument as exc:
        raise InvalidArgument(f"{where}: {exc}") from exc


@dataclass(frozen=True)
class BenchModel(Document):
    """Which model was measured."""

    path: str | None
    sha256: str | None
    flops_per_item: float | None = None
    precision: str = "fp32"

    @classmethod
    def from_dict(cls, data: Any, where: str) -> BenchModel:
        f = _Fields(data, where)
        model = f.data
        precision = model.get("precision", "fp32")
        if precision not in PRECISIONS:
            raise InvalidArgument(f"{where}: precision must be one of {', '.join(PRECISIONS)}, got {precision!r}")
        return cls(
            path=None if model.get("path") is None else str(model["path"]),
            sha256=None if model.get("sha256") is None else str(model["sha256"]),
            flops_per_item=f.opt_number("flops_per_item", bound=">= 0"),
            precision=precision,
        )


@dataclass(frozen=True)
class BenchDocument:
    """A whole ``honed.bench/v1`` document: the model, the hardware, and one row per measured case.

    ``hardware_name`` is what a planner shows (the CPU model, or the first GPU's name); ``hardware`` the full spec
    when the document was measured by honed (a declared profile may name its hardware only). ``model_load_s`` is
    stated by declared profiles; measured ones leave it to the reader to measure.
    """

    results: tuple[BenchRow, ...]
    model: BenchModel
    hardware_name: str
    hardware: HardwareSpec | None = None
    runtime: RuntimeConfig | None = None
    peak_rss_mb: float = 0.0
    session_rss_mb: float | None = None
    model_load_s: float | None = None
    data: str | None = None
    settings: Mapping[str, Any] | None = None
    profile: OpProfile | None = None
    profile_case: Mapping[str, int] | None = None

    def to_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {
            "schema": SCHEMA,
            "model": self.model.to_dict(),
            "hardware": self.hardware.to_dict() if self.hardware is not None else {"name": self.hardware_name},
            "runtime": self.runtime.to_dict() if self.runtime is not None else None,
            "settings": dict(self.settings) if self.settings is not None else None,
            "data": self.data,
            "results": [r.to_dict() for r in self.results],
            "peak_rss_mb": self.peak_rss_mb,
            "session_rss_mb": self.session_rss_mb,
            "profile": None if self.profile is None else {**(self.profile_case or {}), **self.profile.to_dict()},
        }
        if self.model_load_s is not None:
            data["model_load_s"] = self.model_load_s
        return data

    def with_rows(self, rows: tuple[BenchRow, ...], peak_rss_mb: float) -> BenchDocument:
        """The same document with other rows (curves of one model merged)."""
        from dataclasses import replace

        return replace(self, results=rows, peak_rss_mb=peak_rss_mb)

    @classmethod
    def from_dict(cls, data: Any, origin: str, *, schema_optional: bool = False) -> BenchDocument:
        """Read a bench-v1 mapping; ``origin`` (a file name, or where in a file) starts every error message.

        ``schema_optional`` admits a mapping without ``schema`` (a profile declared inline in a fleet file).
        """
        if not isinstance(data, Mapping):
            raise InvalidArgument(
                f"{origin}: a bench document must be a JSON object (write it with honed bench --json)"
            )
        schema = data.get("schema", SCHEMA if schema_optional else None)
        if schema != SCHEMA:
            raise InvalidArgument(
                f"{origin}: expected schema {SCHEMA!r}, got {schema!r}; write it with honed bench --json"
            )
        rows = data.get("results")
        if not isinstance(rows, list) or not rows:
            raise InvalidArgument(f"{origin}: 'results' must be a non-empty list of bench rows")
        results = tuple(BenchRow.from_dict(row, f"{origin}: results[{i}]") for i, row in enumerate(rows))
        hardware, name = _hardware(data.get("hardware"), f"{origin}: hardware")
        f = _Fields(data, origin)
        runtime = data.get("runtime")
        profile = data.get("profile")
        settings = data.get("settings")
        return cls(
            results=results,
            model=BenchModel.from_dict(data.get("model") or {}, f"{origin}: model"),
            hardware_name=name,
            hardware=hardware,
            runtime=_runtime(runtime, f"{origin}: runtime") if runtime is not None else None,
            peak_rss_mb=f.number("peak_rss_mb", bound=">= 0", default=0.0),
            session_rss_mb=f.opt_number("session_rss_mb", bound=">= 0"),
            model_load_s=f.opt_number("model_load_s", bound=">= 0"),
            data=None if data.get("data") is None else str(data["data"]),
            settings=_Fields(settings, f"{origin}: settings").data if settings is not None else None,
            profile=OpProfile.from_dict(profile, f"{origin}: profile") if profile is not None else None,
            profile_case=(
                {k: int(profile[k]) for k in ("batch", "threads") if isinstance(profile.get(k), int)}
                if isinstance(profile, Mapping)
                else None
            ),
        )


def _hardware(data: Any, where: str) -> tuple[HardwareSpec | None, str]:
    """The full spec when ``data`` is one, and the name a planner shows (the first GPU's, else the CPU's)."""
    if data is None:
        return None, "unknown hardware"
    if isinstance(data, str):
        return None, data
    hw = _Fields(data, where).data
    spec = None
    if "cpu_model" in hw and "usable_cores" in hw:
        try:
            spec = HardwareSpec.from_dict(hw)
        except InvalidArgument as exc:
            raise InvalidArgument(f"{where}: {exc}") from exc
    name = str(hw.get("cpu_model") or hw.get("name") or "unknown hardware")
    gpus = hw.get("gpus")
    if isinstance(gpus, list) and gpus and isinstance(gpus[0], Mapping):
        name = str(gpus[0].get("name") or gpus[0].get("model") or name)
    return spec, name


def read_bench(path: str | Path) -> BenchDocument:
    """Read a ``honed bench --json`` file."""
    return BenchDocument.from_dict(read_json(path, "bench file"), str(path))
