"""The V2 gRPC adapter: ``inference.GRPCInferenceService`` on grpc.aio, a thin layer over the dataplane.

The service class and messages are the generated stubs shipped in ``tritonclient.grpc``. Each method decodes its
request, calls the same dataplane function the REST adapter calls, and maps domain errors to status codes through
:func:`honed.serve.dataplane.status_for`. A client deadline bounds the request's time in the batch queue; a client
that cancels its call cancels the request, which removes it from the queue.

Every call passes :class:`_Guard` first, which works from the call's metadata alone: with an access policy it
authenticates the caller, checks the method's action and takes the call's share of the caller's own rate limit
(the model grant and a model's rate limit need the message and are checked in the method) before a byte of the
message is parsed, so neither a caller without a token nor one over its limit makes the server decode anything.
The guard then parses the message itself (large ones on a worker thread), so a malformed one is INVALID_ARGUMENT
rather than grpc's UNKNOWN. ``maximum_concurrent_rpcs`` caps the calls in progress; beyond it grpc
answers RESOURCE_EXHAUSTED.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

from honed.errors import DataError, InvalidArgument, Overloaded
from honed.serve.access import Principal
from honed.serve.dataplane import DataPlane, decode_off_loop, error_message, status_for
from honed.serve.protocol import grpc_codec
from honed.serve.security import HEADER

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
DEFAULT_MAX_CONCURRENT_RPCS = 1024
T = TypeVar("T")

_OPEN = frozenset({"ServerLive", "ServerReady"})
"""Methods anyone may call: the health probes, which orchestrators call without credentials."""
_ACTION = {"ModelInfer": "infer", "RepositoryModelLoad": "admin", "RepositoryModelUnload": "admin"}
"""The action each method needs; every other method (the unimplemented ones too) needs ``read``."""


def _metadata(pairs: Any, key: str) -> list[str]:
    """Every value of metadata ``key``, in order."""
    return [str(v) for k, v in (pairs or ()) if k == key]


async def _abort(context: grpc.aio.ServicerContext, exc: BaseException) -> NoReturn:
    _, code = status_for(exc)
    if isinstance(exc, Overloaded):
        context.set_trailing_metadata((("retry-after", str(max(1, math.ceil(exc.retry_after_s)))),))
    await context.abort(grpc.StatusCode[code], error_message(exc))
    raise AssertionError("unreachable")  # pragma: no cover - abort() always raises


async def _answer(context: grpc.aio.ServicerContext, operation: Awaitable[T]) -> T:
    """Await one dataplane operation; a failure aborts the call with its status code."""
    try:
        return await operation
    except Exception as exc:
        await _abort(context, exc)


class InferenceService(service_pb2_grpc.GRPCInferenceServiceServicer):
    """The V2 gRPC service over one dataplane."""

    def __init__(self, dataplane: DataPlane, *, max_elements: int = DEFAULT_MAX_MESSAGE_BYTES) -> None:
        self.dataplane = dataplane
        self.max_elements = max_elements

    async def _authorize(
        self, context: grpc.aio.ServicerContext, action: str, model: str | None = None
    ) -> Principal | None:
        """Check the call's ``authorization`` metadata against the access policy; abort the call when refused."""
        if self.dataplane.access is None:
            return None
        try:
            return await self.dataplane.authorize(  # the guard took the caller's own rate limit already
                _metadata(context.invocation_metadata(), "authorization"), action, model, admit="model"
            )
        except Exception as exc:
            await _abort(context, exc)

    async def ServerLive(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ServerLiveResponse:
        return pb.ServerLiveResponse(live=await self.dataplane.live())

    async def ServerReady(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ServerReadyResponse:
        return pb.ServerReadyResponse(ready=await self.dataplane.ready())

    async def ServerMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ServerMetadataResponse:
        await self._authorize(context, "read")
        return grpc_codec.encode_server_metadata(await self.dataplane.server_metadata())

    async def ModelReady(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ModelReadyResponse:
        await self._authorize(context, "read", request.name)
        ready = await _answer(context, self.dataplane.model_ready(request.name, request.version or None))
        return pb.ModelReadyResponse(ready=ready)

    async def ModelMetadata(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ModelMetadataResponse:
        await self._authorize(context, "read", request.name)
        meta = await _answer(context, self.dataplane.model_metadata(request.name, request.version or None))
        return grpc_codec.encode_model_metadata(meta)

    async def ModelConfig(self, request: Any, context: grpc.aio.ServicerContext) -> pb.ModelConfigResponse:
        await self._authorize(context, "read", request.name)
        config = await _answer(context, self.dataplane.model_config(request.name, request.version or None))
        return pb.ModelConfigResponse(config=json_format.ParseDict(config, model_config_pb2.ModelConfig()))

    async def ModelInfer(self, request: pb.ModelInferRequest, context: grpc.aio.ServicerContext) -> Any:
        caller = await self._authorize(context, "infer", request.model_name)
        try:
            decoded = await decode_off_loop(
                request.ByteSize(), lambda: grpc_codec.decode_request(request, max_elements=self.max_elements)
            )
            remaining = context.time_remaining()
            response = await self.dataplane.infer(
                request.model_name,
                request.model_version or None,
                decoded,
                timeout_s=remaining,
                residency=_metadata(context.invocation_metadata(), HEADER),
                caller=caller,
            )
            return grpc_codec.encode_response(response)
        except Exception as exc:
            await _abort(context, exc)

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        caller = await self._authorize(context, "read")
        rows = await self.dataplane.repository_index(caller)
        entry = pb.RepositoryIndexResponse.ModelIndex
        return pb.RepositoryIndexResponse(
            models=[
                entry(name=r["name"], version=r.get("version", ""), state=r["state"], reason=r.get("reason", ""))
                for r in rows
            ]
        )

    async def RepositoryModelLoad(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelLoadResponse:
        await self._admin(context, request.model_name, self.dataplane.load)
        return pb.RepositoryModelLoadResponse()

    async def RepositoryModelUnload(
        self, request: Any, context: grpc.aio.ServicerContext
    ) -> pb.RepositoryModelUnloadResponse:
        await self._admin(context, request.model_name, self.dataplane.unload)
        return pb.RepositoryModelUnloadResponse()

    async def _admin(
        self, context: grpc.aio.ServicerContext, model: str, action: Callable[[str], Awaitable[None]]
    ) -> None:
        """Run a repository action on ``model`` for a caller the policy lets administer it."""
        await self._authorize(context, "admin", model)
        await _answer(context, action(model))


class _Guard(grpc.aio.ServerInterceptor):
    """Authenticates and rate-limits each call from its metadata before its message is parsed, then parses it
    (see the module)."""

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def intercept_service(
        self,
        continuation: Callable[[grpc.HandlerCallDetails], Awaitable[grpc.RpcMethodHandler]],
        details: grpc.HandlerCallDetails,
    ) -> grpc.RpcMethodHandler | None:
        handler = await continuation(details)
        if handler is None:
            return None  # an unknown method: grpc answers UNIMPLEMENTED
        method = str(details.method).rpartition("/")[2]
        refusal: Exception | None = None
        if self.dataplane.access is not None and method not in _OPEN:
            try:
                await self.dataplane.authorize(  # the method admits it against the model's limit once parsed
                    _metadata(details.invocation_metadata, "authorization"),
                    _ACTION.get(method, "read"),
                    admit="principal",
                )
            except Exception as exc:
                refusal = exc
        if handler.unary_unary is None:  # a streaming method (none is served): refuse or pass through
            if refusal is None:
                return handler
            denied = refusal

            async def deny(requests: Any, context: grpc.aio.ServicerContext) -> Any:
                await _abort(context, denied)

            return grpc.stream_stream_rpc_method_handler(deny, response_serializer=handler.response_serializer)
        parse, call = handler.request_deserializer, handler.unary_unary

        async def guarded(raw: bytes, context: grpc.aio.ServicerContext) -> Any:
            if refusal is not None:
                await _abort(context, refusal)
            try:
                request = await decode_off_loop(len(raw), lambda: parse(raw)) if parse is not None else raw
            except Exception:  # protobuf's DecodeError, or anything else a hostile message makes it raise
                await _abort(context, DataError(f"the request is not a valid {method} message"))
            return await call(request, context)

        return grpc.unary_unary_rpc_method_handler(guarded, response_serializer=handler.response_serializer)


def build_server(
    dataplane: DataPlane,
    address: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    max_concurrent_rpcs: int = DEFAULT_MAX_CONCURRENT_RPCS,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with the inference service bound to ``address`` (TLS with ``credentials``); returns it
    and the bound port. More than ``max_concurrent_rpcs`` calls at once are answered RESOURCE_EXHAUSTED."""
    server = grpc.aio.server(
        interceptors=[*([dataplane.tracing.grpc_interceptor()] if dataplane.tracing else []), _Guard(dataplane)],
        maximum_concurrent_rpcs=max_concurrent_rpcs,
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ],
    )
    service = InferenceService(dataplane, max_elements=max_message_bytes)
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(service, server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise InvalidArgument(f"cannot listen for gRPC on {address}: the address is in use or not on this machine")
    return server, port
