"""A real server in this process whose model runs wait at a gate the test opens, so "a request is running" and
"a request is queued" are states the test sets up, not races it hopes to win on a slow enough machine.

The server runs on the test's own event loop (in the main thread, so SIGTERM reaches its handler); blocking
clients go to threads. Everything else is the real thing: the repository, the batcher, the instances and their
ONNX Runtime sessions, uvicorn and grpc.aio.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from honed.runtime import Session
from honed.serve.instances import ModelExecutor
from honed.serve.server import Server, ServerOptions, build

if TYPE_CHECKING:
    from honed.serve.tracing import Tracing


class Gate:
    """Holds every model run until :meth:`let_through` admits it (or :meth:`open` admits all from then on)."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._permits = 0
        self._open = False
        self.held = 0
        """Runs waiting at the gate now."""

    def pass_through(self) -> None:
        """Called by a model run in its instance thread: wait for a permit."""
        with self._cond:
            self.held += 1
            self._cond.notify_all()
            self._cond.wait_for(lambda: self._open or self._permits > 0)
            if not self._open:
                self._permits -= 1
            self.held -= 1

    def let_through(self, runs: int = 1) -> None:
        with self._cond:
            self._permits += runs
            self._cond.notify_all()

    def open(self) -> None:
        with self._cond:
            self._open = True
            self._cond.notify_all()

    async def holding(self, runs: int = 1, timeout_s: float = 60.0) -> None:
        """Return once ``runs`` model runs wait at the gate (``timeout_s`` only guards against a hung test)."""

        def wait() -> bool:
            with self._cond:
                return self._cond.wait_for(lambda: self.held >= runs, timeout_s)

        if not await asyncio.to_thread(wait):
            raise AssertionError(f"{runs} model run(s) never reached the gate")

    async def start(self, *args: Any, **kwargs: Any) -> ModelExecutor:
        """An executor factory (see :func:`honed.serve.server.build`) whose sessions wait at this gate."""
        executor = await ModelExecutor.start(*args, **kwargs)
        for instance in executor.instances:
            if instance.session is not None:
                instance.session = _GatedSession(instance.session, self)
        return executor


class _GatedSession:
    """A session whose every run first passes the gate."""

    def __init__(self, session: Session, gate: Gate) -> None:
        self._session = session
        self._gate = gate
        self.inputs = session.inputs
        self.outputs = session.outputs
        self.config = session.config

    def run(self, feeds: Mapping[str, np.ndarray[Any, Any]]) -> dict[str, np.ndarray[Any, Any]]:
        self._gate.pass_through()
        return self._session.run(feeds)

    def end_profiling(self) -> Path | None:
        return self._session.end_profiling()


async def until(predicate: Any, what: str, timeout_s: float = 60.0) -> None:
    """Yield to the event loop until ``predicate()`` holds (``timeout_s`` only guards against a hung test)."""
    deadline = asyncio.get_running_loop().time() + timeout_s
    while not predicate():
        if asyncio.get_running_loop().time() > deadline:
            raise AssertionError(f"never saw: {what}")
        await asyncio.sleep(0.005)


@contextlib.asynccontextmanager
async def gated_server(
    repo: Path, gate: Gate, *, tracing: Tracing | None = None, **options: Any
) -> AsyncIterator[Server]:
    """A ready server over ``repo`` on free loopback ports (more ``ServerOptions`` in ``options``; request tracing
    with ``tracing``); on exit the gate opens and the server drains."""
    dataplane = build(repo, factory=gate.start, tracing=tracing)
    settings = {"http": "127.0.0.1:0", "grpc": "127.0.0.1:0", "drain_timeout_s": 30.0, **options}
    server = Server(dataplane, ServerOptions(**settings))
    task = asyncio.ensure_future(server.serve())
    ready = asyncio.ensure_future(_ready(server))
    await asyncio.wait({task, ready}, return_when=asyncio.FIRST_COMPLETED)
    if task.done():
        ready.cancel()
        task.result()  # the server failed to start: raise why
        raise AssertionError("the server stopped before it was ready")
    try:
        yield server
    finally:
        gate.open()
        server.request_shutdown()
        await task


async def _ready(server: Server) -> None:
    while not await server.dataplane.ready():
        await asyncio.sleep(0.005)


def sample(server: Server, name: str, **labels: str) -> float:
    """One sample of the server's metrics (0 when the series has none yet)."""
    value = server.dataplane.metrics.registry.get_sample_value(name, labels)
    return 0.0 if value is None else value
