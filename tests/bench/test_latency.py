from __future__ import annotations

import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any, ClassVar

import numpy as np
import pytest

from honed.bench import LatencyStats, measure_latency
from honed.errors import InvalidArgument
from honed.model import TensorSpec
from honed.runtime import RuntimeConfig


class FakeClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


class SteppingSession:
    """Each run advances the fake clock by the next of ``durations`` (cycled)."""

    def __init__(self, clock: FakeClock, durations: list[float]) -> None:
        self.clock, self.durations, self.calls = clock, durations, 0

    inputs: ClassVar[list[TensorSpec]] = []
    outputs: ClassVar[list[TensorSpec]] = []
    config = RuntimeConfig()

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        self.clock.now += self.durations[self.calls % len(self.durations)]
        self.calls += 1
        return {}

    def end_profiling(self) -> Path | None:
        return None


def test_percentiles_from_known_durations() -> None:
    clock = FakeClock()
    # 100 timed runs of 1..100 ms after 3 untimed warm-up runs.
    session = SteppingSession(clock, [0.5, 0.5, 0.5] + [i / 1000 for i in range(1, 101)])
    stats = measure_latency(session, {}, warmup=3, iterations=100, clock=clock)
    assert session.calls == 103
    assert stats.count == 100
    assert stats.min_ms == pytest.approx(1.0)
    assert stats.max_ms == pytest.approx(100.0)
    assert stats.p50_ms == pytest.approx(50.5)
    assert stats.p99_ms == pytest.approx(99.01)
    assert stats.mean_ms == pytest.approx(50.5)
    assert stats.wall_s == pytest.approx(sum(range(1, 101)) / 1000)
    assert stats.calls_per_s == pytest.approx(100 / stats.wall_s)


def test_duration_mode_stops_at_the_deadline() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, [0.25])
    stats = measure_latency(session, {}, warmup=0, duration_s=2.0, clock=clock)
    assert stats.count == 8


def test_concurrency_counts_every_call_once() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, [0.001])
    stats = measure_latency(session, {}, warmup=0, iterations=50, concurrency=4, clock=clock)
    assert stats.count == 50 and stats.concurrency == 4


def test_a_warm_up_call_over_the_give_up_time_ends_the_measurement_with_that_call() -> None:
    clock = FakeClock()
    session = SteppingSession(clock, [293.0])
    stats = measure_latency(session, {}, warmup=3, duration_s=1.0, clock=clock, give_up_s=7.5)
    assert session.calls == 1
    assert stats.count == 1 and stats.max_ms == pytest.approx(293_000.0) and stats.wall_s == pytest.approx(293.0)
    # calls within the give-up time measure as usual: three warm-up calls, then the timed window
    session = SteppingSession(clock, [0.25])
    stats = measure_latency(session, {}, warmup=3, duration_s=1.0, clock=clock, give_up_s=7.5)
    assert session.calls == 7 and stats.count == 4


@pytest.mark.parametrize(
    "kwargs",
    [
        {"concurrency": 0},
        {"warmup": -1},
        {"iterations": 0},
        {"duration_s": 0.0},
        {"duration_s": -1.0},
        {"give_up_s": 0.0},
    ],
)
def test_bad_settings(kwargs: dict[str, Any]) -> None:
    clock = FakeClock()
    with pytest.raises(InvalidArgument):
        measure_latency(SteppingSession(clock, [0.001]), {}, clock=clock, **kwargs)


def test_errors_in_worker_threads_propagate() -> None:
    class Failing(SteppingSession):
        def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        measure_latency(Failing(FakeClock(), [0.0]), {}, warmup=0, iterations=5, concurrency=2)


def test_stats_need_samples() -> None:
    with pytest.raises(InvalidArgument):
        LatencyStats.from_samples([], 1.0)


class CpuRecordingSession(SteppingSession):
    """Records the CPU set of the thread each run happens on."""

    def __init__(self, clock: FakeClock, cores: tuple[int, ...]) -> None:
        super().__init__(clock, [0.001])
        self.config = RuntimeConfig(affinity=cores)
        self.seen: list[set[int]] = []

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        self.seen.append(set(os.sched_getaffinity(0)))
        return super().run(feeds)


@pytest.mark.skipif(not hasattr(os, "sched_getaffinity"), reason="thread affinity is Linux-only")
@pytest.mark.parametrize("concurrency", [1, 3])
def test_runs_happen_on_the_sessions_cores_and_the_thread_gets_its_cpus_back(concurrency: int) -> None:
    before = os.sched_getaffinity(0)
    core = min(before)
    session = CpuRecordingSession(FakeClock(), (core,))
    measure_latency(session, {}, warmup=2, iterations=12, concurrency=concurrency, clock=session.clock)
    assert len(session.seen) == 14 and all(cpus == {core} for cpus in session.seen)
    assert os.sched_getaffinity(0) == before
