"""A server following the registry's rollouts: weighted routing, mirroring off the request path, per-interval
observations, and (under the controller lease) the decisions.

For every model it serves from a registry, :class:`RolloutFollower` polls the model's active rollout
(:class:`honed.registry.rollouts.Rollouts`) every ``poll_s`` seconds and

* loads the candidate version beside production when a rollout starts, and reloads the model when it ends (the
  ``production`` alias may have moved);
* routes each *unversioned* request to the candidate with the step's weight, else to production (a request for
  ``/versions/N/`` goes where it says). The version is drawn once per *run* of consecutive requests as long as
  production's mean batch since the last poll (1 when it ran none): each request still goes to the candidate with
  the step's weight, but the candidate's requests arrive together and batch as production's do. Drawn one by one,
  they would form batches a fraction the size, one model run each, which serialize with production's on the
  model's shared run slots and cost production's answers their tail latency (docs/benchmarks.md);
* mirrors a ``mirror`` share of answered requests to the other version through a bounded queue: the mirrored run
  happens after the answer, on a worker task, and a full queue drops the mirrored work (counted) instead of making
  anyone wait. A copy is made only when the caller's grant and rate limits admit it as they admitted the request
  (it takes its share of the caller's limits; a refusal is counted as a real one's); residency rules are checked
  for the mirrored version as for a real request. The two answers' agreement (top-1 or cosine, over the first
  output) is tallied, never returned;
* writes what it saw since the last poll (requests, server errors, latency histogram per version, mirrored pairs)
  to the registry, then tries the controller lease and, when an interval is due, decides.

When the registry cannot be reached the server keeps the last weights, logs it once, and sets
``honed_rollout_registry_reachable`` to 0; nothing is decided (so nothing is promoted) until it answers again.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import random
from bisect import bisect_left
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from sqlalchemy.exc import SQLAlchemyError

from honed.errors import HonedError
from honed.registry import rollout_policy as policy
from honed.registry.rollouts import PROMOTED, RUNNING, Rollout, Rollouts
from honed.serve.dataplane import status_for
from honed.serve.metrics import ServeMetrics
from honed.serve.registry_source import RegistryCatalog
from honed.serve.repository import Executor, ModelRepository
from honed.serve.security import ResidencyGuard

log = logging.getLogger("honed.serve")

Arrays = Mapping[str, np.ndarray[Any, Any]]


class _Tally:
    """Requests, errors and latency histogram of one version since the last flush: plain counters, added to on the
    request path without a lock (one event loop) and without allocating, read and replaced once per poll."""

    __slots__ = ("counts", "errors", "requests")

    def __init__(self) -> None:
        self.requests = 0
        self.errors = 0
        self.counts = [0] * (len(policy.LATENCY_BUCKETS_MS) + 1)

    def add(self, seconds: float, failed: bool) -> None:
        self.requests += 1
        if failed:
            self.errors += 1
        self.counts[bisect_left(_BOUNDS_S, seconds)] += 1

    def stats(self) -> policy.VersionStats:
        return policy.VersionStats(self.requests, self.errors, tuple(self.counts))


_BOUNDS_S = tuple(b / 1000.0 for b in policy.LATENCY_BUCKETS_MS)
"""The histogram's bounds in seconds, so that the request path buckets a latency without converting it."""


@dataclass(eq=False)
class _Route:
    """One model's rollout as this server follows it. The request path reads ``threshold`` (the candidate's share of
    ``_RNG_SPAN``, 0 until the candidate is loaded here) and ``mirror_threshold``, both set once per poll."""

    rollout_id: int
    step: int
    production: str
    candidate: str
    weight: int
    mirror: float
    metric: str
    ready: bool = False  # the candidate is loaded here
    prod_tally: _Tally = field(default_factory=_Tally)
    cand_tally: _Tally = field(default_factory=_Tally)
    pairs: int = 0
    agreement_sum: float = 0.0
    unsent: policy.Observation | None = None  # taken but not yet written (the registry did not answer)
    threshold: int = 0
    mirror_threshold: int = 0
    run_length: int = 1
    """Consecutive unversioned requests that go to one drawn version."""
    drawn: str = ""
    """The version the current run goes to, and how many of its requests are ``left``."""
    left: int = 0
    counted: tuple[Executor, int, int] | None = None
    """Production's executor and its :meth:`~Executor.run_counts` at the last poll."""

    def __post_init__(self) -> None:
        self.drawn = self.production
        self.settle()

    def settle(self) -> None:
        """Precompute what the request path compares its one random draw against; a new run starts."""
        self.threshold = round(self.weight * _RNG_SPAN / 100) if self.ready else 0
        self.mirror_threshold = round(self.mirror * _RNG_SPAN) if self.ready else 0
        self.left = 0

    def tally(self, version: str) -> _Tally | None:
        if version == self.production:
            return self.prod_tally
        if version == self.candidate:
            return self.cand_tally
        return None

    def take(self) -> policy.Observation | None:
        """What was seen since the last call (None when nothing), resetting the tallies."""
        prod, cand = self.prod_tally.stats(), self.cand_tally.stats()
        seen = policy.Observation(prod, cand, self.pairs, self.agreement_sum)
        self.prod_tally, self.cand_tally, self.pairs, self.agreement_sum = _Tally(), _Tally(), 0, 0.0
        return seen if prod.requests or cand.requests or seen.pairs else None


_RNG_BITS = 32
_RNG_SPAN = 1 << _RNG_BITS
"""Routing and mirroring draw one ``getrandbits(32)`` each and compare it with a precomputed integer threshold."""


MAX_RUN_LENGTH = 64


def run_length(runs: int, requests: int, previous: int) -> int:
    """How many consecutive requests a rollout sends to one drawn version: the mean requests per batch run
    (``requests`` over ``runs``), between 1 and :data:`MAX_RUN_LENGTH`; ``previous`` when nothing ran."""
    if runs <= 0 or requests <= 0:
        return previous
    return max(1, min(MAX_RUN_LENGTH, round(requests / runs)))


def agreement(metric: str, a: np.ndarray[Any, Any], b: np.ndarray[Any, Any]) -> float:
    """How far two answers to one request agree: top-1 (share of rows whose argmax matches) or cosine."""
    x, y = np.asarray(a), np.asarray(b)
    if x.shape != y.shape:
        return 0.0
    if metric == "cosine":
        x, y = x.astype(np.float64, copy=False).ravel(), y.astype(np.float64, copy=False).ravel()
        nx, ny = math.sqrt(float(x @ x)), math.sqrt(float(y @ y))
        if nx == 0.0 or ny == 0.0:
            return 1.0 if nx == ny else 0.0
        return float(x @ y) / (nx * ny)
    if x.ndim < 2 or x.shape[0] == 1:  # one row (the usual mirrored request): its argmax
        return float(x.argmax() == y.argmax())
    rows = x.reshape(x.shape[0], -1).argmax(axis=1) == y.reshape(y.shape[0], -1).argmax(axis=1)
    return np.count_nonzero(rows) / rows.size  # not rows.mean(): numpy's mean costs more than the rest here


class RolloutFollower:
    """Routes, mirrors, observes and decides for the rollouts of the models one server serves."""

    def __init__(
        self,
        rollouts: Rollouts,
        catalog: RegistryCatalog,
        repository: ModelRepository,
        metrics: ServeMetrics,
        *,
        holder: str,
        residency: ResidencyGuard | None = None,
        poll_s: float = 1.0,
        queue_size: int = 64,
        rng: random.Random | None = None,
    ) -> None:
        self._rollouts = rollouts
        self._catalog = catalog
        self._repository = repository
        self._metrics = metrics
        self._holder = holder
        self._residency = residency
        self.poll_s = poll_s
        self._queue: asyncio.Queue[tuple[_Route, str, str, Arrays, Arrays, Any]] = asyncio.Queue(queue_size)
        self._bits = (rng or random.Random()).getrandbits
        self._routes: dict[str, _Route] = {}
        self._reachable = True

    # -- on the request path (never waits) ---------------------------------------------------------------------
    def route(self, name: str, version: str | None) -> str | None:
        """The version an unversioned request for ``name`` goes to under the rollout; explicit ones stay."""
        r = self._routes.get(name)
        if version or r is None:
            return version
        if r.left:
            r.left -= 1
            return r.drawn
        r.left = r.run_length - 1
        r.drawn = r.candidate if self._bits(_RNG_BITS) < r.threshold else r.production
        return r.drawn

    def routes(self, name: str) -> bool:
        """Whether a rollout of ``name`` draws the version of its unversioned requests."""
        return name in self._routes

    def observe(self, name: str, version: str, seconds: float, failed: bool) -> None:
        r = self._routes.get(name)
        if r is not None:
            tally = r.tally(version)
            if tally is not None:
                tally.add(seconds, failed)

    def mirror(
        self, name: str, version: str, feeds: Arrays, outputs: Arrays, residency: Any, *, admit: Callable[[], bool]
    ) -> None:
        """Offer an answered request to the other version; dropped when the queue is full or not chosen. A chosen
        copy is made only when ``admit()`` (the caller's access and rate limits, as for the request) allows it.
        Nothing is copied here: the queue holds references to the request's arrays, which nothing changes after
        the answer; the mirror worker makes the copy it runs."""
        r = self._routes.get(name)
        if r is None or self._bits(_RNG_BITS) >= r.mirror_threshold:
            return
        if version == r.production:
            other = r.candidate
        elif version == r.candidate:
            other = r.production
        else:
            return
        if not admit():
            return
        try:
            self._queue.put_nowait((r, name, other, feeds, outputs, residency))
        except asyncio.QueueFull:
            self._metrics.rollout_mirror_dropped.labels(name).inc()

    # -- off the request path ----------------------------------------------------------------------------------
    async def run(self) -> None:
        """Poll and mirror until cancelled."""
        worker = asyncio.create_task(self._mirror_worker())
        try:
            while True:
                await self.refresh()
                await asyncio.sleep(self.poll_s)
        finally:
            worker.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await worker

    async def _mirror_worker(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            r, name, other, feeds, primary, residency = await self._queue.get()
            started = loop.time()
            tally = r.tally(other)
            if tally is None:  # the route moved on since the copy was queued
                continue
            try:
                if self._residency is not None:
                    await self._residency.check(name, other, residency)
                _, executor = self._repository.get(name, other)
                shadow = await executor.infer(dict(feeds))
            except HonedError as exc:
                log.debug("mirrored request to %s:%s failed: %s", name, other, exc)
                tally.add(loop.time() - started, failed=_server_side(exc))
                continue
            except Exception:  # a failing shadow run must never stop the worker
                log.exception("mirrored request to %s:%s failed", name, other)
                tally.add(loop.time() - started, failed=True)
                continue
            tally.add(loop.time() - started, failed=False)
            first = next(iter(primary))
            if first in shadow:
                r.pairs += 1
                r.agreement_sum += agreement(r.metric, primary[first], shadow[first])

    async def refresh(self) -> None:
        """One poll: flush observations, follow starts, steps and ends, and decide if this server may."""
        for name in self._catalog.names():
            try:
                await self._follow(name)
            except (HonedError, SQLAlchemyError) as exc:
                if self._reachable:
                    log.warning("rollout of %s: the registry did not answer (%s); keeping the last weights", name, exc)
                self._reachable = False
                self._metrics.rollout_registry_reachable.set(0)
                continue
            if not self._reachable:
                log.info("rollout of %s: the registry answers again", name)
            self._reachable = True
            self._metrics.rollout_registry_reachable.set(1)

    async def _follow(self, name: str) -> None:
        current = self._routes.get(name)
        if current is not None:
            seen, earlier = current.take(), current.unsent
            if earlier is not None:
                seen = earlier if seen is None else earlier + seen
            current.unsent = None
            if seen is not None:
                try:
                    await asyncio.to_thread(self._rollouts.record, current.rollout_id, current.step, self._holder, seen)
                except BaseException:
                    current.unsent = seen  # written with the next poll that reaches the registry
                    raise
        active = await asyncio.to_thread(self._rollouts.active, name)
        if active is not None and active.status == RUNNING:
            decision = await asyncio.to_thread(self._rollouts.tick, name, holder=self._holder)
            if decision is not None:
                self._metrics.rollout_verdicts.labels(name, decision.verdict).inc()
                if decision.figures.get("agreement") is not None:
                    version = str(active.to_version)
                    self._metrics.rollout_agreement.labels(name, version).set(decision.figures["agreement"])
                active = await asyncio.to_thread(self._rollouts.active, name)
        if active is None:
            if current is not None:
                await self._end_route(name, current)
            return
        if current is None or current.rollout_id != active.id:
            if str(active.from_version) not in self._repository.versions(name):
                return  # this server does not serve the version being replaced (e.g. --model NAME:3): not its rollout
            current = self._start_route(name, active)
        current.step, current.weight = active.step, active.weight
        if not current.ready:
            self._catalog.extra[name] = [f"{name}:{active.to_version}"]
            if current.candidate not in self._repository.versions(name):
                await self._reload(name)
            current.ready = current.candidate in self._repository.versions(name)
        current.run_length = self._run_length(name, current)
        current.settle()
        self._set_weights(name, current, active)

    def _run_length(self, name: str, route: _Route) -> int:
        """Production's mean requests per batch run since the last poll (the last figure when it ran none)."""
        try:
            _, executor = self._repository.get(name, route.production)
        except HonedError:
            return route.run_length
        runs, requests = executor.run_counts()
        last = route.counted
        route.counted = (executor, runs, requests)
        if last is not None and last[0] is executor:  # else a new executor (a reload): counted from its start
            runs, requests = runs - last[1], requests - last[2]
        return run_length(runs, requests, route.run_length)

    async def _end_route(self, name: str, route: _Route) -> None:
        """Send everything to the version that won, reload the model without the loser, then stop routing:
        no unversioned request reaches the rolled-back version, nor the old one after a promotion."""
        ended = await asyncio.to_thread(self._rollouts.get, name)
        promoted = ended.id == route.rollout_id and ended.status == PROMOTED
        route.weight, route.mirror = (100 if promoted else 0), 0.0
        route.settle()
        self._catalog.extra.pop(name, None)
        await self._reload(name)
        del self._routes[name]
        self._set_weights(name, route, None)

    def _start_route(self, name: str, active: Rollout) -> _Route:
        s = active.settings
        route = _Route(
            active.id, active.step, str(active.from_version), str(active.to_version), 0, s.mirror, s.agreement_metric
        )
        self._routes[name] = route
        return route

    async def _reload(self, name: str) -> None:
        try:
            await self._repository.load(name)
        except HonedError as exc:
            log.error("rollout of %s: could not load the versions it needs: %s", name, exc)

    def _set_weights(self, name: str, route: _Route, active: Rollout | None) -> None:
        if active is None:  # the rollout ended: no weights to show
            self._metrics.rollout_step.labels(name).set(0)
            for version in (route.candidate, route.production):
                with contextlib.suppress(KeyError):
                    self._metrics.rollout_weight.remove(name, version)
            return
        weight = route.weight if route.ready else 0
        self._metrics.rollout_step.labels(name).set(active.step + 1)
        self._metrics.rollout_weight.labels(name, route.candidate).set(weight)
        self._metrics.rollout_weight.labels(name, route.production).set(100 - weight)


def _server_side(exc: HonedError) -> bool:
    return status_for(exc)[0] >= 500


__all__ = ["MAX_RUN_LENGTH", "RolloutFollower", "agreement", "run_length"]
