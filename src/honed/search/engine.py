"""The accuracy-aware search: build candidates, gate them on fidelity, measure them, pick a winner that is never slower.

Stages, each checked against the deadline (an injected monotonic clock) before it starts:

1. the baseline (original model, ONNX Runtime default session), measured; it is the reference for fidelity;
2. every pass pipeline each backend can use (single passes, and a graph or fusion pass followed by a
   quantization pass; the original model on every other backend), in order of expected payoff for the kind
   of model and the CPU's ISA, built, gated on fidelity and measured; an INT8 pipeline (static or dynamic)
   the gate rejects gets the sensitive-layer fallback right away, when the budget holds it;
3. runtime tuning (threads, affinity, spinning; OpenVINO hints) of the best accepted models;
4. a final, interleaved comparison of the best few against the baseline: each round measures every finalist
   once, in rotating order; a challenger wins only when it beats the baseline in most rounds and by a margin
   on the median, so measurement noise cannot pick a slower model.

Each evaluated candidate is cached (:mod:`honed.search.cache`), so an interrupted run resumes and a rerun
costs no measurements. The engine reports through callbacks; writing files is the caller's job.
"""

from __future__ import annotations

import math
import statistics
import tempfile
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import onnx

from honed.bench import LatencyStats, measure_latency
from honed.canonical import digest
from honed.errors import HonedError
from honed.evaluate import AccuracyGate, Comparison, FidelityResult, ReferenceOutputs
from honed.hardware import HardwareSpec
from honed.model.artifact import artifact_sha256, artifact_size
from honed.model.loader import save_model
from honed.passes import PassContext, PassError, get_pass
from honed.runtime import RuntimeConfig, create_session, get_backend
from honed.runtime.base import Session
from honed.search.build import BuildTimeout
from honed.search.cache import CandidateCache
from honed.search.candidates import (
    Candidate,
    ModelProfile,
    Skipped,
    Step,
    candidate_rank,
    is_long_shot,
    plan_pipelines,
    runtime_variants,
)
from honed.search.recipe import artifact_suffix

Array = np.ndarray[Any, Any]
Clock = Callable[[], float]

OBJECTIVES = ("latency", "throughput")
_WIN_MARGIN = 0.03  # a challenger must beat the baseline's median cost by 3% ...
_WIN_SHARE = 2 / 3  # ... and be faster in at least two thirds of the paired rounds
_ROUND_WARMUP = 1  # warm-up calls before each measurement of the final comparison after its first round
_WIN_MARGIN_SINGLE = 0.10  # without a final comparison, one measurement each: demand a clearer win
_SLOWER = 1.15  # a first measurement this much slower than the baseline is not worth evaluating
# One call of a candidate this many times the original's (and longer than Settings.give_up_floor_s) ends its
# measurement: OpenVINO has run an INT8 MiniLM with the rest in f16 at 293 s a call where the original took 0.7 s.
_GIVE_UP_FACTOR = 10.0
_TIMED_OUT = "time budget spent while building"
_MIN_BUILD_S = 1.0  # less time than this left for a build: do not start one
# ONNX Runtime's worker threads spin for a while after each run; an idle session spinning next to the one
# being timed steals its cores (the same model has read up to 20% slower than itself). Every session the search
# times, the original included, stops its threads' spinning when a run ends, so all are on the same footing.
_QUIET_WHEN_IDLE = {"onnxruntime": {"session.force_spinning_stop": "1"}}


def timing_config(config: RuntimeConfig) -> RuntimeConfig:
    """``config`` as the search times it: the same run, with its threads quiet between runs (recipes keep
    ``config`` itself)."""
    extra = _QUIET_WHEN_IDLE.get(config.backend)
    return config.with_(options={**config.options, **extra}) if extra else config


def timing_session(model: Path, config: RuntimeConfig) -> Session:
    """A session for timing candidates in turn (see :func:`timing_config`)."""
    return create_session(model, timing_config(config))


@dataclass
class Settings:
    """How the search spends its time. ``measure_s`` is one latency measurement; ``final_rounds`` the rounds of
    the interleaved final comparison of ``finalists`` candidates (baseline included)."""

    batch: int = 1
    objective: str = "latency"
    time_budget_s: float = 600.0
    backends: tuple[str, ...] = ("onnxruntime",)
    cpus: tuple[int, ...] = (0,)
    flops_per_item: float | None = None
    measure_s: float = 1.0
    warmup: int = 3
    final_rounds: int = 5
    finalists: int = 4  # baseline included: first measurements are noisy, so the top three challengers
    settings_per_pass: int = 2
    tune_top: int = 2
    fallback_max_excluded: int = 16
    passes: tuple[str, ...] | None = None  # None: every registered pass
    evaluate_slower: bool = False  # judge fidelity even of candidates measured slower than the baseline
    give_up_floor_s: float = 1.0  # a call shorter than this never ends a measurement early (first calls run long)


def cost_of(stats: LatencyStats, objective: str) -> float:
    """The quantity minimised: p50 for latency; mean (1/throughput at concurrency 1) for throughput."""
    return stats.p50_ms if objective == "latency" else stats.mean_ms


@dataclass
class Outcome:
    """What happened to one candidate."""

    id: str
    candidate: Candidate
    status: str = "pending"  # baseline | accepted | rejected | slower | failed | not-run
    reason: str | None = None
    fidelity: FidelityResult | None = None
    fidelity_from: str | None = None
    latency: LatencyStats | None = None
    rounds: list[float] = field(default_factory=list)
    size_bytes: int | None = None
    model_sha256: str | None = None
    model_path: Path | None = None
    cached: bool = False
    note: str | None = None
    seconds: float = 0.0

    def cost_ms(self, objective: str) -> float | None:
        """The quantity minimised: p50 for latency; mean (1/throughput at concurrency 1) for throughput."""
        return None if self.latency is None else cost_of(self.latency, objective)

    def final_cost(self, objective: str) -> float | None:
        if self.rounds:
            return float(statistics.median(self.rounds))
        return self.cost_ms(objective)


@dataclass
class SearchInputs:
    """Everything the engine needs about the model and data (built by :mod:`honed.search.api`)."""

    source: Path
    source_sha256: str
    reference: ReferenceOutputs
    comparison: Comparison
    """How candidates are judged: the gate, the mask, a user's metric (the fallback judges the same way)."""
    feeds: dict[str, Array]
    make_context: Callable[[str], PassContext]
    build: Callable[[tuple[Step, ...], str, Path, float], Path]
    """Builds a pipeline's model into the path within the seconds given (raises PassError, BuildTimeout)."""
    context_key: dict[str, Any]
    labels: Array | None = None
    own_reference: bool = True
    """Whether ``reference`` holds the source model's own outputs (the original then matches it exactly); False
    with ``--reference``: the original is compared with the reference like every candidate."""

    @property
    def gate(self) -> AccuracyGate:
        return self.comparison.gate


STOP_REASONS = ("all-tried", "unaffordable", "budget-spent")
"""Why a search stopped: every move it planned was made; only moves estimated beyond the budget left remained;
the budget ran out with moves still to make."""

UNTRIED_REASONS = ("budget", "unaffordable", "not-applicable")


@dataclass(frozen=True)
class Untried:
    """A move the search did not make (a candidate, a fallback, the final comparison) and why: ``budget`` (the
    time ran out before it), ``unaffordable`` (its estimate exceeded what was left), ``not-applicable``."""

    what: str
    reason: str
    detail: str
    backend: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"what": self.what, "reason": self.reason, "detail": self.detail, "backend": self.backend}


class Events:
    """Callbacks the engine calls; the default does nothing."""

    def stage(self, name: str, total: int) -> None: ...

    def done(self, outcome: Outcome) -> None: ...

    def best(self, outcome: Outcome) -> None: ...


_ACCURACY_CONTROLLED = "nncf-int8"  # its fallback is NNCF's own accuracy control; INT8 on ORT gets honed's
_AC_MAX_ITERATIONS = 30
_RANKING_BATCHES = 4  # calibration batches the static ranking runs each node's probe on
_RANKING_SESSION_S = 0.2  # what one of those probe sessions costs to create, roughly


def _fallback_name(pass_name: str) -> str:
    """How the report names the fallback of ``pass_name``'s candidates."""
    return "NNCF accuracy control" if pass_name == _ACCURACY_CONTROLLED else "sensitive-layer fallback"


class _BudgetSpent(Exception):
    """Raised inside the fallback's accept callback when the deadline passes (not a HonedError, so it escapes)."""


class Search:
    """One search run over one model."""

    def __init__(
        self,
        inputs: SearchInputs,
        settings: Settings,
        cache: CandidateCache,
        work_dir: Path,
        *,
        clock: Clock = time.monotonic,
        events: Events | None = None,
        hardware: HardwareSpec | None = None,
    ) -> None:
        if settings.objective not in OBJECTIVES:
            raise ValueError(f"objective must be one of {OBJECTIVES}")
        self.inputs = inputs
        self.settings = settings
        self.cache = cache
        self.work_dir = work_dir
        self.clock = clock
        self.events = events or Events()
        self.outcomes: list[Outcome] = []
        self.skipped: list[Skipped] = []
        self.untried: list[Untried] = []
        self.deadline = clock() + settings.time_budget_s
        self.budget_exhausted = False
        self.final_compared = False
        self._models: dict[str, tuple[Path, str, int] | str] = {}
        self._build_seconds: dict[str, float] = {}
        self._baseline_session: Session | None = None
        self.best: Outcome | None = None
        self.profile: ModelProfile | None = None  # the model kind and ISA the candidates were ordered for
        self._tuned: set[str] = set()  # the candidates whose runtime variants were tried
        # The machine candidates are chosen for (a backend's lower precisions) and bench rows describe (the peak).
        self.hardware = hardware

    # -- time --------------------------------------------------------------------------------------------

    def remaining(self) -> float:
        return self.deadline - self.clock()

    def _has_time(self, need: float = 0.0) -> bool:
        if self.remaining() <= need:
            self.budget_exhausted = True
            return False
        return True

    # -- running -----------------------------------------------------------------------------------------

    def run(self) -> Outcome:
        """Run every stage the budget allows; returns the winner (the baseline when nothing beats it)."""
        baseline = self._evaluate(Candidate((), RuntimeConfig()), baseline=True)
        self._consider(baseline)
        candidates = self._stage_candidates()
        # the known losers on this CPU wait until the leaders were tuned (threads, pinning, static shapes: no new
        # build, a measurement each), which pays more often than they do; the leaders are tuned again after them
        # only if one of them took the lead
        profile = self.profile
        long_shots = [c for c in candidates if profile is not None and is_long_shot(c, profile)]
        self.events.stage("passes and backends", len(candidates) - len(long_shots))
        self._try(c for c in candidates if c not in long_shots)
        self._tune()
        if long_shots:
            self.events.stage("known losers", len(long_shots))
            self._try(long_shots)
            self._tune()
        return self._final()

    def _try(self, candidates: Iterable[Candidate]) -> None:
        """Evaluate ``candidates`` in turn while the budget lasts (the rest are recorded as not run)."""
        for cand in candidates:
            if not self._has_time(self._reserve()) and not self._is_cached(cand):
                self._not_run(cand)
                continue
            outcome = self._evaluate(cand)
            self._consider(outcome)
            if self.best is outcome and self.settings.tune_top:
                self._static_copy(outcome)
            if outcome.status == "rejected":
                # candidates come in order of expected payoff: a quantized one that fails the gate gets its
                # sensitive-layer fallback now, before less promising candidates spend the budget
                cached = self.cache.get(self._fallback_key(outcome))
                if cached is not None:
                    self._fallback_result(outcome, cached)
                elif self._fallback_applies(outcome):
                    self._fallback(outcome)

    @property
    def stop_reason(self) -> str:
        """One of :data:`STOP_REASONS`."""
        if self.budget_exhausted or any(u.reason == "budget" for u in self.untried):
            return "budget-spent"
        if any(u.reason == "unaffordable" for u in self.untried):
            return "unaffordable"
        return "all-tried"

    def all_untried(self) -> list[Untried]:
        """What the search left untried: its own record, then the passes that did not apply."""
        return [*self.untried, *(Untried(s.name, "not-applicable", s.reason, s.backend) for s in self.skipped)]

    def _reserve(self) -> float:
        """Seconds kept back for the final comparison (warm sessions, then interleaved rounds) and the profiles."""
        per_round = self.settings.finalists * self._measurement_s(_ROUND_WARMUP)
        sessions = self.settings.finalists * (self._call_s() * self.settings.warmup + 1.0)
        return self.settings.final_rounds * per_round + sessions + 2.0

    def _call_s(self) -> float:
        """The original model's measured mean call time, in seconds (0 before it was measured)."""
        if self.outcomes and self.outcomes[0].latency:
            return self.outcomes[0].latency.mean_ms / 1e3
        return 0.0

    def _measurement_s(self, warmup: int | None = None) -> float:
        """What one latency measurement costs: warm-up calls, the timed window (at least one call), overhead.

        Scaled by the original model's measured call time, so a model whose one call takes seconds (a large
        batch on a small CPU) keeps enough budget back for the final comparison to actually run."""
        calls = (self.settings.warmup if warmup is None else warmup) + 1
        return self.settings.measure_s + calls * self._call_s() + 0.2

    def _stage_candidates(self) -> list[Candidate]:
        """Every backend's candidates, in order of expected payoff for this model and CPU (stable otherwise)."""
        model = onnx.load(str(self.inputs.source))
        candidates: list[Candidate] = []
        profile: ModelProfile | None = None
        baseline = self.baseline().candidate.key() if self.outcomes else Candidate((), RuntimeConfig()).key()
        for backend in self.settings.backends:
            ctx = self.inputs.make_context(backend)
            profile = profile or ModelProfile.of(model, ctx)
            default = runtime_variants(backend, self.settings.cpus, objective=self.settings.objective)[0]
            # every candidate on this backend, INT8 ones included, also runs with the rest of the graph at each
            # lower precision the machine searched for has (OpenVINO: bf16, f16)
            configs = (default, *self._lower_precisions(backend, default))
            if Candidate((), default).key() != baseline:  # the original model on another backend
                candidates.extend(Candidate((), config) for config in configs)
            pipelines, skipped = plan_pipelines(model, backend, ctx, only=self.settings.passes)
            self.skipped.extend(skipped)
            per_pipeline: dict[tuple[str, ...], int] = {}
            for steps in pipelines:
                names = tuple(s.name for s in steps)
                per_pipeline[names] = per_pipeline.get(names, 0) + 1
                if per_pipeline[names] > self.settings.settings_per_pass:
                    continue
                candidates.extend(Candidate(steps, config) for config in configs)
        if profile is None:
            return candidates
        self.profile = profile
        order = sorted(range(len(candidates)), key=lambda i: (*candidate_rank(candidates[i], profile), i))
        return [candidates[i] for i in order]

    def _lower_precisions(self, backend: str, default: RuntimeConfig) -> tuple[RuntimeConfig, ...]:
        """``default`` at each lower precision ``backend`` offers for the machine searched for."""
        offer = get_backend(backend).lower_precisions(default, self.hardware)
        if offer.precisions and not offer.configs:
            reason = offer.reason or "this machine runs none of them"
            self.skipped.append(Skipped(f"precision {'/'.join(offer.precisions)}", backend, reason))
        return offer.configs

    def _is_cached(self, cand: Candidate) -> bool:
        return self.cache.get(self._cache_key(cand)) is not None

    def _not_run(self, cand: Candidate) -> None:
        outcome = Outcome(self._next_id(), cand, status="not-run", reason="time budget spent before it was tried")
        self.outcomes.append(outcome)
        self.untried.append(Untried(f"{outcome.id}: {cand.label()}", "budget", outcome.reason or "", cand.backend))
        self.events.done(outcome)

    def _next_id(self) -> str:
        return f"c{len(self.outcomes):02d}"

    # -- one candidate -----------------------------------------------------------------------------------

    def _cache_key(self, cand: Candidate) -> str:
        return digest(
            {
                "candidate": cand.key(),
                "context": self.inputs.context_key,
                "measure_s": self.settings.measure_s,
                "timing": _QUIET_WHEN_IDLE,
            }
        )

    def profile_key(self, cand: Candidate) -> str:
        """The cache key of ``cand``'s per-op profile (same candidate, model and data: same profile)."""
        return digest({"profile": cand.key(), "context": self.inputs.context_key})

    def _model_cache_key(self, steps: tuple[Step, ...]) -> str:
        return digest({"steps": [s.to_dict() for s in steps], "context": self.inputs.context_key.get("model")})

    def _evaluate(self, cand: Candidate, *, baseline: bool = False, inherit: Outcome | None = None) -> Outcome:
        started = self.clock()
        outcome = Outcome(self._next_id(), cand)
        self.outcomes.append(outcome)
        key = self._cache_key(cand)
        cached = self.cache.get(key)
        if cached is not None and cached.get("status") == "failed" and cached.get("build_failed"):
            # a pass that could not handle this model fails the same way again: do not rebuild it
            model_path: tuple[Path, str, int] | str = str(cached.get("reason"))
        else:
            model_path = self._model_path(cand.steps, cand.backend)
        if isinstance(model_path, str):
            timed_out = model_path.startswith(_TIMED_OUT)
            outcome.status, outcome.reason = ("not-run" if timed_out else "failed"), model_path
            if timed_out:
                self.untried.append(Untried(f"{outcome.id}: {cand.label()}", "budget", model_path, cand.backend))
            outcome.cached = cached is not None
            if not timed_out and cached is None:
                self.cache.put(key, {"status": "failed", "reason": model_path, "build_failed": True})
        elif cached is not None:
            self._load_cached(outcome, cached)
        else:
            self._measure_new(outcome, model_path, inherit=inherit)
            self.cache.put(key, self._to_cache(outcome))
        if not isinstance(model_path, str):
            outcome.model_path, outcome.model_sha256, outcome.size_bytes = model_path
        if baseline:
            outcome.status = "baseline" if outcome.latency is not None else "failed"
            outcome.reason = outcome.reason if outcome.latency is None else None
        elif outcome.status == "pending":
            reason = self.inputs.comparison.check(outcome.fidelity) if outcome.fidelity else "not evaluated"
            outcome.status = "accepted" if reason is None else "rejected"
            outcome.reason = reason
        outcome.seconds = self.clock() - started
        self.events.done(outcome)
        return outcome

    def _model_path(self, steps: tuple[Step, ...], backend: str) -> tuple[Path, str, int] | str:
        """(path, sha256, size) of the built model, or why it could not be built."""
        if not steps:
            path = self.inputs.source
            return path, self.inputs.source_sha256, path.stat().st_size
        key = self._model_cache_key(steps)
        if key in self._models:
            return self._models[key]
        cached = self.cache.model_path(key)
        result: tuple[Path, str, int] | str
        if cached is not None:
            result = (cached, artifact_sha256(cached), artifact_size(cached))
        else:
            # a build may not eat into the time kept back for the final comparison
            allowed = self.remaining() - self._reserve()
            if allowed < _MIN_BUILD_S:
                self.budget_exhausted = True
                return f"{_TIMED_OUT}: {max(allowed, 0):.1f} s of budget left before the final comparison"
            began = self.clock()
            try:
                out = self.work_dir / "models" / f"{key}{artifact_suffix(steps)}"
                stored = self.cache.put_model(key, self.inputs.build(steps, backend, out, allowed))
                result = (stored, artifact_sha256(stored), artifact_size(stored))
                self._build_seconds[key] = self.clock() - began
            except BuildTimeout as exc:
                self.budget_exhausted = True
                return f"{_TIMED_OUT}: {exc}"  # not remembered: a later run with more time builds it
            except PassError as exc:
                result = str(exc)
            except HonedError as exc:
                result = f"{type(exc).__name__}: {exc}"
        self._models[key] = result
        return result

    def _measure_new(self, outcome: Outcome, model: tuple[Path, str, int], *, inherit: Outcome | None) -> None:
        try:
            session = timing_session(model[0], outcome.candidate.runtime)
        except HonedError as exc:
            outcome.status, outcome.reason = "failed", f"cannot load on {outcome.candidate.backend}: {exc}"
            return
        first = not self.outcomes or self.outcomes[0] is outcome
        give_up_s = None if first else max(_GIVE_UP_FACTOR * self._call_s(), self.settings.give_up_floor_s)
        try:
            outcome.latency = self._measure(session, self.settings.measure_s, give_up_s=give_up_s)
        except HonedError as exc:
            outcome.status, outcome.reason = "failed", f"failed to run: {exc}"
            return
        if give_up_s is not None and outcome.latency.count == 1 and outcome.latency.max_ms > give_up_s * 1e3:
            # it cannot win, and each further call (a fidelity evaluation runs many) costs as much again
            outcome.status = "slower"
            outcome.reason = (
                f"one call took {outcome.latency.max_ms / 1e3:.3g} s, over {_GIVE_UP_FACTOR:g}x the original's "
                f"{self._call_s() * 1e3:.3g} ms: measured no further"
            )
            return
        if first and self.inputs.own_reference:
            outcome.fidelity = self.inputs.comparison.original(self.inputs.reference, self.inputs.labels)
            return
        base = self.baseline().cost_ms(self.settings.objective)
        cost = outcome.cost_ms(self.settings.objective)
        slower = not first and base is not None and cost is not None and cost > base * _SLOWER
        if slower and inherit is None and not self.settings.evaluate_slower:
            # the machine may have been busier just now: measure the original again, back to back
            base = self._remeasure_baseline()
            slower = base is not None and cost is not None and cost > base * _SLOWER
        if inherit is None and slower and not self.settings.evaluate_slower:
            # it cannot win, so its fidelity is not worth the eval time
            outcome.status = "slower"
            outcome.reason = f"slower than the original ({cost:.3g} ms vs {base:.3g} ms); fidelity not evaluated"
            return
        if inherit is not None and inherit.fidelity is not None:
            outcome.fidelity, outcome.fidelity_from = inherit.fidelity, inherit.id
            return
        outcome.fidelity = self.inputs.comparison.evaluate(session, self.inputs.reference, self.inputs.labels)
        if outcome.fidelity.error is not None:
            outcome.status, outcome.reason = "failed", f"failed to run: {outcome.fidelity.error}"

    def _remeasure_baseline(self) -> float | None:
        baseline = self.baseline()
        if baseline.model_path is None:
            return None
        if self._baseline_session is None:
            self._baseline_session = timing_session(baseline.model_path, baseline.candidate.runtime)
        return cost_of(self._measure(self._baseline_session, self.settings.measure_s), self.settings.objective)

    def _measure(
        self, session: Session, duration_s: float, warmup: int | None = None, give_up_s: float | None = None
    ) -> LatencyStats:
        duration = max(min(duration_s, self.remaining()), 0.01)
        warmup = self.settings.warmup if warmup is None else warmup
        return measure_latency(session, self.inputs.feeds, warmup=warmup, duration_s=duration, give_up_s=give_up_s)

    def _to_cache(self, outcome: Outcome) -> dict[str, Any]:
        return {
            "status": outcome.status,
            "reason": outcome.reason,
            "fidelity": outcome.fidelity.to_dict() if outcome.fidelity else None,
            "fidelity_from": outcome.fidelity_from,
            "latency": outcome.latency.to_dict() if outcome.latency else None,
        }

    def _load_cached(self, outcome: Outcome, data: dict[str, Any]) -> None:
        outcome.cached = True
        outcome.status = str(data.get("status", "pending"))
        outcome.reason = data.get("reason")
        outcome.fidelity = FidelityResult.from_dict(data["fidelity"]) if data.get("fidelity") else None
        outcome.fidelity_from = data.get("fidelity_from")
        outcome.latency = LatencyStats(**data["latency"]) if data.get("latency") else None

    # -- choosing ----------------------------------------------------------------------------------------

    def _qualifies(self, outcome: Outcome) -> bool:
        return outcome.status in ("baseline", "accepted") and outcome.latency is not None

    def _consider(self, outcome: Outcome) -> None:
        if not self._qualifies(outcome):
            return
        cost = outcome.cost_ms(self.settings.objective)
        best = self.best.cost_ms(self.settings.objective) if self.best else None
        if best is None or (cost is not None and cost < best):
            self.best = outcome
            self.events.best(outcome)

    def baseline(self) -> Outcome:
        return self.outcomes[0]

    def _ranked(self) -> list[Outcome]:
        qualified = [o for o in self.outcomes if self._qualifies(o)]
        return sorted(qualified, key=lambda o: o.cost_ms(self.settings.objective) or math.inf)

    # -- fallback ----------------------------------------------------------------------------------------

    def _fallback_applies(self, outcome: Outcome) -> bool:
        from honed.passes.sensitivity import FALLBACK_PASSES

        steps = outcome.candidate.steps
        if not steps or steps[-1].name not in (*FALLBACK_PASSES, _ACCURACY_CONTROLLED):
            return False
        runtime = outcome.candidate.runtime
        if f"{runtime.backend}/{runtime.provider}" not in get_pass(steps[-1].name).targets:
            return False
        if steps[-1].params.get("nodes_to_exclude") or steps[-1].params.get("ignored_scope"):
            return False
        base = self.baseline().cost_ms(self.settings.objective)
        cost = outcome.cost_ms(self.settings.objective)
        # fallback only claws back accuracy; it cannot make a model that was already slower fast (unless the
        # user asked for slower candidates to be judged too)
        if base is None or cost is None or (cost >= base and not self.settings.evaluate_slower):
            return False
        build = self._build_seconds.get(self._model_cache_key(steps), outcome.seconds)
        per_model: float | tuple[float, float] = max(outcome.seconds, build)
        if steps[-1].name == _ACCURACY_CONTROLLED:
            per_model = self._costs(outcome)
        estimate, what = self._fallback_estimate(steps[-1].name, per_model)
        if not self._has_time(self._reserve() + estimate):
            outcome.note = (
                f"{_fallback_name(steps[-1].name)} not tried: it needs about {estimate:.0f} s "
                f"({what}), {max(self.remaining() - self._reserve(), 0):.0f} s of budget left"
            )
            self.budget_exhausted = False
            self.untried.append(
                Untried(f"{_fallback_name(steps[-1].name)} of {outcome.id}", "unaffordable", outcome.note)
            )
            return False
        return True

    def _fallback_estimate(self, pass_name: str, per_model_s: Any) -> tuple[float, str]:
        """Seconds the fallback of one rejected candidate is expected to take, and what it consists of: one
        ranking pass (about one build and evaluation) and a binary search over the ranked nodes (see
        :func:`~honed.passes.sensitivity.fallback_evaluations`), each try a build and an evaluation."""
        from honed.passes.sensitivity import RANKED_OPS, fallback_evaluations

        if pass_name == _ACCURACY_CONTROLLED:
            # NNCF quantizes once (a build), validates the original and the INT8 model and ranks on one batch
            # (about three evaluations), then reverts and validates once per iteration (an evaluation each); the
            # model it settles on is rebuilt and judged like any other (a build and an evaluation)
            build, evaluation = per_model_s
            iterations = self._accuracy_control_iterations(per_model_s)
            return (
                2 * build + (iterations + 4) * evaluation,
                f"NNCF accuracy control: one quantization, {iterations} restore iterations at most, one rebuild",
            )
        nodes = sum(1 for n in onnx.load(str(self.inputs.source)).graph.node if n.op_type in RANKED_OPS)
        tries = fallback_evaluations(nodes, self.settings.fallback_max_excluded) + 1
        # ranking: one quantizer run (about one model), then one session per node, float but for that node,
        # run on a few calibration batches
        ranking = nodes * (_RANKING_BATCHES * self._call_s() + _RANKING_SESSION_S)
        return (
            tries * per_model_s + ranking,
            f"{nodes} quantizable nodes: one ranking pass and {tries - 1} builds and evaluations",
        )

    def _accuracy_control_iterations(self, per_model_s: tuple[float, float]) -> int:
        """How many restore iterations NNCF's accuracy control may take: what the budget left holds after two
        builds and four evaluations (``per_model_s``: one build's and one evaluation's measured seconds), each
        iteration costed as one evaluation; at most :data:`_AC_MAX_ITERATIONS`, at least 1."""
        build, evaluation = per_model_s
        spare = self.remaining() - self._reserve() - 2 * build
        fits = int(spare / evaluation) - 4 if evaluation > 0 else _AC_MAX_ITERATIONS
        return max(1, min(_AC_MAX_ITERATIONS, fits))

    def _costs(self, outcome: Outcome) -> tuple[float, float]:
        """What building ``outcome``'s model took and what measuring and judging it took (at least 0.5 s)."""
        build = self._build_seconds.get(self._model_cache_key(outcome.candidate.steps), 0.0)
        return build, max(outcome.seconds - build, 0.5)

    def _fallback(self, rejected: Outcome) -> None:
        from honed.passes.sensitivity import sensitive_layer_fallback
        from honed.search.recipe import build_model

        if rejected.candidate.steps[-1].name == _ACCURACY_CONTROLLED:
            self._accuracy_control(rejected)
            return
        *prefix, step = rejected.candidate.steps
        runtime = rejected.candidate.runtime
        ctx = self.inputs.make_context(runtime.backend)
        # fidelity only: the backend and provider decide the outputs, threads and hints do not
        judge = RuntimeConfig(backend=runtime.backend, provider=runtime.provider)
        scratch = Path(tempfile.mkdtemp(dir=self.work_dir))
        comparison = self.inputs.comparison

        def accept(model: onnx.ModelProto) -> bool:
            if not self._has_time(self._reserve()):  # the final comparison's time is not the fallback's
                raise _BudgetSpent
            path = save_model(model, scratch / "fallback.onnx")
            session = create_session(path, judge)
            return comparison.judge(session, self.inputs.reference, self.inputs.labels) is None

        try:
            found = sensitive_layer_fallback(
                build_model(self.inputs.source, tuple(prefix), ctx),
                step.params,
                ctx,
                accept,
                pass_name=step.name,
                max_excluded=self.settings.fallback_max_excluded,
                full_rejected=True,
                comparison=comparison,
            )
        except _BudgetSpent:
            rejected.note = "sensitive-layer fallback stopped: time budget spent"
            self.untried.append(Untried(f"sensitive-layer fallback of {rejected.id}", "budget", rejected.note))
            return
        except HonedError as exc:
            rejected.note = f"sensitive-layer fallback failed: {exc}"
            return
        result = {"accepted": found.accepted, "params": found.params, "excluded": len(found.excluded)}
        self.cache.put(self._fallback_key(rejected), result)
        self._fallback_result(rejected, result)

    def _accuracy_control(self, rejected: Outcome) -> None:
        """NNCF's accuracy control (``quantize_with_accuracy_control``) on the OpenVINO model of a rejected
        ``nncf-int8`` candidate, validated by the search's own gate; the ops it keeps in float become the
        step's ``ignored_scope``, and that candidate is built and judged like any other (so a recipe replays it)."""
        from honed.model.loader import load_model
        from honed.passes.nncf_accuracy import accuracy_controlled_scope
        from honed.search.recipe import build_model

        *prefix, step = rejected.candidate.steps
        ctx = self.inputs.make_context("openvino")
        iterations = self._accuracy_control_iterations(self._costs(rejected))
        scratch = Path(tempfile.mkdtemp(dir=self.work_dir))
        try:
            model = build_model(self.inputs.source, tuple(prefix), ctx) if prefix else load_model(self.inputs.source)
            if rejected.model_path is None or ctx.calibration is None:
                raise PassError("the rejected candidate has no built model or no calibration data")
            found = accuracy_controlled_scope(
                save_model(model, scratch / "source.onnx"),
                rejected.model_path,
                get_pass(step.name).resolve(step.params, ctx),
                ctx.calibration,
                self.inputs.comparison,
                self.inputs.reference,
                labels=self.inputs.labels,
                max_iterations=iterations,
            )
        except HonedError as exc:
            rejected.note = f"NNCF accuracy control failed: {exc}"
            return
        result = {
            "accepted": found.accepted,
            "params": {**step.params, "ignored_scope": list(found.ignored)},
            "excluded": len(found.ignored),
            "by": _ACCURACY_CONTROLLED,
        }
        self.cache.put(self._fallback_key(rejected), result)
        self._fallback_result(rejected, result)

    def _fallback_key(self, rejected: Outcome) -> str:
        return digest(
            {
                "fallback": rejected.candidate.key(),
                "gate": self.inputs.comparison.to_dict(),
                "max_excluded": self.settings.fallback_max_excluded,
                "context": self.inputs.context_key,
            }
        )

    def _fallback_result(self, rejected: Outcome, found: dict[str, Any]) -> None:
        excluded = int(found.get("excluded", 0))
        name = _fallback_name(rejected.candidate.steps[-1].name)
        if not found.get("accepted") or (found.get("by") and not excluded):
            rejected.note = f"{name} kept {excluded} node(s) in float and still failed"
            return
        *prefix, step = rejected.candidate.steps
        steps = (*prefix, Step(step.name, dict(found["params"])))
        outcome = self._evaluate(Candidate(steps, rejected.candidate.runtime))
        outcome.note = f"{name} of {rejected.id}: {excluded} node(s) kept in float"
        self._consider(outcome)

    # -- tuning and the final -------------------------------------------------------------------------------

    def _static_shapes(self) -> dict[str, tuple[int, ...]]:
        """The input shapes every candidate is measured at."""
        return {name: tuple(array.shape) for name, array in self.inputs.feeds.items()}

    def _static_copy(self, best: Outcome) -> None:
        """A new best candidate compiled for the measured shapes, at once, where its backend can: on OpenVINO it
        pays more than any later candidate of the first stage is likely to, and a short budget would otherwise
        spend itself before the tuning stage. Part of runtime tuning: off with it."""
        config = get_backend(best.candidate.backend).static_variant(best.candidate.runtime, self._static_shapes())
        if config is None:
            return
        cand = Candidate(best.candidate.steps, config)
        if any(o.candidate.key() == cand.key() for o in self.outcomes):
            return
        if not self._has_time(self._reserve()) and not self._is_cached(cand):
            self._not_run(cand)
            return
        self._consider(self._evaluate(cand))

    def _tune(self) -> None:
        """The top candidates again: first each compiled for the measured input shapes, where its backend can,
        then with each runtime variant of their backend. A static copy can compute differently (other kernels),
        so its fidelity is judged afresh; a thread or pinning variant keeps its parent's."""
        top = [o for o in self._ranked()[: self.settings.tune_top] if o.candidate.key() not in self._tuned]
        if not top:
            return
        self._tuned.update(o.candidate.key() for o in top)
        seen = {o.candidate.key() for o in self.outcomes}
        todo: list[tuple[Candidate, Outcome | None]] = []
        shapes = self._static_shapes()

        def add(cand: Candidate, inherit: Outcome | None) -> None:
            if cand.key() not in seen:
                seen.add(cand.key())
                todo.append((cand, inherit))

        for parent in top:  # static copies first: where they apply they pay more than threads do
            static = get_backend(parent.candidate.backend).static_variant(parent.candidate.runtime, shapes)
            if static is not None:
                add(Candidate(parent.candidate.steps, static), None)
        for parent in top:
            backend = parent.candidate.backend
            for config in runtime_variants(backend, self.settings.cpus, objective=self.settings.objective):
                config = config.with_(options={**config.options, **parent.candidate.runtime.options})
                add(Candidate(parent.candidate.steps, config), parent)
        self.events.stage("runtime tuning", len(todo))
        for cand, inherit in todo:
            if not self._has_time(self._reserve()) and not self._is_cached(cand):
                self._not_run(cand)
                continue
            outcome = self._evaluate(cand, inherit=inherit)
            self._consider(outcome)

    def _final(self) -> Outcome:
        baseline = self.baseline()
        if baseline.status != "baseline":
            raise HonedError(f"the original model cannot be measured: {baseline.reason}")
        challengers = [o for o in self._ranked() if o is not baseline][: max(self.settings.finalists - 1, 0)]
        finalists = [baseline, *challengers]
        if not challengers:
            return baseline
        key = digest(
            {
                "final": sorted(o.candidate.key() for o in finalists),
                "context": self.inputs.context_key,
                "rounds": self.settings.final_rounds,
                "measure_s": self.settings.measure_s,
                "timing": _QUIET_WHEN_IDLE,
            }
        )
        cached = self.cache.get(key)
        if cached is not None:
            for o in finalists:
                o.rounds = [float(x) for x in cached.get(o.candidate.key(), [])]
            self.final_compared = all(o.rounds for o in finalists)
        else:
            self.measure_in_turn(finalists)
            if self.final_compared:
                self.cache.put(key, {o.candidate.key(): o.rounds for o in finalists})
        return self._pick(baseline, challengers)

    def measure_in_turn(self, finalists: list[Outcome]) -> None:
        """The final comparison's measurements: every finalist once per round, in rotating order, each from a
        session that stays alive but quiet while the others run (:func:`timing_session`); fills each
        outcome's ``rounds`` and sets ``final_compared`` (rounds are cleared when fewer than two ran)."""
        self.events.stage("final comparison", self.settings.final_rounds)
        sessions: list[Session] = []
        for o in finalists:
            if o.model_path is None:
                return
            try:
                sessions.append(timing_session(o.model_path, o.candidate.runtime))
            except HonedError:
                return  # no final comparison; the choice falls back to single measurements
        for r in range(self.settings.final_rounds):
            # the first round warms every session fully; later ones need a call to bring a model back into cache
            warmup = None if r == 0 else _ROUND_WARMUP
            needed = len(finalists) * self._measurement_s(warmup)
            if not self._has_time(needed):
                detail = f"{r} of {self.settings.final_rounds} rounds run; one more needs about {needed:.0f} s"
                self.untried.append(Untried("final comparison rounds", "budget", detail))
                break
            order = list(range(len(finalists)))
            order = order[r % len(order) :] + order[: r % len(order)]
            for i in order:
                try:
                    stats = self._measure(sessions[i], self.settings.measure_s, warmup)
                except HonedError:
                    for o in finalists:
                        o.rounds = []
                    return
                finalists[i].rounds.append(cost_of(stats, self.settings.objective))
        self.final_compared = all(len(o.rounds) >= 2 for o in finalists)
        if not self.final_compared:
            for o in finalists:
                o.rounds = []

    def _pick(self, baseline: Outcome, challengers: list[Outcome]) -> Outcome:
        """The challenger with the lowest median cost that clearly beats the baseline; else the baseline."""
        objective = self.settings.objective
        base_cost = baseline.final_cost(objective)
        winner = baseline
        winner_cost = base_cost if base_cost is not None else math.inf
        margin = _WIN_MARGIN if self.final_compared else _WIN_MARGIN_SINGLE
        for c in challengers:
            cost = c.final_cost(objective)
            if cost is None or base_cost is None or cost > base_cost * (1 - margin):
                continue
            if self.final_compared and c.rounds and baseline.rounds:
                wins = sum(a < b for a, b in zip(c.rounds, baseline.rounds, strict=False))
                if wins < _WIN_SHARE * min(len(c.rounds), len(baseline.rounds)):
                    continue
            if cost < winner_cost:
                winner, winner_cost = c, cost
        return winner
