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
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from honed.errors import DataError, NotFound, Overloaded, PayloadTooLarge, Unauthenticated
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
    """The ASGI application for one dataplane."""

    def __init__(self, dataplane: DataPlane, *, max_body_bytes: int = DEFAULT_MAX_BODY_BYTES) -> None:
        self.dataplane = dataplane
        self.max_body_bytes = max_body_bytes
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
            response = await self.dataplane.infer(name, version, request, residency=declared, caller=caller)
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
