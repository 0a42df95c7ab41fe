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

import json
import math
import statistics
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from honed.errors import InvalidArgument
from honed.model.loader import resolve_model_path
from honed.plan.spec import Deployment, Pool

SCHEMA = "honed.bench/v1"
MEASURED = "measured"
DECLARED = "declared, not measured"


@dataclass(frozen=True)
class OperatingPoint:
    """One measured (or declared) way to run the model: a bench row."""

    batch: int
    threads: int
    instances: int
    p99_ms: float
    mean_ms: float
    throughput: float
    """Items per second the replica sustained at this point, all instances together."""

    def to_dict(self) -> dict[str, Any]:
        return {
            "batch": self.batch,
            "threads": self.threads,
            "instances": self.instances,
            "p99_ms": self.p99_ms,
            "mean_ms": self.mean_ms,
            "throughput_items_per_s": self.throughput,
        }


@dataclass(frozen=True)
class Profile:
    """A model's latency/throughput curve on one kind of hardware, with where it came from."""

    points: tuple[OperatingPoint, ...]
    source: str
    origin: str
    hardware: str
    peak_rss_mb: float
    model_load_s: float
    model_path: str | None = None
    model_sha256: str | None = None

    @property
    def declared(self) -> bool:
        return self.source == DECLARED

    def to_dict(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "origin": self.origin,
            "hardware": self.hardware,
            "peak_rss_mb": self.peak_rss_mb,
            "model_load_s": self.model_load_s,
            "model_path": self.model_path,
            "model_sha256": self.model_sha256,
            "points": [p.to_dict() for p in self.points],
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Profile:
        """Rebuild a profile stored in plan.json by :meth:`to_dict`."""
        try:
            points = tuple(
                OperatingPoint(
                    batch=int(p["batch"]),
                    threads=int(p["threads"]),
                    instances=int(p["instances"]),
                    p99_ms=float(p["p99_ms"]),
                    mean_ms=float(p["mean_ms"]),
                    throughput=float(p["throughput_items_per_s"]),
                )
                for p in data["points"]
            )
            return cls(
                points=points,
                source=str(data["source"]),
                origin=str(data["origin"]),
                hardware=str(data["hardware"]),
                peak_rss_mb=float(data["peak_rss_mb"]),
                model_load_s=float(data["model_load_s"]),
                model_path=data.get("model_path"),
                model_sha256=data.get("model_sha256"),
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise InvalidArgument(f"a profile in the plan is malformed ({exc}); regenerate it with honed plan") from exc


def read_json(path: str | Path) -> Any:
    p = Path(path)
    if not p.is_file():
        raise InvalidArgument(f"profile file not found: {p}")
    try:
        return json.loads(p.read_text(encoding="utf-8"))
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise InvalidArgument(f"{p} is not valid JSON: {exc}") from exc


def parse_bench(data: Any, *, origin: str, source: str, model_load_s: float | None = None) -> Profile:
    """Turn a bench-v1 mapping into a :class:`Profile`; every problem names ``origin``."""
    if not isinstance(data, dict):
        raise InvalidArgument(f"{origin}: a profile must be a bench-v1 JSON object")
    schema = data.get("schema", SCHEMA if source == DECLARED else None)
    if schema != SCHEMA:
        raise InvalidArgument(f"{origin}: expected schema {SCHEMA!r}, got {schema!r}; write it with honed bench --json")
    rows = data.get("results")
    if not isinstance(rows, list) or not rows:
        raise InvalidArgument(f"{origin}: 'results' must be a non-empty list of bench rows")
    points = tuple(_point(row, f"{origin}: results[{i}]") for i, row in enumerate(rows))
    hw = data.get("hardware") or {}
    hardware = str(hw.get("cpu_model") or hw.get("name") or "unknown hardware") if isinstance(hw, dict) else str(hw)
    if isinstance(hw, dict) and hw.get("gpus"):
        gpus = hw["gpus"]
        if isinstance(gpus, list) and gpus and isinstance(gpus[0], dict):
            hardware = str(gpus[0].get("name") or gpus[0].get("model") or hardware)
    rss = data.get("peak_rss_mb", 0.0)
    if isinstance(rss, bool) or not isinstance(rss, int | float) or rss < 0:
        raise InvalidArgument(f"{origin}: peak_rss_mb must be a number >= 0")
    load = data.get("model_load_s", model_load_s)
    if load is None:
        raise InvalidArgument(f"{origin}: no model_load_s; declared profiles must state the model-load time")
    if isinstance(load, bool) or not isinstance(load, int | float) or load < 0:
        raise InvalidArgument(f"{origin}: model_load_s must be a number >= 0")
    model: dict[str, Any] = data["model"] if isinstance(data.get("model"), dict) else {}
    return Profile(
        points=points,
        source=source,
        origin=origin,
        hardware=hardware,
        peak_rss_mb=float(rss),
        model_load_s=float(load),
        model_path=model.get("path"),
        model_sha256=model.get("sha256"),
    )


def _point(row: Any, where: str) -> OperatingPoint:
    if not isinstance(row, dict):
        raise InvalidArgument(f"{where}: a bench row must be an object")
    try:
        lat = row["latency_ms"]
        values = {
            "batch": row["batch"],
            "threads": row["threads"],
            "concurrency": row.get("concurrency", 1),
            "p99": lat["p99"],
            "mean": lat["mean"],
            "throughput": row["throughput_items_per_s"],
        }
    except (KeyError, TypeError) as exc:
        raise InvalidArgument(f"{where}: missing {exc} (need batch, threads, latency_ms.p99/mean, throughput)") from exc
    for key in ("batch", "threads", "concurrency"):
        v = values[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < 1:
            raise InvalidArgument(f"{where}: {key} must be a whole number >= 1, got {v!r}")
    for key in ("p99", "mean", "throughput"):
        v = values[key]
        if isinstance(v, bool) or not isinstance(v, int | float) or not math.isfinite(v) or v <= 0:
            raise InvalidArgument(f"{where}: {key} must be a number > 0, got {v!r}")
    return OperatingPoint(
        batch=values["batch"],
        threads=values["threads"],
        instances=values["concurrency"],
        p99_ms=float(values["p99"]),
        mean_ms=float(values["mean"]),
        throughput=float(values["throughput"]),
    )


def _winner_bench(report: Any) -> dict[str, Any] | None:
    """The bench-v1 block of an optimize report's winner, wherever the report nests it."""
    if not isinstance(report, dict):
        return None
    winner = report.get("winner")
    if not isinstance(winner, dict):
        return None
    for candidate in (winner, winner.get("profile"), winner.get("bench")):
        if isinstance(candidate, dict) and isinstance(candidate.get("results"), list):
            merged = dict(candidate)
            merged.setdefault("schema", SCHEMA)
            return merged
    return None


def measure_load_time(model: str | Path, runtime: dict[str, Any] | None = None, repeats: int = 3) -> float:
    """Median seconds to build a ready session for ``model`` (what a new replica waits before serving)."""
    from honed.runtime import RuntimeConfig, create_session

    config = RuntimeConfig.from_dict(runtime) if runtime else RuntimeConfig()
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        session = create_session(model, config)
        times.append(time.perf_counter() - start)
        del session
    return statistics.median(times)


def measured_profile(deployment: Deployment) -> Profile:
    """The deployment's measured profile, from ``profile:`` or its optimize output folder."""
    data: Any = None
    origin = ""
    if deployment.profile is not None:
        origin = deployment.profile
        data = read_json(origin)
        bench = _winner_bench(data)
        if bench is not None:
            data = bench
        for extra in deployment.more_profiles:
            data = _merge(data, read_json(extra), extra)
            origin += f" + {extra}"
    elif deployment.model is not None and Path(deployment.model).is_dir():
        folder = Path(deployment.model)
        report, bench_file = folder / "report.json", folder / "bench.json"
        if report.is_file() and (bench := _winner_bench(read_json(report))) is not None:
            data, origin = bench, f"{report} (winner)"
        elif bench_file.is_file():
            data, origin = read_json(bench_file), str(bench_file)
    if data is None:
        raise InvalidArgument(
            f"deployment {deployment.name!r}: no profile found; give profile: bench.json "
            f"(from: honed bench MODEL --json > bench.json) or a model folder holding report.json or bench.json"
        )
    load = deployment.model_load_s
    if load is None and isinstance(data.get("model_load_s"), int | float):
        load = float(data["model_load_s"])
    if load is None:
        model = _model_file(deployment, data)
        if model is None:
            raise InvalidArgument(
                f"deployment {deployment.name!r}: cannot measure the model-load time without the model file; "
                "give model: or model_load_s:"
            )
        runtime = data.get("runtime") if isinstance(data.get("runtime"), dict) else None
        load = measure_load_time(model, runtime)
    return parse_bench({**data, "model_load_s": load}, origin=origin, source=MEASURED)


def _merge(first: dict[str, Any], other: Any, origin: str) -> dict[str, Any]:
    """One curve from two bench-v1 runs of the same model (rows appended, the larger peak memory kept)."""
    if not isinstance(other, dict) or not isinstance(other.get("results"), list):
        raise InvalidArgument(f"{origin}: not a bench-v1 document with results")
    sha = [(d.get("model") or {}).get("sha256") for d in (first, other)]
    if sha[0] and sha[1] and sha[0] != sha[1]:
        raise InvalidArgument(f"{origin}: profiles of different models (sha256 {sha[1][:12]} vs {sha[0][:12]})")
    rss = max(float(first.get("peak_rss_mb") or 0.0), float(other.get("peak_rss_mb") or 0.0))
    return {**first, "results": [*first.get("results", []), *other["results"]], "peak_rss_mb": rss}


def _model_file(deployment: Deployment, bench: dict[str, Any]) -> Path | None:
    if deployment.model is not None:
        return resolve_model_path(deployment.model)
    model = bench.get("model")
    if isinstance(model, dict) and isinstance(model.get("path"), str) and Path(model["path"]).is_file():
        return Path(model["path"])
    return None


def declared_profile(pool: Pool, deployment: Deployment) -> Profile | None:
    """The profile a pool declares for a deployment, or None when it declares none."""
    value = pool.profiles.get(deployment.name)
    if value is None:
        return None
    if isinstance(value, str):
        return parse_bench(read_json(value), origin=value, source=DECLARED)
    return parse_bench(value, origin=f"fleet pool {pool.name} profiles.{deployment.name}", source=DECLARED)
