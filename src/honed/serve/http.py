"""The V2 REST adapter: a plain ASGI app that decodes requests, calls the dataplane and encodes answers.

No web framework sits in between: the routes are few and fixed, and a framework's router, request objects and
middleware stack cost more per request than this whole adapter (docs/serve.md has the measurement).

What a client sends is bounded before it costs anything: more than :data:`MAX_HEADER_FIELDS` header fields or
:data:`MAX_HEADER_BYTES` bytes of them are refused with 431; a body whose ``Content-Length`` is over
``max_body_bytes`` is refused with 413 before any of it is read, and a chunked body as soon as it passes the
limit (the connection stays open: uvicorn reads and drops the rest, so the client reads the 413 rather than a
reset). Bodies of :data:`~honed.serve.dataplane.OFFLOAD_BYTES` or more are decoded on a worker thread, so one
large JSON or BYTES body does not hold up other clients or the health probes.

A client that disconnects while its request waits (from ``WATCH_AFTER_S`` on) cancels that request, which
removes it from the model's batch queue. Errors are ``{"error": "..."}`` with the status from
:func:`honed.serve.dataplane.status_for`. With an access policy every route but the health probes checks the
request's bearer token first (:mod:`honed.serve.access`); a 401 carries ``WWW-Authenticate: Bearer``.
"""

from __future__ import annotations

import asyncio
import math
import time
import urllib.parse
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

import httptools
from uvicorn.protocols.http.httptools_impl import STATUS_LINE, HttpToolsProtocol

from honed.errors import (
    DataError,
    InvalidArgument,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
)
from honed.serve.access import Principal
from honed.serve.contract import LIVE_PATH, METRICS_PATH, READY_PATH
from honed.serve.dataplane import DataPlane, decode_off_loop, error_message, status_for
from honed.serve.protocol import rest
from honed.serve.protocol.types import InferRequest
from honed.serve.security import HEADER

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]

DEFAULT_MAX_BODY_BYTES = 64 * 1024 * 1024
MAX_HEADER_FIELDS = 100
"""The most header fields one request may carry (431 beyond)."""
MAX_HEADER_BYTES = 64 * 1024
"""The most bytes of header names and values one request may carry (431 beyond); room for large JWTs."""
_JSON = [(b"content-type", b"application/json")]
_RESIDENCY = HEADER.encode()


def _json(doc: Any) -> bytes:
    return rest.dump_json(doc)


class HttpApp:
    """The ASGI application for one dataplane; with ``metrics_only`` it answers :data:`METRICS_PATH` (with the same
    access check) and 404 to everything else, for a listener only a scraper is let reach."""

    def __init__(
        self, dataplane: DataPlane, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES, metrics_only: bool = False
    ) -> None:
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes
        self.metrics_only = metrics_only
        self.decode_request: Callable[..., InferRequest] = rest.decode_request
        """The infer body decoder (an attribute so a test can hold a decode at a gate)."""

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await _lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        try:
            status, headers, body = await self._route(scope, receive)
        except _ClientGone:
            return  # nobody is left to answer; the request was already taken off the queue
        except asyncio.CancelledError:
            raise
        except BaseException as exc:  # every failure becomes an {"error": ...} answer; the server stays up
            status, headers, body = _error(exc)
        headers = [*headers, (b"content-length", b"%d" % len(body))]
        await send({"type": "http.response.start", "status": status, "headers": headers})
        await send({"type": "http.response.body", "body": body})

    async def _route(self, scope: Scope, receive: Receive) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        _check_headers(scope["headers"])
        method: str = scope["method"]
        path = "/" + scope["path"].strip("/")
        dp = self.dataplane
        if path == METRICS_PATH and method == "GET":
            await self._authorize(scope, "metrics")
            text, content_type = dp.render_metrics()
            return 200, [(b"content-type", content_type.encode())], text
        if self.metrics_only:
            raise NotFound(f"no route {scope['path']}: this listener serves {METRICS_PATH} alone")
        if path in (LIVE_PATH, READY_PATH):
            _method(method, "GET")  # probes stay open: orchestrators call them without credentials
            if path == LIVE_PATH:
                ok = await dp.live()
                return (200 if ok else 503), _JSON, _json({"live": ok})
            ok = await dp.ready()
            return (200 if ok else 503), _JSON, _json({"ready": ok})
        parts = path[1:].split("/")
        if parts[0] != "v2":
            raise NotFound(f"no route {scope['path']}; the V2 API lives under /v2")
        rest_parts = parts[1:]
        if not rest_parts:
            _method(method, "GET")
            await self._authorize(scope, "read")
            return 200, _JSON, _json(rest.server_metadata_json(await dp.server_metadata()))
        head = rest_parts[0]
        if head == "models" and len(rest_parts) >= 2:
            return await self._model_route(method, rest_parts[1:], scope, receive)
        if head == "repository":
            return await self._repository_route(method, rest_parts[1:], scope, receive)
        raise NotFound(f"no route {scope['path']}")

    async def _model_route(
        self, method: str, parts: list[str], scope: Scope, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        dp = self.dataplane
        name, version = parts[0], None
        rest_parts = parts[1:]
        if len(rest_parts) >= 2 and rest_parts[0] == "versions":
            version, rest_parts = rest_parts[1], rest_parts[2:]
        action = rest_parts[0] if rest_parts else ""
        if len(rest_parts) > 1:
            raise NotFound(f"no route {scope['path']}")
        caller = await self._authorize(scope, "infer" if action == "infer" else "read", name)
        if action == "":
            _method(method, "GET")
            return 200, _JSON, _json(rest.model_metadata_json(await dp.model_metadata(name, version)))
        if action == "config":
            _method(method, "GET")
            return 200, _JSON, _json(await dp.model_config(name, version))
        if action == "ready":
            _method(method, "GET")
            ok = await dp.model_ready(name, version)
            return (200 if ok else 503), _JSON, _json({"name": name, "ready": ok})
        if action == "infer":
            _method(method, "POST")
            return await self._infer(name, version, scope, receive, caller)
        raise NotFound(f"no route {scope['path']}")

    async def _infer(
        self, name: str, version: str | None, scope: Scope, receive: Receive, caller: Principal | None
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        header_length: int | None = None
        declared: list[str] = []  # every value: a repeated declaration is refused, not merged
        for key, value in scope["headers"]:
            if key == _RESIDENCY:
                declared.append(value.decode("latin-1"))
            elif key == b"inference-header-content-length":
                try:
                    header_length = int(value)
                except ValueError:
                    raise DataError(f"Inference-Header-Content-Length must be a whole number, got {value!r}") from None
        body = await self._body(scope, receive)
        decode = self.decode_request
        request = await decode_off_loop(
            len(body), lambda: decode(body, header_length, max_elements=self.max_body_bytes)
        )
        watch = _DisconnectWatch(receive)
        try:
            response = await self.dataplane.infer(
                name, version, request, residency=declared, caller=caller, arrived=scope.get(ARRIVED)
            )
        except asyncio.CancelledError:
            if watch.client_gone():
                raise _ClientGone() from None
            raise
        finally:
            watch.stop()
        out, json_length = rest.encode_response(response, request)
        if json_length is None:
            return 200, _JSON, out
        return (
            200,
            [
                (b"content-type", b"application/octet-stream"),
                (b"inference-header-content-length", str(json_length).encode()),
            ],
            out,
        )

    async def _repository_route(
        self, method: str, parts: list[str], scope: Scope, receive: Receive
    ) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
        dp = self.dataplane
        _method(method, "POST")
        caller = None
        if parts == ["index"]:
            caller = await self._authorize(scope, "read")
        elif len(parts) == 3 and parts[0] == "models":
            await self._authorize(scope, "admin", parts[1])
        else:
            await self._authorize(scope, "read")  # an unknown route: credentials first, then 404, never the body
        await self._body(scope, receive)
        if parts == ["index"]:
            return 200, _JSON, _json(await dp.repository_index(caller))
        if len(parts) == 3 and parts[0] == "models" and parts[2] in ("load", "unload"):
            if parts[2] == "load":
                await dp.load(parts[1])
            else:
                await dp.unload(parts[1])
            return 200, _JSON, b"{}"
        raise NotFound(f"no route {scope['path']}")

    async def _authorize(self, scope: Scope, action: str, model: str | None = None) -> Principal | None:
        if self.dataplane.access is None:
            return None  # no policy: skip looking for credentials at all
        admitted = scope.get(ADMITTED)
        if admitted is not None and admitted[0] == (action, model):
            return admitted[1]  # decided (and rate-limited) from the headers already, see EarlyRefusals
        values = [value.decode("latin-1") for key, value in scope["headers"] if key == b"authorization"]
        return await self.dataplane.authorize(values, action, model)

    async def _body(self, scope: Scope, receive: Receive) -> bytes:
        limit = self.max_body_bytes
        for key, value in scope["headers"]:
            if key == b"content-length" and value.isdigit() and int(value) > limit:
                raise PayloadTooLarge(f"request body of {int(value)} bytes is over this server's limit of {limit}")
        chunks: list[bytes] = []
        size = 0
        while True:
            message = await receive()
            if message["type"] == "http.disconnect":
                raise _ClientGone()
            chunk = message.get("body", b"")
            if chunk:
                size += len(chunk)
                if size > limit:
                    raise PayloadTooLarge(f"request body is over this server's limit of {limit} bytes")
                chunks.append(chunk)
            if not message.get("more_body", False):
                break
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)

    def decide_early(
        self, method: str, path: str, headers: list[tuple[bytes, bytes]]
    ) -> tuple[tuple[str, str | None], Principal] | None:
        """What a request's method, path and headers alone decide, as :meth:`__call__` would decide it: its
        authentication, grant and rate limit, and for an infer request whether its model's queue refuses it by
        the queue-time estimate (asked only once the caller is admitted). Returns the (action, model) checked and
        the admitted caller (the app takes it from ``scope[ADMITTED]`` for that action and model only), or None
        when there is no policy or the credentials cannot be decided here (an open or unknown route, headers over
        the limits, a JWT that has not verified before): the app then decides them itself. Raises the refusal.
        """
        need = required_access(method, path)
        if need is None or (self.metrics_only and need[0] != "metrics"):
            return None
        try:
            _check_headers(headers)
        except HeadersTooLarge:
            return None  # the app answers 431 before it looks at credentials
        admitted = None
        if self.dataplane.access is not None:
            values = [value.decode("latin-1") for key, value in headers if key == b"authorization"]
            caller = self.dataplane.authorize_now(values, *need)
            if caller is None:
                return None  # the queue is not consulted before the credentials are
            admitted = (need, caller)
        if need[0] == "infer" and method == "POST" and need[1] is not None:
            self.dataplane.refuse_now(need[1], _path_version(path))
        return admitted


def _path_version(path: str) -> str | None:
    """The version named by an infer path (``/v2/models/NAME/versions/VERSION/infer``), or None."""
    parts = path.strip("/").split("/")
    return parts[4] if len(parts) == 6 and parts[3] == "versions" else None


ADMITTED = "honed.admitted"
"""The scope key under which :class:`EarlyRefusals` hands the app a caller it has admitted already, with the
(action, model) it was admitted for."""
ARRIVED = "honed.arrived"
"""The scope key of when the request's headers were read (:func:`time.monotonic`): the model's queue-time bound
counts from there, reading and decoding the body included."""


def required_access(method: str, path: str) -> tuple[str, str | None] | None:
    """The (action, model) :class:`HttpApp` checks the credentials of a request to ``path`` for, before anything
    else; None for the routes it answers without them (the health probes, and routes that do not exist)."""
    path = "/" + path.strip("/")
    if path == METRICS_PATH:
        return ("metrics", None) if method == "GET" else None
    parts = path[1:].split("/")
    if parts[0] != "v2" or path in (LIVE_PATH, READY_PATH):
        return None
    rest_parts = parts[1:]
    if not rest_parts:
        return ("read", None) if method == "GET" else None
    if rest_parts[0] == "models" and len(rest_parts) >= 2:
        name, tail = rest_parts[1], rest_parts[2:]
        if len(tail) >= 2 and tail[0] == "versions":
            tail = tail[2:]
        if len(tail) > 1:
            return None
        return ("infer" if tail == ["infer"] else "read", name)
    if rest_parts[0] == "repository":
        if method != "POST":
            return None
        repo = rest_parts[1:]
        if len(repo) == 3 and repo[0] == "models":
            return ("admin", repo[1])
        return ("read", None)
    return None


class _ClientGone(Exception):
    """The client disconnected before its answer was ready."""


class MethodNotAllowed(DataError):
    """The route exists but not for this HTTP method."""


class HeadersTooLarge(DataError):
    """The request's header fields are too many or too large."""


def _check_headers(headers: list[tuple[bytes, bytes]]) -> None:
    if len(headers) > MAX_HEADER_FIELDS:
        raise HeadersTooLarge(
            f"the request carries {len(headers)} header fields; this server takes at most {MAX_HEADER_FIELDS}"
        )
    size = sum(len(key) + len(value) for key, value in headers)
    if size > MAX_HEADER_BYTES:
        raise HeadersTooLarge(
            f"the request's header fields hold {size} bytes; this server takes at most {MAX_HEADER_BYTES}"
        )


def _method(method: str, allowed: str) -> None:
    if method != allowed:
        raise MethodNotAllowed(f"use {allowed} for this route, not {method}")


def response_bytes(exc: BaseException, *, close: bool = False) -> bytes:
    """The whole HTTP/1.1 answer to a refused request, status line to body, as :class:`HttpApp` would send it:
    what :class:`EarlyRefusals` writes in one piece. Answers repeat (a noisy client gets the same 429 each time), so
    they are built once and kept."""
    status, headers, body = _error(exc)
    key = (status, close, body, tuple(headers))
    cached = _RESPONSES.get(key)
    if cached is not None:
        return cached
    lines = [STATUS_LINE[status]]
    lines += [name + b": " + value + b"\r\n" for name, value in headers]
    lines.append(b"content-length: %d\r\n" % len(body))
    if close:
        lines.append(b"connection: close\r\n")
    out = b"".join([*lines, b"\r\n", body])
    if len(_RESPONSES) >= _MAX_RESPONSES:
        _RESPONSES.clear()
    _RESPONSES[key] = out
    return out


_RESPONSES: dict[tuple[Any, ...], bytes] = {}
_MAX_RESPONSES = 1024


class _Refused:
    """Stands for the request cycle of an answer :class:`EarlyRefusals` wrote itself: complete, nothing waits."""

    response_complete = True
    disconnected = False

    class message_event:  # what uvicorn's protocol calls on its cycle
        @staticmethod
        def set() -> None:
            return


class EarlyRefusals(HttpToolsProtocol):
    """uvicorn's httptools protocol, refusing what :meth:`HttpApp.decide_early` refuses as soon as the headers
    are in: one write of a prepared answer, with no request task, no ASGI call and none of the body read (the
    parser skips it, so the connection stays usable). What it admits goes on to the app as usual. A request
    pipelined behind an unfinished answer is left to the app, which keeps the answers in order."""

    http_app: HttpApp

    def on_headers_complete(self) -> None:
        self.scope[ARRIVED] = time.monotonic()  # type: ignore[literal-required]
        cycle = self.cycle
        if cycle is None or cycle.response_complete:
            raw_path = httptools.parse_url(self.url).path.decode("latin-1")
            path = urllib.parse.unquote(raw_path) if "%" in raw_path else raw_path
            method = self.parser.get_method().decode("latin-1")
            try:
                admitted = self.http_app.decide_early(method, path, self.headers)
            except (Unauthenticated, PermissionDenied, InvalidArgument, Overloaded) as exc:
                self._refuse(exc)
                return
            if admitted is not None:
                self.scope[ADMITTED] = admitted  # type: ignore[literal-required]
        super().on_headers_complete()

    def _refuse(self, exc: BaseException) -> None:
        keep_alive = self.parser.get_http_version() != "1.0" and self.parser.should_keep_alive()
        self.cycle = _Refused()  # type: ignore[assignment]
        self.transport.write(response_bytes(exc, close=not keep_alive))
        if not keep_alive:
            self.transport.close()
            return
        self.on_response_complete()


def early_refusals(app: HttpApp) -> type[EarlyRefusals]:
    """The protocol class for uvicorn's ``http`` option that refuses early for ``app``."""
    return type("EarlyRefusals", (EarlyRefusals,), {"http_app": app})


def _error(exc: BaseException) -> tuple[int, list[tuple[bytes, bytes]], bytes]:
    status, _ = status_for(exc)
    if isinstance(exc, MethodNotAllowed):
        status = 405
    elif isinstance(exc, HeadersTooLarge):
        status = 431
    headers = list(_JSON)
    if isinstance(exc, Unauthenticated):
        headers.append((b"www-authenticate", b'Bearer realm="honed"'))
    if isinstance(exc, Overloaded):
        headers.append((b"retry-after", str(max(1, math.ceil(exc.retry_after_s))).encode()))
    return status, headers, _json({"error": error_message(exc)})


WATCH_AFTER_S = 0.05
"""How long an infer request runs before its connection is watched for a client that went away.

Watching takes a task per request, which costs more of the event loop than computing an answer that is ready
within this time; a request that waits longer (a long queue, a slow model) is cancelled, and taken off the queue,
as soon as its client disconnects."""


class _DisconnectWatch:
    """Cancels the current task when the client disconnects, watching from ``WATCH_AFTER_S`` on."""

    def __init__(self, receive: Receive) -> None:
        self._receive = receive
        self._task = asyncio.current_task()
        self._watcher: asyncio.Task[None] | None = None
        self._timer = asyncio.get_running_loop().call_later(WATCH_AFTER_S, self._start) if self._task else None

    def _start(self) -> None:
        self._watcher = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self._receive()
            if message["type"] == "http.disconnect":
                if self._task is not None:
                    self._task.cancel()
                return

    def client_gone(self) -> bool:
        """After a CancelledError: whether the disconnect caused it (then the cancellation is taken back)."""
        if self._watcher is not None and self._watcher.done() and self._task is not None:
            self._task.uncancel()
            return True
        return False

    def stop(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
        if self._watcher is not None:
            self._watcher.cancel()


async def _lifespan(receive: Receive, send: Send) -> None:
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            await send({"type": "lifespan.shutdown.complete"})
            return
