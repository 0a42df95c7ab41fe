"""Dynamic batching: one queue per model, the policy that forms batches, and the glue that feeds instances.

Three layers, each testable on its own:

* :func:`merge` / :func:`split`: concatenate requests along axis 0 and scatter outputs back, in order.
* :class:`BatchScheduler`: the pure policy (no asyncio, no threads; time is an argument). It keeps one FIFO per
  *batch key* (the non-batch dims of every input; dtypes are fixed by the model), so requests of different
  shapes never share a batch, bounds the queue in count and in time (``max_queue_time_ms``: a request that
  would wait longer than the bound, by its estimate of the work queued ahead, is refused on arrival), expires
  requests whose deadline or queue-time bound passed, and decides when to
  dispatch: **at once when an instance is idle**; it holds a batch back only to fill a preferred batch size
  when the recent arrival rate says the rows will come within the queue delay. While every instance is busy,
  requests simply accumulate, so the next idle instance takes a full batch.
* :class:`Batcher`: the asyncio side. ``submit`` queues a request and awaits its result; it wakes the policy on
  every arrival, completion and timer, hands batches to idle :class:`Runner` s (model instances), and removes a
  request from the queue when its deadline passes (``DeadlineExceeded``), when it has waited the model's
  queue-time bound anyway (``QueueTimeExceeded``: shed, counted in ``honed_shed_total``) or when its awaiting
  task is cancelled (a client that went away), so that work is never computed.

All decisions read an injected monotonic ``clock``; tests drive it by hand.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
import time
from collections import deque
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol

import numpy as np

from honed.errors import BackendError, DeadlineExceeded, InvalidArgument, Overloaded, QueueTimeExceeded, Unavailable
from honed.serve.config import BatchingConfig
from honed.serve.metrics import ModelMetrics

Array = np.ndarray[Any, Any]
Tensors = dict[str, Array]
Clock = Callable[[], float]

_EWMA = 0.2  # weight of the newest sample in the moving averages the policy keeps
_seq = itertools.count()


class RunObserver(Protocol):
    """Hears when its request leaves the queue and when the batch run it joined finished (request tracing)."""

    def dispatched(self) -> None: ...

    def finished(self, rows: int, requests: int, seconds: float) -> None: ...


_LEAST_QUEUE_S = 0.001
"""The least time in the queue before a request can be shed: one that arrived a bound ago still runs on a free
runner."""


@dataclass(eq=False, slots=True)
class Request:
    """One queued call: its inputs, its rows (first-dimension size), its batch key and when it must be done by."""

    inputs: Tensors
    rows: int
    key: Hashable
    enqueued_at: float
    deadline: float | None = None
    future: asyncio.Future[Tensors] | None = None
    queued: bool = False
    observer: RunObserver | None = None
    seq: int = field(default_factory=lambda: next(_seq))
    shed_at: float | None = None
    """When it has waited the model's queue-time bound (set when queued; None: no bound)."""
    waited_s: float = 0.0
    """Seconds since the request arrived, spent before it reached the queue (reading and decoding it): the
    queue-time bound counts from its arrival."""

    def expires_at(self) -> float | None:
        """The first of its deadline and its shedding time."""
        times = [t for t in (self.deadline, self.shed_at) if t is not None]
        return min(times) if times else None

    def timed_out(self, now: float) -> bool:
        """Whether its own deadline (not the queue-time bound) has passed."""
        return self.deadline is not None and self.deadline <= now


def merge(requests: Sequence[Request]) -> Tensors:
    """The feeds for one model run: each input concatenated along axis 0 in request order."""
    if len(requests) == 1:
        return requests[0].inputs
    names = requests[0].inputs.keys()
    return {name: np.concatenate([r.inputs[name] for r in requests], axis=0) for name in names}


def split(outputs: Tensors, requests: Sequence[Request]) -> list[Tensors]:
    """Scatter one run's outputs back to its requests (views along axis 0, in request order)."""
    if len(requests) == 1:
        return [outputs]
    total = sum(r.rows for r in requests)
    for name, value in outputs.items():
        if value.ndim == 0 or value.shape[0] != total:
            raise BackendError(
                f"output {name!r} has shape {list(value.shape)}, which does not follow the batch dimension "
                f"({total} rows), so it cannot be split between requests; serve this model with batching disabled"
            )
    results: list[Tensors] = []
    start = 0
    for r in requests:
        end = start + r.rows
        results.append({name: value[start:end] for name, value in outputs.items()})
        start = end
    return results


class BatchScheduler:
    """The batching policy over per-key FIFO queues. Pure: every method takes the time it should act at.

    ``batchable=False`` (a model without a dynamic batch dimension) or ``config.enabled=False`` makes every
    batch a single request, oldest first.
    """

    def __init__(self, config: BatchingConfig, *, batchable: bool = True) -> None:
        self.config = config
        self.batching = config.enabled and batchable
        self._queues: dict[Hashable, deque[Request]] = {}
        self._deadlines: list[tuple[float, int, Request]] = []
        self._count = 0
        self._rows = 0
        self._last_arrival: float | None = None
        self._arrival_gap: float | None = None
        self._run_seconds: float | None = None
        self._run_rows: float | None = None
        self._hold_until: float | None = None

    def __len__(self) -> int:
        return self._count

    @property
    def rows(self) -> int:
        """Rows waiting in all queues."""
        return self._rows

    @property
    def has_deadlines(self) -> bool:
        """Whether any queued request (or a stale entry for one) carries a deadline or a queue-time bound."""
        return bool(self._deadlines)

    def queued(self) -> list[Request]:
        """Every queued request, oldest first."""
        return sorted((r for q in self._queues.values() for r in q), key=lambda r: r.seq)

    def add(self, request: Request, now: float, *, instances: int = 1, running_rows: int = 0) -> None:
        """Queue ``request``; raises :class:`Overloaded` (with a retry-after estimate) when the queue is full and
        :class:`QueueTimeExceeded` when, by :meth:`estimated_wait`, it would wait longer than the queue-time bound
        (``running_rows``: the rows of the runs in progress, which are ahead of it too).
        """
        if self._count >= self.config.max_queue_size:
            raise Overloaded(
                f"the queue is full ({self._count} requests waiting); retry later or add instances",
                retry_after_s=self.retry_after(instances, running_rows),
            )
        before = request.waited_s
        refusal = self.refusal(before, instances, running_rows)
        if refusal is not None:
            raise refusal
        bound = self.config.max_queue_time_s
        if self._last_arrival is not None:
            gap = max(0.0, now - self._last_arrival)
            self._arrival_gap = gap if self._arrival_gap is None else (1 - _EWMA) * self._arrival_gap + _EWMA * gap
        self._last_arrival = now
        queue = self._queues.get(request.key)
        if queue is None:
            queue = self._queues[request.key] = deque()
        queue.append(request)
        request.queued = True
        self._count += 1
        self._rows += request.rows
        if bound is not None:  # a request that arrived a bound ago still gets a free runner: it is not yet shed
            request.shed_at = request.enqueued_at + max(bound - before, _LEAST_QUEUE_S)
        expires = request.expires_at()
        if expires is not None:
            heapq.heappush(self._deadlines, (expires, request.seq, request))

    def refusal(self, waited_s: float, instances: int = 1, running_rows: int = 0) -> QueueTimeExceeded | None:
        """The refusal a request that has spent ``waited_s`` since it arrived gets when it asks to be queued now:
        by :meth:`estimated_wait` it would wait past the queue-time bound (None: it may be queued). A request with
        nothing ahead of it is never refused by the estimate."""
        bound = self.config.max_queue_time_s
        wait = self.estimated_wait(instances, running_rows)
        if bound is None or wait is None or not wait > 0 or wait + waited_s <= bound:
            return None
        since = f" after {waited_s * 1000:.0f} ms reading and decoding it" if waited_s >= 0.0005 else ""
        return QueueTimeExceeded(
            f"this request would wait about {wait * 1000:.0f} ms in the queue ({self._rows} rows queued and "
            f"{running_rows} running ahead of it){since}, "
            f"over this model's {bound * 1000:g} ms queue-time bound, so it was not queued; the server is "
            "overloaded: retry later or on another replica",
            retry_after_s=_retry_bounds(wait),
        )

    def remove(self, request: Request) -> bool:
        """Take ``request`` out of the queue (cancelled or timed out); False when it was no longer queued."""
        if not request.queued:
            return False
        queue = self._queues[request.key]
        queue.remove(request)
        if not queue:
            del self._queues[request.key]
        self._dequeued(request)
        return True

    def expire(self, now: float) -> list[Request]:
        """Remove and return every queued request whose deadline or shedding time is at or before ``now``."""
        expired: list[Request] = []
        heap = self._deadlines
        while heap and (heap[0][0] <= now or not heap[0][2].queued):
            _, _, request = heapq.heappop(heap)
            if self.remove(request):
                expired.append(request)
        return expired

    def take(self, now: float) -> list[Request] | None:
        """The batch an idle instance should run now, or None to keep waiting (see :meth:`wake_at`)."""
        self._hold_until = None
        if not self._count:
            return None
        queues = (
            sorted(self._queues.values(), key=lambda q: q[0].seq) if len(self._queues) > 1 else self._queues.values()
        )
        for queue in queues:
            batch = self._candidate(queue)
            if self._should_hold(batch, now):
                continue
            for _ in batch:
                queue.popleft()
            if not queue:
                del self._queues[batch[0].key]
            for request in batch:
                self._dequeued(request)
            return batch
        return None

    def wake_at(self, now: float) -> float | None:
        """When the policy wants to be asked again if nothing arrives or completes first (None: never)."""
        heap = self._deadlines
        while heap and not heap[0][2].queued:
            heapq.heappop(heap)
        times = [t for t in (self._hold_until, heap[0][0] if heap else None) if t is not None]
        return min(times) if times else None

    def record_run(self, rows: int, seconds: float) -> None:
        """Learn from one finished model run (for retry-after estimates)."""
        if self._run_seconds is None or self._run_rows is None:
            self._run_seconds, self._run_rows = seconds, float(rows)
        else:
            self._run_seconds = (1 - _EWMA) * self._run_seconds + _EWMA * seconds
            self._run_rows = (1 - _EWMA) * self._run_rows + _EWMA * rows

    def estimated_wait(self, instances: int, running_rows: int = 0) -> float | None:
        """Seconds a request arriving now would likely wait in the queue before its run starts: the rows queued
        ahead of it, and half the ``running_rows`` of the runs in progress (on average half done), at the measured
        service time per row (the moving averages of recent runs' compute seconds over their rows), shared by
        ``instances`` runners; None before any run has been measured."""
        if self._run_seconds is None or self._run_rows is None:
            return None
        rows = self._rows + running_rows / 2
        return rows * self._run_seconds / max(1.0, self._run_rows) / max(1, instances)

    def retry_after(self, instances: int, running_rows: int = 0) -> float:
        """Seconds until the queue has likely drained, by :meth:`estimated_wait` (bounded to 10 ms .. 30 s)."""
        wait = self.estimated_wait(instances, running_rows)
        return _retry_bounds(self.config.max_queue_delay_s if wait is None else wait)

    def _candidate(self, queue: deque[Request]) -> list[Request]:
        if not self.batching:
            return [queue[0]]
        limit = self.config.max_batch_size
        batch: list[Request] = []
        rows = 0
        for request in queue:
            if rows + request.rows > limit:
                break
            batch.append(request)
            rows += request.rows
        return batch or [queue[0]]

    def _should_hold(self, batch: list[Request], now: float) -> bool:
        preferred = self.config.preferred_batch_sizes
        if not self.batching or not preferred:
            return False
        rows = sum(r.rows for r in batch)
        if rows in preferred or rows >= preferred[-1] or self._arrival_gap is None:
            return False
        until = batch[0].enqueued_at + self.config.max_queue_delay_s
        needed = next(p for p in preferred if p > rows) - rows
        if now >= until or needed * self._arrival_gap > until - now:
            return False
        self._hold_until = until if self._hold_until is None else min(self._hold_until, until)
        return True

    def _dequeued(self, request: Request) -> None:
        request.queued = False
        self._count -= 1
        self._rows -= request.rows


class Runner(Protocol):
    """Something that runs one batch at a time off the event loop (a model instance)."""

    def run_batch(self, requests: list[Request], done: RunDone) -> None:
        """Start running ``requests`` as one batch; call ``done`` on the event loop when finished."""
        ...


Outcome = Tensors | BaseException
"""One request's outputs, or the error that request alone gets."""
RunDone = Callable[[Runner, list[Request], "list[Outcome] | BaseException", float], None]
"""``done(runner, requests, per-request outcomes or one error for all, compute seconds)``, on the event loop."""


class RunSlots:
    """How many batch runs the versions of one model may have in progress at once, all of them together.

    The versions a server holds of one model (production and a rollout's candidate, or the old and the new ones
    while a reload swaps them) run on the same cores. Without a shared cap, a second version doubles the runs in
    flight: their threads and the event loop then fight over those cores, and every answer waits longer. A
    :class:`Batcher` that has an idle runner but finds no free slot waits; as runs end, the waiting batchers are
    woken in the order they began to wait, before the one whose run ended takes the slot again."""

    def __init__(self, capacity: int = 1) -> None:
        self.capacity = capacity
        self.in_use = 0
        self._waiting: dict[Batcher, None] = {}  # insertion-ordered, no duplicates

    def acquire(self, batcher: Batcher) -> bool:
        """Take a slot for ``batcher``'s next run; without one, ``batcher`` waits for :meth:`release`."""
        if self.in_use < self.capacity:
            self.in_use += 1
            return True
        self._waiting[batcher] = None
        return False

    def release(self, batcher: Batcher) -> None:
        """Give back ``batcher``'s slot and let the batchers that waited for one, other than ``batcher``, run."""
        self.in_use -= 1
        self._wake(batcher)

    def resize(self, capacity: int) -> None:
        """Change how many runs may be in progress (a reload with another instance count)."""
        self.capacity = capacity
        self._wake(None)

    def _wake(self, releasing: Batcher | None) -> None:
        while self._waiting and self.in_use < self.capacity:
            waiter = next(iter(self._waiting))
            del self._waiting[waiter]
            if waiter is not releasing:
                waiter.poll()


class Batcher:
    """The asyncio half of dynamic batching: queue, wake-ups, dispatch to idle runners, scatter, drain.

    ``slots``, when given, is shared with the batchers of the model's other versions and caps their runs in
    progress together (see :class:`RunSlots`)."""

    def __init__(
        self,
        config: BatchingConfig,
        runners: Sequence[Runner],
        *,
        batchable: bool = True,
        clock: Clock = time.monotonic,
        metrics: ModelMetrics | None = None,
        slots: RunSlots | None = None,
    ) -> None:
        if not runners:
            raise InvalidArgument("a batcher needs at least one runner")
        self._slots = slots
        self.scheduler = BatchScheduler(config, batchable=batchable)
        self._runners = len(runners)
        self._idle: list[Runner] = list(reversed(runners))
        self._clock = clock
        self._metrics = metrics
        self._timer: asyncio.TimerHandle | None = None
        self._timer_at: float | None = None
        self._closed = False
        self._drained: asyncio.Future[None] | None = None
        self.runs = 0
        self.requests_run = 0
        """Batch runs started so far, and the requests they carried (a rollout routes in runs of their mean)."""
        self._running_rows = 0

    @property
    def slots(self) -> RunSlots | None:
        """The run slots this batcher shares with the model's other versions (None: its runners alone cap it)."""
        return self._slots

    @property
    def busy(self) -> int:
        """Runners running a batch now."""
        return self._runners - len(self._idle)

    @property
    def closed(self) -> bool:
        return self._closed

    async def submit(
        self,
        inputs: Tensors,
        rows: int,
        key: Hashable,
        timeout_s: float | None = None,
        observer: RunObserver | None = None,
        waited_s: float = 0.0,
    ) -> Tensors:
        """Queue one request and wait for its outputs (``waited_s``: seconds since it arrived, which count
        against the queue-time bound).

        Raises :class:`Overloaded` when the queue is full, :class:`QueueTimeExceeded` at once when by the
        scheduler's estimate it would wait longer than the queue-time bound (and later if it waits that long
        anyway), :class:`DeadlineExceeded` when ``timeout_s`` runs out while the request is still queued,
        :class:`Unavailable` once the batcher is closing. Cancelling the
        awaiting task removes a still-queued request, so it is never computed.
        """
        if self._closed:
            raise Unavailable("the model is shutting down; retry on another replica or later")
        now = self._clock()
        if len(self.scheduler) >= self.scheduler.config.max_queue_size:
            self._pump()  # shed what waited too long first: a queue full of stale requests must not refuse this
        deadline = None
        if timeout_s is not None:
            if isinstance(timeout_s, bool) or not isinstance(timeout_s, int | float) or not timeout_s > 0:
                raise InvalidArgument(f"timeout must be a number of seconds > 0, got {timeout_s!r}")
            deadline = now + float(timeout_s)
        future: asyncio.Future[Tensors] = asyncio.get_running_loop().create_future()
        request = Request(inputs, rows, key, now, deadline, future, observer=observer, waited_s=max(0.0, waited_s))
        try:
            self.scheduler.add(request, now, instances=self._runners, running_rows=self._running_rows)
        except Overloaded as exc:
            if self._metrics is not None:
                self._metrics.shed("estimate" if isinstance(exc, QueueTimeExceeded) else "queue_full")
            raise
        self._pump()
        try:
            return await future
        except asyncio.CancelledError:
            if self.scheduler.remove(request):
                self._pump()
            raise

    def refuse_now(self) -> None:
        """Raise :class:`QueueTimeExceeded` (counted as shed by the estimate) when a request arriving now would be
        refused on arrival by the queue-time estimate: what a transport asks before it reads and decodes a request,
        so that refusing under overload costs next to nothing. Whatever it lets through is checked again on
        :meth:`submit`."""
        if self._closed:
            return
        refusal = self.scheduler.refusal(0.0, self._runners, self._running_rows)
        if refusal is not None:
            if self._metrics is not None:
                self._metrics.shed("estimate")
            raise refusal

    def poll(self) -> None:
        """Let the policy act on the current time (timers call this; tests with a fake clock call it too)."""
        self._pump()

    async def close(self, drain: bool = True) -> None:
        """Refuse new requests; with ``drain`` finish every queued and running one, else fail the queued ones."""
        self._closed = True
        if not drain:
            for request in self.scheduler.queued():
                self.scheduler.remove(request)
                _fail(request, Unavailable("the model was unloaded before this request ran"))
        if len(self.scheduler) or self.busy:
            self._drained = asyncio.get_running_loop().create_future()
            self._pump()
            await self._drained
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _pump(self) -> None:
        now = self._clock()
        scheduler = self.scheduler
        if scheduler.has_deadlines:
            for request in scheduler.expire(now):
                if request.timed_out(now):
                    _fail(request, DeadlineExceeded("the request's timeout ran out while it waited in the queue"))
                    continue
                if self._metrics is not None:
                    self._metrics.shed("queue_time")
                bound_ms = scheduler.config.max_queue_time_ms
                _fail(
                    request,
                    QueueTimeExceeded(
                        f"the request waited {bound_ms:g} ms in the queue, this model's queue-time bound, and was "
                        "not run; the server is overloaded: retry later or on another replica",
                        retry_after_s=scheduler.retry_after(self._runners, self._running_rows),
                    ),
                )
        slots = self._slots
        while self._idle and len(scheduler):
            if slots is not None and not slots.acquire(self):
                break
            batch = scheduler.take(now)
            if batch is None:
                if slots is not None:
                    slots.release(self)
                break
            runner = self._idle.pop()
            self.runs += 1
            self.requests_run += len(batch)
            self._running_rows += sum(r.rows for r in batch)
            if self._metrics is not None:
                for request in batch:
                    self._metrics.observe_queue(now - request.enqueued_at)
            for request in batch:
                if request.observer is not None:
                    request.observer.dispatched()
            runner.run_batch(batch, self._done)
        if self._metrics is not None:
            self._metrics.set_queue_depth(len(scheduler))
        self._arm(scheduler.wake_at(now), now)
        if self._drained is not None and not len(scheduler) and not self.busy and not self._drained.done():
            self._drained.set_result(None)

    def _done(
        self, runner: Runner, batch: list[Request], results: list[Outcome] | BaseException, seconds: float
    ) -> None:
        self._idle.append(runner)
        rows = sum(r.rows for r in batch)
        self._running_rows -= rows
        self.scheduler.record_run(rows, seconds)
        if self._metrics is not None:
            self._metrics.observe_batch(rows, seconds)
        for request in batch:
            if request.observer is not None:
                request.observer.finished(rows, len(batch), seconds)
        if isinstance(results, BaseException):
            for request in batch:
                _fail(request, results)
        else:
            for request, result in zip(batch, results, strict=True):
                if isinstance(result, BaseException):
                    _fail(request, result)
                elif request.future is not None and not request.future.done():
                    request.future.set_result(result)
        if self._slots is not None:
            self._slots.release(self)
        self._pump()

    def _arm(self, wake: float | None, now: float) -> None:
        if wake is None:
            if self._timer is not None:
                self._timer.cancel()
                self._timer = self._timer_at = None
            return
        if self._timer is not None and self._timer_at is not None and self._timer_at <= wake:
            return
        if self._timer is not None:
            self._timer.cancel()
        self._timer_at = wake
        self._timer = asyncio.get_running_loop().call_later(max(0.0, wake - now), self._on_timer)

    def _on_timer(self) -> None:
        self._timer = self._timer_at = None
        self._pump()


def _retry_bounds(seconds: float) -> float:
    return min(30.0, max(0.01, seconds))


def _fail(request: Request, exc: BaseException) -> None:
    if request.future is not None and not request.future.done():
        request.future.set_exception(exc)
