"""Latency measurement of one session on fixed feeds: warm-up, then timed runs by count or by duration.

With ``concurrency`` > 1, that many threads call the session at once (ONNX Runtime releases the GIL and its
``run`` is thread-safe), which is how a server with requests in flight sees the model.
"""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from honed.errors import InvalidArgument
from honed.runtime import pin_current_thread
from honed.runtime.base import Session

Clock = Callable[[], float]
Progress = Callable[[int], None]
"""Called with the number of runs just completed (for a progress bar)."""

DEFAULT_ITERATIONS = 100


@contextmanager
def pinned(cores: tuple[int, ...] | None) -> Iterator[None]:
    """Run the block with the calling thread on ``cores`` (Linux), as a session with that affinity expects:
    the thread that calls ``run`` executes work too. The thread's previous CPU set is restored after."""
    previous = os.sched_getaffinity(0) if cores and hasattr(os, "sched_getaffinity") else None
    try:
        pin_current_thread(cores)
        yield
    finally:
        if previous is not None:
            os.sched_setaffinity(0, previous)


@dataclass(frozen=True)
class LatencyStats:
    """Per-call latencies of one measurement, in milliseconds, and the wall time it took."""

    count: int
    mean_ms: float
    p50_ms: float
    p90_ms: float
    p99_ms: float
    min_ms: float
    max_ms: float
    std_ms: float
    wall_s: float
    concurrency: int = 1

    @classmethod
    def from_samples(cls, samples_s: list[float], wall_s: float, concurrency: int = 1) -> LatencyStats:
        if not samples_s:
            raise InvalidArgument("no timed runs completed; raise --iterations or --duration")
        ms = np.asarray(samples_s, dtype=np.float64) * 1e3
        p50, p90, p99 = np.percentile(ms, [50, 90, 99])
        return cls(
            count=len(ms),
            mean_ms=float(ms.mean()),
            p50_ms=float(p50),
            p90_ms=float(p90),
            p99_ms=float(p99),
            min_ms=float(ms.min()),
            max_ms=float(ms.max()),
            std_ms=float(ms.std()),
            wall_s=wall_s,
            concurrency=concurrency,
        )

    @property
    def calls_per_s(self) -> float:
        """Completed calls per second of wall time (all threads together)."""
        return self.count / self.wall_s if self.wall_s > 0 else 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def measure_latency(
    session: Session,
    feeds: Mapping[str, np.ndarray[Any, Any]],
    *,
    warmup: int = 5,
    iterations: int | None = None,
    duration_s: float | None = None,
    concurrency: int = 1,
    progress: Progress | None = None,
    clock: Clock = time.perf_counter,
    give_up_s: float | None = None,
) -> LatencyStats:
    """Time ``session.run(feeds)``.

    Stops after ``iterations`` timed calls (all threads together) or after ``duration_s`` seconds, whichever is
    given (``iterations`` defaults to 100 when neither is). Warm-up calls are not timed, except against
    ``give_up_s``: a warm-up call that takes longer ends the measurement there, and the stats are of that one call
    (``count`` 1), so a pathologically slow model costs one call, not a measurement's worth of them.
    """
    if concurrency < 1:
        raise InvalidArgument(f"concurrency must be >= 1, got {concurrency}")
    if warmup < 0:
        raise InvalidArgument(f"warm-up runs must be >= 0, got {warmup}")
    if iterations is not None and iterations < 1:
        raise InvalidArgument(f"iterations must be >= 1, got {iterations}")
    if duration_s is not None and duration_s <= 0:
        raise InvalidArgument(f"duration must be > 0 seconds, got {duration_s}")
    if give_up_s is not None and give_up_s <= 0:
        raise InvalidArgument(f"the give-up time must be > 0 seconds, got {give_up_s}")
    if iterations is None and duration_s is None:
        iterations = DEFAULT_ITERATIONS
    feeds = dict(feeds)
    with pinned(session.config.affinity):
        for _ in range(warmup):
            t0 = clock()
            session.run(feeds)
            elapsed = clock() - t0
            if give_up_s is not None and elapsed > give_up_s:
                return LatencyStats.from_samples([elapsed], elapsed, concurrency)

    samples: list[float] = []
    lock = threading.Lock()
    errors: list[BaseException] = []
    start = clock()
    deadline = start + duration_s if duration_s is not None else None

    claimed = [0]

    def claim() -> bool:
        with lock:
            if errors or (iterations is not None and claimed[0] >= iterations):
                return False
            if deadline is not None and clock() >= deadline:
                return False
            claimed[0] += 1
            return True

    def worker() -> None:
        try:
            with pinned(session.config.affinity):
                while claim():
                    t0 = clock()
                    session.run(feeds)
                    elapsed = clock() - t0
                    with lock:
                        samples.append(elapsed)
                    if progress is not None:
                        progress(1)
        except BaseException as exc:
            with lock:
                errors.append(exc)

    if concurrency == 1:
        worker()
    else:
        threads = [threading.Thread(target=worker, daemon=True) for _ in range(concurrency)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    wall = clock() - start
    if errors:
        raise errors[0]
    return LatencyStats.from_samples(samples, wall, concurrency)
