"""Performance profiles for planning: reading ``honed bench --json`` (schema ``honed.bench/v1``) and its sources.

A profile is the measured latency/throughput curve of one model: one :class:`OperatingPoint` per bench row
(batch size, intra-op threads, concurrency -> model instances per replica, p99 latency, items/s) plus peak
memory and the time it takes to load the model. Where a profile comes from:

* ``profile: bench.json`` on a deployment (explicit);
* ``model: out/`` an optimize output folder: the winner in ``report.json`` when it carries bench-v1
  ``results``, else ``bench.json`` in that folder;
* ``profiles:`` on a fleet pool, for hardware this machine cannot measure (a GPU pool): such profiles are
  "declared, not measured", and that label travels with every placement that uses one.

The bench-v1 shape read here (extra keys are ignored)::

    {"schema": "honed.bench/v1", "model": {"path", "sha256", "flops_per_item"},
     "hardware": {"cpu_model", ...}, "runtime": {...}, "settings": {...},
     "results": [{"batch", "threads", "concurrency", "iterations",
                  "latency_ms": {"mean", "p50", "p90", "p99", "min", "max", "std"},
                  "throughput_items_per_s", ...}],
     "peak_rss_mb"}

A declared profile may add ``model_load_s``. The model-load time of a measured profile is measured here by
building the session through :func:`honed.runtime.create_session` (the only place sessions are built).
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from honed.bench.document import BenchDocument, BenchRow, read_bench
from honed.errors import InvalidArgument
from honed.jsonio import read_json
from honed.model.loader import resolve_model_path
from honed.plan.document import DECLARED, MEASURED, OperatingPoint, Profile
from honed.plan.spec import Deployment, Pool
from honed.search.document import REPORT_FILE, REPORT_SCHEMA, OptimizeReport

if TYPE_CHECKING:
    from honed.runtime import RuntimeConfig


def parse_bench(data: Any, *, origin: str, source: str, model_load_s: float | None = None) -> Profile:
    """Turn a bench-v1 mapping into a :class:`Profile`; every problem names ``origin``."""
    return profile_from(
        BenchDocument.from_dict(data, origin, schema_optional=source == DECLARED), origin, source, model_load_s
    )


def profile_from(doc: BenchDocument, origin: str, source: str, model_load_s: float | None = None) -> Profile:
    """A :class:`Profile` from a bench-v1 document; a profile without a model-load time is refused."""
    points = tuple(_point(row, f"{origin}: results[{i}]") for i, row in enumerate(doc.results))
    load = doc.model_load_s if doc.model_load_s is not None else model_load_s
    if load is None:
        raise InvalidArgument(f"{origin}: no model_load_s; declared profiles must state the model-load time")
    return Profile(
        points=points,
        source=source,
        origin=origin,
        hardware=doc.hardware_name,
        peak_rss_mb=doc.peak_rss_mb,
        model_load_s=float(load),
        model_path=doc.model.path,
        model_sha256=doc.model.sha256,
    )


def _point(row: BenchRow, where: str) -> OperatingPoint:
    if row.threads < 1:
        raise InvalidArgument(f"{where}: threads must be a whole number >= 1, got {row.threads!r}")
    return OperatingPoint(
        batch=row.batch,
        threads=row.threads,
        instances=row.concurrency,
        p99_ms=row.latency_ms.p99,
        mean_ms=row.latency_ms.mean,
        throughput=row.throughput_items_per_s,
    )


def _profile_file(path: str | Path) -> BenchDocument:
    """A bench-v1 file, or an optimize report.json (its winner's bench document)."""
    data = read_json(path, "profile file")
    if isinstance(data, dict) and data.get("schema") == REPORT_SCHEMA:
        return _winner_bench(OptimizeReport.from_dict(data, str(path)), str(path))
    return BenchDocument.from_dict(data, str(path))


def _winner_bench(report: OptimizeReport, origin: str) -> BenchDocument:
    if report.winner_bench is None:
        raise InvalidArgument(
            f"{origin}: the optimize report holds no measured winner (status {report.status!r}); "
            "rerun honed optimize, or give profile: bench.json from honed bench"
        )
    return report.winner_bench


def measure_load_time(model: str | Path, runtime: RuntimeConfig | None = None, repeats: int = 3) -> float:
    """Median seconds to build a ready session for ``model`` (what a new replica waits before serving)."""
    from honed.runtime import RuntimeConfig, create_session

    config = runtime or RuntimeConfig()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session = create_session(model, config)
        times.append(time.perf_counter() - start)
        del session
    return statistics.median(times)


def measured_profile(deployment: Deployment) -> Profile:
    """The deployment's measured profile, from ``profile:`` or its optimize output folder."""
    doc: BenchDocument | None = None
    origin = ""
    if deployment.profile is not None:
        origin = deployment.profile
        doc = _profile_file(origin)
        for extra in deployment.more_profiles:
            doc = _merge(doc, _profile_file(extra), extra)
            origin += f" + {extra}"
    elif deployment.model is not None and Path(deployment.model).is_dir():
        folder = Path(deployment.model)
        report, bench_file = folder / REPORT_FILE, folder / "bench.json"
        if report.is_file():
            doc, origin = _winner_bench(OptimizeReport.read(report), str(report)), f"{report} (winner)"
        elif bench_file.is_file():
            doc, origin = read_bench(bench_file), str(bench_file)
    if doc is None:
        raise InvalidArgument(
            f"deployment {deployment.name!r}: no profile found; give profile: bench.json "
            f"(from: honed bench MODEL --json > bench.json) or a model folder holding report.json or bench.json"
        )
    load = deployment.model_load_s if deployment.model_load_s is not None else doc.model_load_s
    if load is None:
        model = _model_file(deployment, doc)
        if model is None:
            raise InvalidArgument(
                f"deployment {deployment.name!r}: cannot measure the model-load time without the model file; "
                "give model: or model_load_s:"
            )
        load = measure_load_time(model, doc.runtime)
    return profile_from(doc, origin, MEASURED, model_load_s=load)


def _merge(first: BenchDocument, other: BenchDocument, origin: str) -> BenchDocument:
    """One curve from two bench-v1 runs of the same model (rows appended, the larger peak memory kept)."""
    sha = (first.model.sha256, other.model.sha256)
    if sha[0] and sha[1] and sha[0] != sha[1]:
        raise InvalidArgument(f"{origin}: profiles of different models (sha256 {sha[1][:12]} vs {sha[0][:12]})")
    return first.with_rows((*first.results, *other.results), max(first.peak_rss_mb, other.peak_rss_mb))


def _model_file(deployment: Deployment, bench: BenchDocument) -> Path | None:
    if deployment.model is not None:
        return resolve_model_path(deployment.model)
    if bench.model.path is not None and Path(bench.model.path).is_file():
        return Path(bench.model.path)
    return None


def declared_profile(pool: Pool, deployment: Deployment) -> Profile | None:
    """The profile a pool declares for a deployment, or None when it declares none."""
    value = pool.profiles.get(deployment.name)
    if value is None:
        return None
    if isinstance(value, str):
        return parse_bench(read_json(value, "profile file"), origin=value, source=DECLARED)
    return parse_bench(value, origin=f"fleet pool {pool.name} profiles.{deployment.name}", source=DECLARED)
