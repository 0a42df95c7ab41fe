"""The server process: HTTP and gRPC on one event loop over one dataplane, and its lifecycle.

Start: both listeners bind first (so liveness answers at once), then every model loads and warms up, then the
server reports ready. SIGTERM (or SIGINT): readiness turns false at once, requests already taken finish (up to
``drain_timeout_s``), the listeners close, the model queues drain, and :meth:`Server.serve` returns. With a
:class:`~honed.serve.policy_reload.PolicyReloader`, SIGHUP reloads the access policy and the reloader polls its
file for changes while the server runs.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import socket
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import uvicorn

from honed.errors import InvalidArgument
from honed.serve.access import AccessPolicy
from honed.serve.contract import GRPC_PORT, HTTP_PORT
from honed.serve.dataplane import DataPlane
from honed.serve.grpc import DEFAULT_MAX_CONCURRENT_RPCS, build_server
from honed.serve.http import DEFAULT_MAX_BODY_BYTES, HttpApp, early_refusals
from honed.serve.instances import ModelExecutor
from honed.serve.metrics import ServeMetrics
from honed.serve.policy_reload import DEFAULT_POLL_S, PolicyReloader
from honed.serve.repository import Catalog, ExecutorFactory, ModelRepository
from honed.serve.security import ResidencyGuard
from honed.serve.tls import TlsFiles

if TYPE_CHECKING:
    from honed.serve.rollout import RolloutFollower
    from honed.serve.tracing import Tracing

log = logging.getLogger("honed.serve")

DEFAULT_MAX_CONCURRENCY = DEFAULT_MAX_CONCURRENT_RPCS
"""Per transport: HTTP connections or requests in progress (503 beyond, uvicorn's ``limit_concurrency``) and gRPC
calls in progress (RESOURCE_EXHAUSTED beyond)."""


@dataclass(frozen=True)
class ServerOptions:
    """Where and how the server listens. An address of None turns that transport off; port 0 picks a free one."""

    http: str | None = f"127.0.0.1:{HTTP_PORT}"
    grpc: str | None = f"127.0.0.1:{GRPC_PORT}"
    metrics: str | None = None
    """A listener that answers ``/metrics`` alone (TLS as the HTTP port's); None: only the HTTP port has it."""
    max_body_bytes: int = DEFAULT_MAX_BODY_BYTES
    max_concurrency: int = DEFAULT_MAX_CONCURRENCY
    drain_timeout_s: float = 30.0
    tls: TlsFiles | None = None

    def __post_init__(self) -> None:
        if self.http is None and self.grpc is None:
            raise InvalidArgument("turn on at least one of HTTP and gRPC")
        for address in (self.http, self.grpc, self.metrics):
            if address is not None:
                parse_address(address)
        if isinstance(self.max_body_bytes, bool) or not isinstance(self.max_body_bytes, int) or self.max_body_bytes < 1:
            raise InvalidArgument(f"max body size must be a whole number of bytes >= 1, got {self.max_body_bytes!r}")
        if (
            isinstance(self.max_concurrency, bool)
            or not isinstance(self.max_concurrency, int)
            or self.max_concurrency < 1
        ):
            raise InvalidArgument(f"max concurrency must be a whole number >= 1, got {self.max_concurrency!r}")
        if not self.drain_timeout_s >= 0:
            raise InvalidArgument(f"drain timeout must be >= 0 seconds, got {self.drain_timeout_s!r}")


def parse_address(address: str) -> tuple[str, int]:
    """``HOST:PORT`` (``[::1]:8000`` for IPv6) as a host and a port; anything else is :class:`InvalidArgument`."""
    host, sep, port_text = address.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 <= int(port_text) <= 65535:
        raise InvalidArgument(
            f"bad address {address!r}: write HOST:PORT, e.g. 127.0.0.1:8000 (port 0 picks a free one)"
        )
    return host, int(port_text)


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: this module owns SIGTERM/SIGINT."""

    def install_signal_handlers(self) -> None:  # uvicorn < 0.29
        return

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:  # uvicorn >= 0.29
        yield


class Server:
    """HTTP + gRPC over one dataplane, with readiness, drain and shutdown."""

    def __init__(
        self, dataplane: DataPlane, options: ServerOptions | None = None, *, reloader: PolicyReloader | None = None
    ) -> None:
        self.dataplane = dataplane
        self.options = options or ServerOptions()
        self.reloader = reloader
        self.http_port: int | None = None
        self.grpc_port: int | None = None
        self.metrics_port: int | None = None
        self.http_app: HttpApp | None = None
        self._stop = asyncio.Event()

    def request_shutdown(self) -> None:
        """Begin the graceful shutdown (what SIGTERM does): not ready, drain, exit."""
        self.dataplane.begin_drain()
        self._stop.set()

    async def serve(self, on_listening: Callable[[Server], None] | None = None) -> None:
        """Run until :meth:`request_shutdown` (or SIGTERM/SIGINT); then drain and return."""
        loop = asyncio.get_running_loop()
        installed: list[signal.Signals] = []
        for sig in (signal.SIGTERM, signal.SIGINT):
            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):
                loop.add_signal_handler(sig, self.request_shutdown)
                installed.append(sig)
        reloads: set[asyncio.Task[Any]] = set()
        watcher: asyncio.Task[None] | None = None
        following: asyncio.Task[None] | None = None
        if self.reloader is not None:
            reloader = self.reloader

            def on_hangup() -> None:
                task = asyncio.ensure_future(reloader.reload("SIGHUP"))
                reloads.add(task)
                task.add_done_callback(reloads.discard)

            with contextlib.suppress(NotImplementedError, RuntimeError, ValueError, AttributeError):
                loop.add_signal_handler(signal.SIGHUP, on_hangup)
                installed.append(signal.SIGHUP)
            if reloader.poll_s > 0:
                watcher = asyncio.create_task(reloader.watch())
        listeners: list[tuple[_Uvicorn, asyncio.Task[Any]]] = []
        grpc_server = None
        try:
            if self.options.http is not None:
                app = self.http_app = HttpApp(self.dataplane, max_body_bytes=self.options.max_body_bytes)
                self.http_port = self._listen(self.options.http, app, listeners)
            if self.options.metrics is not None:
                scrape = HttpApp(self.dataplane, max_body_bytes=self.options.max_body_bytes, metrics_only=True)
                self.metrics_port = self._listen(self.options.metrics, scrape, listeners)
            if self.options.grpc is not None:
                grpc_server, self.grpc_port = build_server(
                    self.dataplane,
                    self.options.grpc,
                    max_message_bytes=self.options.max_body_bytes,
                    max_concurrent_rpcs=self.options.max_concurrency,
                    credentials=self.options.tls.grpc_credentials() if self.options.tls is not None else None,
                )
                await grpc_server.start()
            if on_listening is not None:
                on_listening(self)
            await self.dataplane.start()
            if self.dataplane.rollouts is not None:
                following = asyncio.create_task(self.dataplane.rollouts.run())
            if not self._stop.is_set():
                log.info("ready")
            await self._stop.wait()
            self.dataplane.begin_drain()
            if not await self.dataplane.wait_idle(self.options.drain_timeout_s):
                log.warning("drain timeout: %d request(s) still in flight", self.dataplane.inflight)
        finally:
            # Ordered: the rollout follower and the policy reloads end first (a reload of a model the follower had
            # begun is waited for, not abandoned), then the listeners close, then every model version ends.
            background = [*reloads, *(t for t in (watcher, following) if t is not None)]
            for task in background:
                task.cancel()
            for outcome in await asyncio.gather(*background, return_exceptions=True):
                if isinstance(outcome, Exception):
                    log.error("a background task failed while the server stopped: %s", outcome)
            for listener, _ in listeners:
                listener.should_exit = True
            for _, task in listeners:
                with contextlib.suppress(Exception):
                    await task
            if grpc_server is not None:
                await grpc_server.stop(grace=1.0)
            await self.dataplane.repository.close(drain=True)
            await self.dataplane.features.aclose()
            for sig in installed:
                loop.remove_signal_handler(sig)

    def _listen(self, address: str, app: HttpApp, listeners: list[tuple[_Uvicorn, asyncio.Task[Any]]]) -> int:
        """Start uvicorn with ``app`` on ``address`` (added to ``listeners``); the bound port."""
        host, port = parse_address(address)
        sock = _bind(host, port)
        tracing = self.dataplane.tracing
        config = uvicorn.Config(
            tracing.http(app) if tracing is not None and not app.metrics_only else app,
            # uvicorn answers 503 once the open connections reach its limit, the arriving one included.
            limit_concurrency=self.options.max_concurrency + 1,
            http=early_refusals(app),  # httptools, refusing what the headers already decide
            loop="none",
            lifespan="off",
            access_log=False,
            proxy_headers=False,  # no client address is used, so skip the per-request X-Forwarded-* rewrite
            server_header=False,
            log_level="warning",
            timeout_graceful_shutdown=max(1, int(self.options.drain_timeout_s)),
            **(self.options.tls.uvicorn_options() if self.options.tls is not None else {}),
        )
        listener = _Uvicorn(config)
        listeners.append((listener, asyncio.create_task(listener.serve(sockets=[sock]))))
        return int(sock.getsockname()[1])


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InvalidArgument(f"cannot listen for HTTP on {host}:{port}: {exc.strerror}") from None
    sock.listen(2048)
    sock.setblocking(False)
    return sock


def build(
    path: Path | None,
    *,
    defaults: dict[str, Any] | None = None,
    metrics: ServeMetrics | None = None,
    catalog: Catalog | None = None,
    residency: ResidencyGuard | None = None,
    access: AccessPolicy | None = None,
    factory: ExecutorFactory = ModelExecutor.start,
    tracing: Tracing | None = None,
) -> DataPlane:
    """A dataplane over the models at ``path`` (a repository, a model folder or an .onnx file) or in ``catalog``.

    ``factory`` starts each model version (what tests wrap to hold a model run until they let it finish).
    """
    metrics = metrics or ServeMetrics()
    repository = ModelRepository(path, factory, defaults=defaults, metrics=metrics, catalog=catalog)
    return DataPlane(repository, metrics, residency=residency, access=access, tracing=tracing)


def run(
    path: Path | None,
    options: ServerOptions,
    *,
    defaults: dict[str, Any] | None = None,
    on_listening: Callable[[Server], None] | None = None,
    metrics: ServeMetrics | None = None,
    catalog: Catalog | None = None,
    residency: ResidencyGuard | None = None,
    access: AccessPolicy | None = None,
    access_poll_s: float = DEFAULT_POLL_S,
    follow: Callable[[DataPlane], RolloutFollower] | None = None,
    tracing: Tracing | None = None,
) -> None:
    """Serve until SIGTERM/SIGINT, on uvloop when it is installed. An ``access`` policy read from a file reloads on
    SIGHUP and, every ``access_poll_s`` seconds (0: never), when the file has changed."""

    async def main() -> None:
        dataplane = build(
            path,
            defaults=defaults,
            metrics=metrics,
            catalog=catalog,
            residency=residency,
            access=access,
            tracing=tracing,
        )
        if follow is not None:  # a registry server follows its models' rollouts
            dataplane.rollouts = follow(dataplane)
        reloader = None
        if access is not None and access.source is not None:
            reloader = PolicyReloader(access, dataplane.use_policy, metrics=dataplane.metrics, poll_s=access_poll_s)
        server = Server(dataplane, options, reloader=reloader)
        await server.serve(on_listening)

    try:
        import uvloop
    except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard] on Linux and macOS
        asyncio.run(main())
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(main())
