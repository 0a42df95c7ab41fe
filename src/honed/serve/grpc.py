"""The V2 gRPC adapter: ``inference.GRPCInferenceService`` on grpc.aio, a thin layer over the dataplane.

The service class and messages are the generated stubs shipped in ``tritonclient.grpc``. Each method decodes its
request, calls the same dataplane function the REST adapter calls, and maps domain errors to status codes through
:func:`honed.serve.dataplane.status_for`. A client deadline bounds the request's time in the batch queue; a client
that cancels its call cancels the request, which removes it from the queue.
"""

from __future__ import annotations

import math
from collections.abc import Awaitable, Callable
from typing import Any, NoReturn, TypeVar

import grpc
from google.protobuf import json_format
from tritonclient.grpc import model_config_pb2, service_pb2_grpc
from tritonclient.grpc import service_pb2 as pb

from honed.errors import InvalidArgument, Overloaded
from honed.serve.access import bearer_token
from honed.serve.dataplane import DataPlane, error_message, status_for
from honed.serve.protocol import grpc_codec
from honed.serve.security import HEADER

DEFAULT_MAX_MESSAGE_BYTES = 64 * 1024 * 1024
T = TypeVar("T")


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

    def __init__(self, dataplane: DataPlane) -> None:
        self.dataplane = dataplane

    async def _authorize(self, context: grpc.aio.ServicerContext, action: str, model: str | None = None) -> None:
        """Check the call's ``authorization`` metadata against the access policy; abort the call when refused."""
        if self.dataplane.access is None:
            return
        try:
            values = [str(v) for k, v in (context.invocation_metadata() or ()) if k == "authorization"]
            self.dataplane.authorize(bearer_token(values[0] if values else None), action, model)
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
        await self._authorize(context, "infer", request.model_name)
        try:
            decoded = grpc_codec.decode_request(request)
            remaining = context.time_remaining()
            declared = [str(v) for k, v in (context.invocation_metadata() or ()) if k == HEADER]
            response = await self.dataplane.infer(
                request.model_name,
                request.model_version or None,
                decoded,
                timeout_s=remaining,
                residency=",".join(declared) if declared else None,
            )
            return grpc_codec.encode_response(response)
        except Exception as exc:
            await _abort(context, exc)

    async def RepositoryIndex(self, request: Any, context: grpc.aio.ServicerContext) -> pb.RepositoryIndexResponse:
        await self._authorize(context, "read")
        rows = await self.dataplane.repository_index()
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


def build_server(
    dataplane: DataPlane,
    address: str,
    *,
    max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
    credentials: grpc.ServerCredentials | None = None,
) -> tuple[grpc.aio.Server, int]:
    """A grpc.aio server with the inference service bound to ``address`` (TLS with ``credentials``); returns it
    and the bound port."""
    server = grpc.aio.server(
        options=[
            ("grpc.max_receive_message_length", max_message_bytes),
            ("grpc.max_send_message_length", max_message_bytes),
            ("grpc.so_reuseport", 0),
        ]
    )
    service_pb2_grpc.add_GRPCInferenceServiceServicer_to_server(InferenceService(dataplane), server)
    try:
        port = server.add_secure_port(address, credentials) if credentials else server.add_insecure_port(address)
    except RuntimeError:
        port = 0
    if port == 0:
        raise InvalidArgument(f"cannot listen for gRPC on {address}: the address is in use or not on this machine")
    return server, port
