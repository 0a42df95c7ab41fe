"""Candidates timed in turn do not disturb each other: one model timed against itself reads 1.0x.

The final comparison keeps every finalist's session alive and measures them in turn; an idle ONNX Runtime
session whose threads spin steals the cores of the one being timed. Both copies here run two intra-op
threads with spinning on (the setting that interfered), through the search's own measurement path
(:meth:`Search.measure_in_turn`). The assertion is on the ratio of two measurements taken in the same
rounds, never on a wall time; the median over many interleaved rounds keeps a busy machine's noise out.
"""

from __future__ import annotations

import statistics
from pathlib import Path

import numpy as np

from honed.evaluate import AccuracyGate, Comparison, ReferenceOutputs
from honed.model import file_sha256
from honed.passes import PassContext, PassError
from honed.runtime import RuntimeConfig, create_session
from honed.search.cache import CandidateCache
from honed.search.candidates import Candidate, Step
from honed.search.engine import Outcome, Search, SearchInputs, Settings, timing_config, timing_session
from tests.graphs import matmul_model

ROUNDS = 21
TOLERANCE = (0.8, 1.25)


def _not_built(steps: tuple[Step, ...], backend: str, path: Path, timeout_s: float) -> Path:
    raise PassError("this search times models it is given; it builds none")


def _search(tmp_path: Path, model: Path, feeds: dict[str, np.ndarray]) -> Search:
    reference = ReferenceOutputs.compute(create_session(model), lambda: iter([feeds]), tmp_path / "reference")
    inputs = SearchInputs(
        source=model,
        source_sha256=file_sha256(model),
        reference=reference,
        comparison=Comparison(AccuracyGate("cosine", min=0.99)),
        feeds=feeds,
        make_context=lambda backend: PassContext(target_backend=backend, work_dir=tmp_path / "passes"),
        build=_not_built,
        context_key={},
    )
    settings = Settings(final_rounds=ROUNDS, measure_s=0.05, warmup=3, time_budget_s=600.0)
    return Search(inputs, settings, CandidateCache(tmp_path / "cache", enabled=False), tmp_path)


def test_one_model_timed_against_itself_reads_one(tmp_path: Path) -> None:
    model = matmul_model(tmp_path / "mlp.onnx", k=256, n=256)
    feeds = {"x": np.random.default_rng(0).standard_normal((16, 256)).astype(np.float32)}
    search = _search(tmp_path, model, feeds)
    config = RuntimeConfig(intra_op_threads=2)  # spinning on, as the runtime variants try it
    first = Outcome("c01", Candidate((), config), model_path=model)
    second = Outcome("c02", Candidate((), config), model_path=model)

    search.measure_in_turn([first, second])

    assert search.final_compared
    assert len(first.rounds) == len(second.rounds) == ROUNDS
    ratio = statistics.median(a / b for a, b in zip(first.rounds, second.rounds, strict=True))
    assert TOLERANCE[0] <= ratio <= TOLERANCE[1], (ratio, first.rounds, second.rounds)


def test_timed_sessions_stop_spinning_when_idle_and_recipes_do_not_carry_it(tmp_path: Path) -> None:
    model = matmul_model(tmp_path / "mlp.onnx")
    config = RuntimeConfig(intra_op_threads=2)
    assert timing_config(config).options == {"session.force_spinning_stop": "1"}
    assert config.options == {}  # the candidate (and so its recipe) is unchanged
    session = timing_session(model, config)
    options = session._session.get_session_options()  # type: ignore[attr-defined]
    assert options.get_session_config_entry("session.force_spinning_stop") == "1"
    assert options.get_session_config_entry("session.intra_op.allow_spinning") == "1"  # spinning inside a run
    openvino = RuntimeConfig(backend="openvino")
    assert timing_config(openvino) == openvino
