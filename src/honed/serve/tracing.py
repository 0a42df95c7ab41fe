"""Request tracing with OpenTelemetry: W3C trace context in, server spans out, OTLP/HTTP export.

Off unless the server is given an OTLP endpoint (:class:`TracingConfig`). This module imports no OpenTelemetry
code until :meth:`Tracing.start`, and the rest of the server touches it only behind a ``tracing is not None``
check, so a server without tracing never loads the SDK. The SDK is the optional ``tracing`` extra.

With tracing on:

* The REST app is wrapped in an ASGI layer (:meth:`Tracing.http`) and the gRPC server gets an interceptor
  (:meth:`Tracing.grpc_interceptor`); both read ``traceparent`` / ``tracestate`` (W3C Trace Context) from the
  request headers or call metadata and start a SERVER span that continues the caller's trace. The health probes
  and ``/metrics`` are not traced.
* Sampling follows the caller, else the configured share (OpenTelemetry's ``parentbased_traceidratio``): a
  request whose valid ``traceparent`` carries a sampling decision keeps it; the others are sampled at
  ``TracingConfig.sample``. The decision comes first and costs a header scan and a random draw: a request that
  is not sampled creates no span, context or log line at all, which keeps 1% sampling cheap.
* Per infer request the dataplane asks :meth:`Tracing.infer` for a
  :class:`~honed.serve.batching.RunObserver`, which the batcher calls when the request leaves the queue and when
  its batch run finishes. The server span gets the model, version, batch size and queue time, and child spans::

      POST /v2/models/{model}/infer          (or inference.GRPCInferenceService/ModelInfer)
        receive    span start until the dataplane holds the decoded request: headers, credentials, body, decode
        queue      waiting in the model's batch queue
        batch      the run the request joined: hand-over to an instance, merge, compute, split, hand-back
          compute  the model session's run of the merged batch (as timed in the instance thread)

* Spans go to the OTLP/HTTP endpoint through a ``BatchSpanProcessor`` (export runs on the SDK's own thread,
  never on the event loop); :meth:`Tracing.shutdown` flushes what is left.
* Every sampled request writes one access line on the ``honed.serve.access`` logger (INFO) with its trace id
  and span id, so a log line leads to its trace; raise that logger's level to drop them. Requests that are not
  sampled write none (a line per request costs more than the whole 1% of traces: docs/benchmarks.md).
"""

from __future__ import annotations

import asyncio
import logging
import random
import time
from collections.abc import Awaitable, Callable, Iterable, MutableMapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit

import grpc

from honed import __version__
from honed.errors import InvalidArgument
from honed.serve.contract import LIVE_PATH, METRICS_PATH, READY_PATH

if TYPE_CHECKING:
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SpanExporter
    from opentelemetry.trace import Span, Tracer

access_log = logging.getLogger("honed.serve.access")

SERVICE_NAME = "honed-serve"
TRACES_PATH = "/v1/traces"
EXTRA_HINT = "pip install 'honed[tracing]'"

_UNTRACED_PATHS = frozenset({LIVE_PATH, READY_PATH, METRICS_PATH})
_UNTRACED_METHODS = frozenset({"ServerLive", "ServerReady"})
_TRACE_HEADERS = (b"traceparent", b"tracestate")
_GRPC_ERRORS = frozenset(
    {
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.UNIMPLEMENTED,
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DATA_LOSS,
    }
)
"""gRPC codes that mark a server span as failed (OpenTelemetry's RPC conventions); the rest are the caller's."""

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Asgi = Callable[[Scope, Receive, Send], Awaitable[None]]


@dataclass(frozen=True)
class TracingConfig:
    """Where spans go and how many requests are traced.

    ``endpoint`` is the OTLP/HTTP receiver: a base URL (``http://127.0.0.1:4318``, to which ``/v1/traces`` is
    added) or the full traces URL. ``sample`` is the share of requests traced when the caller did not decide.
    """

    endpoint: str
    sample: float = 1.0
    service_name: str = SERVICE_NAME

    def __post_init__(self) -> None:
        parts = urlsplit(self.endpoint)
        try:
            port_ok = parts.port is None or parts.port > 0
        except ValueError:
            port_ok = False
        if parts.scheme not in ("http", "https") or not parts.hostname or not port_ok or parts.query or parts.fragment:
            raise InvalidArgument(
                f"--otlp-endpoint must be an http(s) URL of an OTLP/HTTP receiver, e.g. http://127.0.0.1:4318, "
                f"got {self.endpoint!r}"
            )
        sample = self.sample
        if isinstance(sample, bool) or not isinstance(sample, int | float) or not 0.0 <= sample <= 1.0:
            raise InvalidArgument(f"--trace-sample must be a share between 0 and 1 (0.01: 1%), got {sample!r}")
        if not self.service_name:
            raise InvalidArgument("the tracing service name must not be empty")

    @property
    def traces_url(self) -> str:
        """The URL spans are POSTed to."""
        base = self.endpoint.rstrip("/")
        return base if base.endswith(TRACES_PATH) else base + TRACES_PATH


class Tracing:
    """A tracer provider with its exporter, and the hooks the server's layers call. Build it with :meth:`start`."""

    def __init__(self, provider: TracerProvider, config: TracingConfig) -> None:
        from opentelemetry import context, trace
        from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

        self.config = config
        self.provider = provider
        self.tracer: Tracer = provider.get_tracer("honed.serve", __version__)
        self._extract = TraceContextTextMapPropagator().extract
        self._attach = context.attach
        self._detach = context.detach
        self._in_context = trace.set_span_in_context
        self._current = trace.get_current_span
        self._share = config.sample
        self._server = trace.SpanKind.SERVER
        self._error = trace.StatusCode.ERROR

    @classmethod
    def start(cls, config: TracingConfig, *, exporter: SpanExporter | None = None) -> Tracing:
        """Tracing per ``config``, exporting to its OTLP endpoint (or to ``exporter``, e.g. an in-memory one).

        Raises :class:`InvalidArgument` when the OpenTelemetry SDK (the ``tracing`` extra) is not installed.
        """
        try:
            from opentelemetry.sdk.resources import Resource
            from opentelemetry.sdk.trace import TracerProvider
            from opentelemetry.sdk.trace.export import BatchSpanProcessor
            from opentelemetry.sdk.trace.sampling import ALWAYS_ON, ParentBased

            if exporter is None:
                from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter

                exporter = OTLPSpanExporter(endpoint=config.traces_url, timeout=10)
        except ImportError as exc:
            raise InvalidArgument(
                f"tracing needs the OpenTelemetry SDK ({exc.name or exc} is missing): {EXTRA_HINT}"
            ) from None
        resource = Resource.create({"service.name": config.service_name, "service.version": __version__})
        # The share is applied in _decide, before any span exists; what reaches the SDK is to be recorded.
        provider = TracerProvider(resource=resource, sampler=ParentBased(ALWAYS_ON))
        # Batches of 2,048 spans (the SDK's default is 512) every 5 s at most: a quarter of the exports, each its
        # own HTTP request on the export thread, which contends with the event loop for the interpreter.
        provider.add_span_processor(
            BatchSpanProcessor(exporter, max_queue_size=8192, schedule_delay_millis=5000, max_export_batch_size=2048)
        )
        return cls(provider, config)

    def flush(self, timeout_s: float = 30.0) -> bool:
        """Export every finished span now; False if ``timeout_s`` ran out first."""
        return bool(self.provider.force_flush(int(timeout_s * 1000)))

    def shutdown(self) -> None:
        """Flush and stop exporting (blocking: call it off the event loop or after it ended)."""
        self.provider.shutdown()

    # -- the transports' layers ------------------------------------------------------------------------------
    def http(self, app: Asgi) -> Asgi:
        """``app`` (the REST ASGI app) with a server span around every request but the probes and metrics."""
        return _TracedHttp(app, self)

    def grpc_interceptor(self) -> grpc.aio.ServerInterceptor:
        """An interceptor (put it first) that wraps every gRPC call but the health probes in a server span."""
        return _TracedGrpc(self)

    def _decide(self, carrier: dict[str, str]) -> tuple[bool, Any]:
        """Whether a request with these trace headers is traced, and the caller's context to continue (None when
        its ``traceparent`` is missing or malformed: then a draw at the configured share decides). A request
        without a ``traceparent`` costs a dict look-up and a random draw: no OpenTelemetry object is made."""
        if "traceparent" in carrier:
            parent = self._extract(carrier)
            remote = self._current(parent).get_span_context()
            if remote.is_valid:
                return bool(remote.trace_flags.sampled), parent
        return self._share >= 1.0 or random.random() < self._share, None

    def _open(self, name: str, parent: Any, start_ns: int | None = None) -> tuple[Span, Any]:
        """The server span of a sampled request, current from now on (with the token to detach it)."""
        span = self.tracer.start_span(name, context=parent, kind=self._server, start_time=start_ns)
        return span, self._attach(self._in_context(span))

    def _end(self, span: Span, token: Any, what: str, outcome: str, started: float) -> None:
        self._detach(token)
        span.end()
        ctx = span.get_span_context()
        access_log.info(
            "%s %s %.2fms trace_id=%032x span_id=%016x",
            what,
            outcome,
            (time.perf_counter() - started) * 1000.0,
            ctx.trace_id,
            ctx.span_id,
        )

    # -- the dataplane's hook --------------------------------------------------------------------------------
    def infer(self, model: str, version: str) -> InferTrace | None:
        """The observer of one infer request under the current server span (None when it is not sampled)."""
        span = self._current()
        if not span.is_recording():
            return None
        span.set_attributes({"honed.model.name": model, "honed.model.version": version})
        return InferTrace(self, span)


class InferTrace:
    """One sampled infer request's trip through the batcher; writes its receive/queue/batch/compute spans."""

    __slots__ = ("_dispatched_ns", "_mono0", "_parent", "_queued_ns", "_span", "_tracing")

    def __init__(self, tracing: Tracing, span: Span) -> None:
        self._tracing = tracing
        self._span = span
        self._parent = tracing._in_context(span)
        self._queued_ns = time.time_ns()
        self._mono0 = time.perf_counter_ns()
        self._dispatched_ns: int | None = None
        start_ns = getattr(span, "start_time", None)
        if start_ns is not None:
            self._child("receive", start_ns, self._queued_ns)

    def _child(self, name: str, start_ns: int, end_ns: int, context: Any = None, **attributes: Any) -> Span:
        span = self._tracing.tracer.start_span(
            name, context=context or self._parent, start_time=start_ns, attributes=attributes or None
        )
        span.end(end_time=end_ns)
        return span

    def _now(self) -> int:
        """Epoch nanoseconds as spans take them, advanced by the monotonic clock (durations never run backwards)."""
        return self._queued_ns + time.perf_counter_ns() - self._mono0

    def fetched_features(self, rows: int, features: int) -> None:
        """The request's inputs came from its feature store: a ``features`` span up to now; the queue starts here."""
        now = self._now()
        self._child("features", self._queued_ns, now, **{"honed.features.rows": rows, "honed.features.count": features})
        self._queued_ns, self._mono0 = now, time.perf_counter_ns()

    def dispatched(self) -> None:
        self._dispatched_ns = now = self._now()
        self._child("queue", self._queued_ns, now)
        self._span.set_attribute("honed.queue.duration", (now - self._queued_ns) / 1e9)

    def finished(self, rows: int, requests: int, seconds: float) -> None:
        end = self._now()
        start = self._dispatched_ns if self._dispatched_ns is not None else end
        self._span.set_attributes({"honed.batch.size": rows, "honed.batch.requests": requests})
        batch = self._tracing.tracer.start_span(
            "batch",
            context=self._parent,
            start_time=start,
            attributes={"honed.batch.size": rows, "honed.batch.requests": requests},
        )
        self._child("compute", max(start, end - int(seconds * 1e9)), end, self._tracing._in_context(batch))
        batch.end(end_time=end)

    def close(self) -> None:
        """The request is done: a request that never left the queue (timed out, cancelled) still gets its span."""
        if self._dispatched_ns is None:
            self.dispatched()


def _carrier(pairs: Iterable[tuple[Any, Any]], keys: tuple[Any, Any]) -> dict[str, str]:
    """``traceparent`` and ``tracestate`` from header / metadata pairs; repeated tracestate values are joined."""
    found: dict[str, str] = {}
    state_key = keys[1]
    for key, value in pairs:
        if key in keys:
            text = value.decode("latin-1") if isinstance(value, bytes) else str(value)
            name = key.decode() if isinstance(key, bytes) else key
            found[name] = f"{found[name]},{text}" if name in found and key == state_key else text
    return found


def http_route(path: str) -> str | None:
    """The V2 route template of ``path`` (``/v2/models/{model}/infer``), or None for a path outside the API."""
    parts = path.strip("/").split("/")
    if parts == ["v2"]:
        return "/v2"
    if len(parts) >= 3 and parts[:2] == ["v2", "models"]:
        tail = parts[3:]
        route = "/v2/models/{model}"
        if len(tail) >= 2 and tail[0] == "versions":
            route, tail = route + "/versions/{version}", tail[2:]
        if not tail:
            return route
        if len(tail) == 1 and tail[0] in ("infer", "ready", "config"):
            return f"{route}/{tail[0]}"
        return None
    if parts == ["v2", "repository", "index"]:
        return "/v2/repository/index"
    if len(parts) == 5 and parts[:3] == ["v2", "repository", "models"] and parts[4] in ("load", "unload"):
        return "/v2/repository/models/{model}/" + parts[4]
    return None


class _TracedHttp:
    """The ASGI layer of :meth:`Tracing.http`."""

    def __init__(self, app: Asgi, tracing: Tracing) -> None:
        self.app = app
        self.tracing = tracing

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["path"] in _UNTRACED_PATHS:
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        tracing = self.tracing
        carrier = _carrier(scope["headers"], _TRACE_HEADERS)
        sampled, parent = tracing._decide(carrier)
        if not sampled:  # decided before the route or the span name is worked out
            await self.app(scope, receive, send)
            return
        method: str = scope["method"]
        path: str = scope["path"]
        route = http_route(path)
        span, token = tracing._open(f"{method} {route}" if route else method, parent)
        status: int | None = None  # stays None when the client went away before its answer

        async def sending(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        failure: str | None = None
        try:
            await self.app(scope, receive, sending)
        except BaseException as exc:  # the app answers its own errors: this is cancellation or a bug
            failure = type(exc).__name__
            raise
        finally:
            attributes = _http_attributes(scope, method, path, route, status)
            if failure is not None or (status is not None and status >= 500):
                attributes["error.type"] = failure or str(status)
                span.set_status(tracing._error)
            span.set_attributes(attributes)
            tracing._end(span, token, f"{method} {path}", str(status or "-"), started)


def _http_attributes(scope: Scope, method: str, path: str, route: str | None, status: int | None) -> dict[str, Any]:
    """OpenTelemetry's HTTP server span attributes for one request (no status code when none was sent)."""
    attributes: dict[str, Any] = {
        "http.request.method": method,
        "url.path": path,
        "url.scheme": scope.get("scheme", "http"),
        "network.protocol.version": scope.get("http_version", "1.1"),
    }
    if status is not None:
        attributes["http.response.status_code"] = status
    if route is not None:
        attributes["http.route"] = route
    server = scope.get("server")
    if server:
        attributes["server.address"], attributes["server.port"] = server[0], server[1]
    client = scope.get("client")
    if client:
        attributes["client.address"] = client[0]
    for key, value in scope["headers"]:
        if key == b"user-agent":
            attributes["user_agent.original"] = value.decode("latin-1")
    return attributes


class _TracedGrpc(grpc.aio.ServerInterceptor):
    """The interceptor of :meth:`Tracing.grpc_interceptor`."""

    def __init__(self, tracing: Tracing) -> None:
        self.tracing = tracing

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        start_ns = time.time_ns()  # before the next layers authenticate the call, which the span should cover
        started = time.perf_counter()
        handler = await continuation(details)
        full = str(details.method)
        service, _, method = full.strip("/").rpartition("/")
        if handler is None or handler.unary_unary is None or method in _UNTRACED_METHODS:
            return handler
        call = handler.unary_unary
        tracing = self.tracing
        carrier = _carrier(details.invocation_metadata or (), ("traceparent", "tracestate"))
        name = full.strip("/")

        async def traced(request: Any, context: grpc.aio.ServicerContext) -> Any:
            sampled, parent = tracing._decide(carrier)
            if not sampled:
                return await call(request, context)
            span, token = tracing._open(name, parent, start_ns)
            fallback = grpc.StatusCode.OK
            try:
                return await call(request, context)
            except asyncio.CancelledError:
                fallback = grpc.StatusCode.CANCELLED
                raise
            except BaseException:
                fallback = grpc.StatusCode.UNKNOWN  # what grpc answers for an exception no layer turned into a code
                raise
            finally:
                code = context.code() or fallback
                span.set_attributes(
                    {
                        "rpc.system": "grpc",
                        "rpc.service": service,
                        "rpc.method": method,
                        "rpc.grpc.status_code": code.value[0],
                    }
                )
                if code in _GRPC_ERRORS:
                    span.set_attributes({"error.type": code.name})
                    span.set_status(tracing._error)
                tracing._end(span, token, full, code.name, started)

        return grpc.unary_unary_rpc_method_handler(
            traced, request_deserializer=handler.request_deserializer, response_serializer=handler.response_serializer
        )
