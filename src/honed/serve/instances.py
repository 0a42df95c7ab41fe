"""Model instances and the executor that serves one model version.

An :class:`Instance` is one session (built by :func:`honed.runtime.create_session`, the only session factory)
living in a dedicated thread, optionally pinned to cores; it runs one batch at a time. ONNX Runtime releases the
GIL while it computes, so instances run in parallel with each other and with the event loop, which never
blocks on compute: it only hands batches over and receives results through ``call_soon_threadsafe``.

A :class:`ModelExecutor` is what the dataplane talks to: N instances of one model version behind one
:class:`~honed.serve.batching.Batcher`. It checks each request against the model's inputs before it is queued
(so a bad request never spoils a batch), warms every instance up before it reports ready, and drains on close.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import os
import queue
import threading
import time
from collections.abc import Callable, Hashable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from honed.errors import BackendError, DataError, InvalidArgument
from honed.model.spec import TensorSpec, concrete_shapes, format_shape, input_mismatch
from honed.runtime import RuntimeConfig, Session, create_session, pin_current_thread, runtime_for
from honed.serve.batching import (
    Batcher,
    Clock,
    Outcome,
    Request,
    RunDone,
    RunObserver,
    RunSlots,
    Tensors,
    merge,
    split,
)
from honed.serve.config import ModelServingConfig
from honed.serve.metrics import ServeMetrics

log = logging.getLogger(__name__)
T = TypeVar("T")


class Instance:
    """One session in its own thread. Jobs run strictly one after another, in the order given."""

    def __init__(self, label: str, cores: tuple[int, ...] | None, loop: asyncio.AbstractEventLoop) -> None:
        self.label = label
        self.cores = cores
        self.session: Session | None = None
        self._loop = loop
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._main, name=label, daemon=True)
        self._thread.start()

    def _main(self) -> None:
        try:
            pin_current_thread(self.cores)
        except OSError as exc:  # a core outside this process's allowed set
            log.warning("%s: cannot pin to cores %s: %s", self.label, self.cores, exc)
        while True:
            job = self._jobs.get()
            if job is None:
                return
            job()

    def _post(self, callback: Callable[..., None], *args: Any) -> None:
        # The loop may have closed while this job ran: then nobody is waiting any more.
        with contextlib.suppress(RuntimeError):
            self._loop.call_soon_threadsafe(callback, *args)

    async def call(self, fn: Callable[[], T]) -> T:
        """Run ``fn`` in this instance's thread and await its result."""
        future: asyncio.Future[T] = self._loop.create_future()

        def job() -> None:
            try:
                value = fn()
            except BaseException as exc:
                self._post(_set_exception, future, exc)
            else:
                self._post(_set_result, future, value)

        self._jobs.put(job)
        return await future

    def run_batch(self, requests: list[Request], done: RunDone) -> None:
        """Merge, run and split one batch in this thread; ``done`` gets the per-request outputs or the error."""
        session = self.session
        if session is None:
            raise BackendError(f"{self.label} has no session")

        def job() -> None:
            start = time.perf_counter()
            results: list[Outcome] | BaseException
            try:
                results = list(split(session.run(merge(requests)), requests))
            except DataError as exc:
                # Shapes and types were checked before queueing, but one request's values (an index out of
                # range, say) can still fail a whole batch: run each on its own so only the culprit gets the error.
                results = exc if len(requests) == 1 else [_run_one(session, r) for r in requests]
            except Exception as exc:
                results = exc
            self._post(done, self, requests, results, time.perf_counter() - start)

        self._jobs.put(job)

    def stop(self) -> None:
        """Let the thread finish its queued jobs, then end."""
        self._jobs.put(None)

    def join(self, timeout: float | None = None) -> None:
        self._thread.join(timeout)

    @property
    def alive(self) -> bool:
        return self._thread.is_alive()


def _run_one(session: Session, request: Request) -> Outcome:
    try:
        return session.run(request.inputs)
    except Exception as exc:
        return exc


def _set_result(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _set_exception(future: asyncio.Future[Any], exc: BaseException) -> None:
    if not future.done():
        future.set_exception(exc)


def instance_cores(config: ModelServingConfig, available: list[int] | None = None) -> list[tuple[int, ...] | None]:
    """The cores each instance is pinned to (None: not pinned), following ``config.pin_cores``."""
    if config.pin_cores is False:
        return [config.runtime.affinity] * config.instances
    if config.pin_cores is True:
        cores = sorted(available if available is not None else _allowed_cores())
        per = config.threads_per_instance
        result: list[tuple[int, ...] | None] = []
        for i in range(config.instances):
            picked = [cores[(i * per + j) % len(cores)] for j in range(per)]
            result.append(tuple(dict.fromkeys(picked)))
        return result
    return list(config.pin_cores)


def _allowed_cores() -> list[int]:
    if hasattr(os, "sched_getaffinity"):
        return sorted(os.sched_getaffinity(0))
    return list(range(os.cpu_count() or 1))


def _batchable(inputs: list[TensorSpec], outputs: list[TensorSpec]) -> bool:
    """Whether every input, and every output whose shape is known, has a dynamic first (batch) dimension."""
    if any(spec.shape is None for spec in inputs):
        return False
    for spec in (*inputs, *outputs):
        if spec.shape is not None and (not spec.shape or isinstance(spec.shape[0], int)):
            return False
    return True


class ModelExecutor:
    """One model version ready to serve: validation, the batch queue, N instances, metrics and drain.

    Build it with :meth:`start` (loads every instance, warms it up); call :meth:`infer` from the event loop.
    """

    def __init__(
        self,
        *,
        name: str,
        version: str,
        config: ModelServingConfig,
        instances: list[Instance],
        inputs: list[TensorSpec],
        outputs: list[TensorSpec],
        batchable: bool,
        batcher: Batcher,
    ) -> None:
        self.name = name
        self.version = version
        self.config = config
        self.inputs = inputs
        self.outputs = outputs
        self.batchable = batchable
        self.max_batch_size = config.batching.max_batch_size if batchable else 0
        self._instances = instances
        self._batcher = batcher
        self._names = [spec.name for spec in inputs]
        self._name_set = set(self._names)
        self._checks = [(spec.name, spec.dtype, spec.shape, spec) for spec in inputs]

    @classmethod
    async def start(
        cls,
        model_path: str | Path,
        config: ModelServingConfig | None = None,
        *,
        name: str,
        version: str,
        metrics: ServeMetrics | None = None,
        clock: Clock = time.monotonic,
        slots: RunSlots | None = None,
    ) -> ModelExecutor:
        """Load ``config.instances`` sessions of ``model_path`` in their threads, warm them up, and start serving.

        ``slots``, shared by the executors of one model's versions, caps their runs in progress together.

        Raises the runtime's errors (:class:`~honed.errors.ModelError`, :class:`~honed.errors.BackendError`)
        when the model cannot be loaded or fails its warm-up.
        """
        config = config or ModelServingConfig()
        loop = asyncio.get_running_loop()
        instances: list[Instance] = []
        try:
            for index, cores in enumerate(instance_cores(config)):
                runtime = runtime_for(model_path, _instance_runtime(config, cores))
                instance = Instance(f"honed-{name}-{version}-{index}", cores, loop)
                instances.append(instance)
                instance.session = await instance.call(functools.partial(create_session, model_path, runtime))
            first = instances[0].session
            if first is None:  # pragma: no cover - call() above either set it or raised
                raise BackendError(f"model {name!r} has no session")
            inputs, outputs = list(first.inputs), list(first.outputs)
            batchable = _batchable(inputs, outputs)
            if config.warmup:
                for instance in instances:
                    await instance.call(functools.partial(_warm_up, instance, inputs, config, batchable))
        except BaseException:  # a failed or cancelled start leaves no thread behind, nor a session in one
            await _end(instances)
            raise
        bound = metrics.model(name, version) if metrics is not None else None
        if bound is not None:
            bound.set_instances(len(instances))
        batcher = Batcher(config.batching, instances, batchable=batchable, clock=clock, metrics=bound, slots=slots)
        return cls(
            name=name,
            version=version,
            config=config,
            instances=instances,
            inputs=inputs,
            outputs=outputs,
            batchable=batchable,
            batcher=batcher,
        )

    @property
    def batcher(self) -> Batcher:
        return self._batcher

    @property
    def instances(self) -> list[Instance]:
        """The model's instances (read-only use: their labels, cores and sessions)."""
        return list(self._instances)

    async def infer(
        self,
        inputs: dict[str, np.ndarray[Any, Any]],
        *,
        timeout_s: float | None = None,
        observer: RunObserver | None = None,
        waited_s: float = 0.0,
    ) -> Tensors:
        """Run one request (possibly batched with others) and return every output by name; ``waited_s``
        (seconds since it arrived) counts against the queue-time bound.

        Raises :class:`~honed.errors.DataError` when the inputs do not fit the model,
        :class:`~honed.errors.Overloaded` when the queue is full, :class:`~honed.errors.DeadlineExceeded` when
        ``timeout_s`` runs out while queued, :class:`~honed.errors.Unavailable` while closing. Cancelling the
        caller's task removes the queued request.
        """
        rows, key = self.check(inputs)
        return await self._batcher.submit(inputs, rows, key, timeout_s, observer, waited_s)

    def run_counts(self) -> tuple[int, int]:
        """Batch runs started so far and the requests they carried together."""
        return self._batcher.runs, self._batcher.requests_run

    def refuse_now(self) -> None:
        """Raise :class:`~honed.errors.QueueTimeExceeded` when a request arriving now would wait past the
        queue-time bound (see :meth:`Batcher.refuse_now`): asked before the request is read or decoded."""
        self._batcher.refuse_now()

    def check(self, inputs: dict[str, np.ndarray[Any, Any]]) -> tuple[int, Hashable]:
        """Validate ``inputs`` against the model; return the request's rows and its batch key."""
        if not isinstance(inputs, dict):
            raise DataError(f"inputs must map input names to arrays, got {type(inputs).__name__}")
        if len(inputs) != len(self._names) or not self._name_set.issuperset(inputs):
            mismatch = input_mismatch(self._names, inputs) or "input names must be strings"
            raise DataError(f"model {self.name!r}: {mismatch}; the model's inputs are: {', '.join(self._names)}")
        rows = 1
        key: list[tuple[int, ...]] = []
        batchable = self.batchable
        for index, (name, dtype, shape, spec) in enumerate(self._checks):
            array = inputs[name]
            if not isinstance(array, np.ndarray):
                raise DataError(f"input {name!r} must be a numpy array, got {type(array).__name__}")
            if array.dtype != dtype and not (dtype.kind == "O" and array.dtype.kind in "OSU"):
                raise DataError(f"input {name!r} has element type {array.dtype}, but the model takes {spec.type_name}")
            got = array.shape
            if shape is not None:
                if len(got) != len(shape):
                    raise DataError(
                        f"input {name!r} has shape {list(got)}, but the model takes {format_shape(shape)} "
                        f"({len(shape)} dimensions)"
                    )
                for axis, want in enumerate(shape):
                    if isinstance(want, int) and got[axis] != want and not (axis == 0 and batchable):
                        raise DataError(
                            f"input {name!r} has shape {list(got)}, but the model fixes dimension {axis} at {want} "
                            f"({format_shape(shape)})"
                        )
            if batchable:
                n = got[0] if got else 0
                if index == 0:
                    rows = n
                    if n < 1:
                        raise DataError(f"input {name!r} has an empty batch dimension; send at least one row")
                    if n > self.max_batch_size:
                        raise DataError(
                            f"input {name!r} has a batch of {n}, above model {self.name!r}'s max batch size "
                            f"{self.max_batch_size}; split the request"
                        )
                elif n != rows:
                    raise DataError(
                        f"inputs disagree on the batch size: {self._names[0]!r} has {rows} rows, {name!r} has {n}"
                    )
                key.append(got[1:])
        return rows, tuple(key)

    async def close(self, drain: bool = True) -> None:
        """Stop taking requests; with ``drain`` finish the queued and running ones first; then end the threads."""
        await self._batcher.close(drain=drain)
        await _end(self._instances)


async def _end(instances: list[Instance]) -> None:
    """Stop the instances' threads, wait for them, then free their sessions here, while the interpreter is whole.

    A thread still inside the runtime when the process exits is torn down half-way (on CPython 3.11 a daemon
    thread that wants the GIL back after finalization began is unwound through C++ frames, which aborts with
    "terminate called without an active exception"), so nothing that ends a model may leave one running. The
    join survives the caller's cancellation: it is shielded, and awaited again if cancelled while waiting.
    """
    for instance in instances:
        instance.stop()
    loop = asyncio.get_running_loop()
    joined = asyncio.ensure_future(loop.run_in_executor(None, _join_all, instances, _JOIN_TIMEOUT_S))
    try:
        await asyncio.shield(joined)
    except asyncio.CancelledError:
        await joined
        raise
    for instance in instances:
        instance.session = None


_JOIN_TIMEOUT_S = 10.0


def _join_all(instances: list[Instance], timeout_s: float) -> None:
    deadline = time.monotonic() + timeout_s
    for instance in instances:
        instance.join(max(0.0, deadline - time.monotonic()))
        if instance.alive:
            log.warning("%s: its thread is still running after %.0f s; leaving it", instance.label, timeout_s)


def _instance_runtime(config: ModelServingConfig, cores: tuple[int, ...] | None) -> RuntimeConfig:
    runtime = config.runtime
    return runtime.with_(
        intra_op_threads=config.threads_per_instance,
        inter_op_threads=runtime.inter_op_threads or 1,
        affinity=cores,
    )


def _warm_up(instance: Instance, inputs: list[TensorSpec], config: ModelServingConfig, batchable: bool) -> None:
    """Run the instance at batch 1 and at its largest batch, so the first real requests do not pay for it."""
    session = instance.session
    if session is None:
        return
    sizes = [1, config.batching.max_batch_size] if batchable and config.batching.max_batch_size > 1 else [1]
    guessed = any(spec.shape is None or any(not isinstance(d, int) for d in spec.shape[1:]) for spec in inputs)
    for size in sizes:
        try:
            shapes = concrete_shapes(inputs, batch=size if batchable else None)
        except InvalidArgument:
            return  # an input without a declared shape: nothing sensible to warm up with
        feeds = {spec.name: _zeros(spec, shapes[spec.name]) for spec in inputs}
        try:
            session.run(feeds)
        except DataError:
            if guessed:  # symbolic inner dims were guessed as 1 and the model needs other sizes
                return
            raise


def _zeros(spec: TensorSpec, shape: tuple[int, ...]) -> np.ndarray[Any, Any]:
    if spec.dtype.kind == "O":
        return np.full(shape, "", dtype=object)
    return np.zeros(shape, dtype=spec.dtype)
