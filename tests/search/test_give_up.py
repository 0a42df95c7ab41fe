"""A candidate whose one call takes many times the original's is measured no further: one call, not a measurement.

OpenVINO has run an NNCF INT8 MiniLM with the rest of its graph in f16 at 293 s a call (the original: 0.7 s), and
the search's three warm-up calls and one timed call spent 20 minutes of a 4-minute budget on it. The slow model
here is a session that sleeps, so the call time is known on any machine; the original is really measured.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from honed.runtime import RuntimeConfig, create_session
from honed.runtime.base import Session
from honed.search import engine
from honed.search.candidates import Candidate
from honed.search.engine import Outcome
from tests.graphs import matmul_model
from tests.search.test_fair_measurement import _search

SLOW_CALL_S = 0.3


class SleepingSession:
    """A model whose every call takes ``SLOW_CALL_S``; counts its calls."""

    def __init__(self, real: Session) -> None:
        self.real, self.calls = real, 0
        self.inputs, self.outputs, self.config = real.inputs, real.outputs, real.config

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        self.calls += 1
        time.sleep(SLOW_CALL_S)
        return self.real.run(feeds)

    def end_profiling(self) -> Path | None:
        return None


def test_a_candidate_many_times_slower_than_the_original_costs_one_call(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    model = matmul_model(tmp_path / "mlp.onnx")
    feeds = {"x": np.random.default_rng(0).standard_normal((1, 64)).astype(np.float32)}
    search = _search(tmp_path, model, feeds)
    search.settings.give_up_floor_s = 0.05
    baseline = Outcome("c00", Candidate((), RuntimeConfig()), status="baseline", model_path=model)
    search._measure_new(baseline, (model, "", 0), inherit=None)
    search.outcomes.append(baseline)
    assert baseline.latency is not None and baseline.latency.mean_ms < SLOW_CALL_S * 1e3 / 10  # one 64x32 matmul

    slow: list[SleepingSession] = []

    def sleeping(path: Path, config: RuntimeConfig) -> SleepingSession:
        slow.append(SleepingSession(create_session(path, config)))
        return slow[-1]

    monkeypatch.setattr(engine, "timing_session", sleeping)
    candidate = Outcome("c01", Candidate((), RuntimeConfig(intra_op_threads=1)), model_path=model)
    search._measure_new(candidate, (model, "", 0), inherit=None)

    assert slow[0].calls == 1  # not 3 warm-up calls and a timed window
    assert candidate.status == "slower" and candidate.fidelity is None
    assert candidate.latency is not None and candidate.latency.count == 1
    assert candidate.latency.max_ms >= SLOW_CALL_S * 1e3
    assert candidate.reason is not None and "measured no further" in candidate.reason
