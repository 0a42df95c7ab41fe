"""The dataplane: every V2 operation once, as async functions over plain values, for every transport.

REST (:mod:`honed.serve.http`) and gRPC (:mod:`honed.serve.grpc`) only decode requests, call these and encode the
answers, so the two cannot drift apart. :data:`ERROR_TABLE` is the one place that maps honed's domain errors to an
HTTP status and a gRPC status code; both adapters use :func:`status_for`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, TypeVar

import numpy as np

from honed import __version__
from honed.errors import (
    AlreadyExists,
    DataError,
    DeadlineExceeded,
    HonedError,
    InvalidArgument,
    ModelError,
    NotFound,
    Overloaded,
    PayloadTooLarge,
    PermissionDenied,
    Unauthenticated,
    Unavailable,
)
from honed.model.spec import TensorSpec
from honed.serve.access import AccessPolicy, Principal, RepeatedCredentials, credentials, refusal_reason
from honed.serve.features import FeatureFetcher
from honed.serve.limits import Admission, RateLimited, RateLimiter
from honed.serve.metrics import ServeMetrics, outcome_of
from honed.serve.protocol.datatypes import from_numpy, from_onnx
from honed.serve.protocol.types import (
    InferRequest,
    InferResponse,
    ModelMetadata,
    ServerMetadata,
    Tensor,
    TensorMetadata,
)
from honed.serve.repository import ModelRepository
from honed.serve.security import ResidencyGuard

if TYPE_CHECKING:
    from honed.serve.rollout import RolloutFollower
    from honed.serve.tracing import Tracing

SERVER_NAME = "honed"
PLATFORM = "onnxruntime_onnx"
"""The platform model metadata and config name (Triton's name for an ONNX model)."""
EXTENSIONS = ("binary_tensor_data", "model_repository", "parameters", "metrics")
"""The V2 extensions this server speaks, as server metadata lists them."""

ERROR_TABLE: tuple[tuple[type[BaseException], int, str], ...] = (
    (PayloadTooLarge, 413, "RESOURCE_EXHAUSTED"),
    (NotFound, 404, "NOT_FOUND"),
    (DataError, 400, "INVALID_ARGUMENT"),
    (InvalidArgument, 400, "INVALID_ARGUMENT"),
    (ModelError, 400, "INVALID_ARGUMENT"),
    (AlreadyExists, 409, "ALREADY_EXISTS"),
    (Overloaded, 429, "RESOURCE_EXHAUSTED"),
    (Unavailable, 503, "UNAVAILABLE"),
    (DeadlineExceeded, 504, "DEADLINE_EXCEEDED"),
    (Unauthenticated, 401, "UNAUTHENTICATED"),
    (PermissionDenied, 403, "PERMISSION_DENIED"),
)
"""Domain error -> (HTTP status, gRPC status code name); the first matching row wins, anything else is 500/INTERNAL."""


OFFLOAD_BYTES = 256 * 1024
"""Request bodies (gRPC messages) of at least this many bytes are decoded on a worker thread.

Decoding a few MiB of JSON or BYTES elements takes long enough to hold up every other client and the health
probes if it ran on the event loop; below this size a thread hop costs more than the decoding it would move."""

T = TypeVar("T")


async def decode_off_loop(size: int, decode: Callable[[], T]) -> T:
    """Run ``decode`` (of a body of ``size`` bytes): inline when small, else on the default executor's threads,
    whose bounded pool also bounds how many large bodies are decoded at once."""
    if size < OFFLOAD_BYTES:
        return decode()
    return await asyncio.to_thread(decode)


def status_for(exc: BaseException) -> tuple[int, str]:
    """The HTTP status and gRPC code name for an error raised by the dataplane."""
    for kind, http_status, grpc_code in ERROR_TABLE:
        if isinstance(exc, kind):
            return http_status, grpc_code
    return 500, "INTERNAL"


def error_message(exc: BaseException) -> str:
    """The text of an ``{"error": ...}`` answer; internal failures do not leak details beyond their type."""
    if isinstance(exc, HonedError):
        return str(exc) or type(exc).__name__
    return f"internal error: {type(exc).__name__}: {exc}"


def tensor_metadata(spec: TensorSpec) -> TensorMetadata:
    """A model input or output as V2 metadata: unknown and symbolic dimensions are -1 (an unknown rank is [-1])."""
    shape = tuple(d if isinstance(d, int) and d >= 0 else -1 for d in spec.shape) if spec.shape is not None else (-1,)
    return TensorMetadata(spec.name, from_onnx(spec.elem_type), shape)


class DataPlane:
    """The V2 operations over one model repository, plus readiness, draining and request metrics."""

    def __init__(
        self,
        repository: ModelRepository,
        metrics: ServeMetrics,
        *,
        clock: Callable[[], float] = time.monotonic,
        residency: ResidencyGuard | None = None,
        access: AccessPolicy | None = None,
        tracing: Tracing | None = None,
    ) -> None:
        self.repository = repository
        self.tracing = tracing
        """Request tracing (:mod:`honed.serve.tracing`), or None: then nothing of OpenTelemetry is loaded."""
        self.metrics = metrics
        self.access: AccessPolicy | None = None
        self.limiter = RateLimiter(clock=clock, on_limited=metrics.rate_limited)
        """The per-identity token buckets; :meth:`use_policy` gives them the policy's limits."""
        if access is not None:
            self.use_policy(access)
        self.residency = residency if residency is not None else ResidencyGuard(metrics=metrics)
        self._clock = clock
        self.features = FeatureFetcher()
        """Fetches the inputs of models whose config names a feature store (:mod:`honed.serve.features`)."""
        self.rollouts: RolloutFollower | None = None
        """Set on a registry server: routes unversioned requests by the model's rollout and observes them."""
        self._started = False
        self._draining = False
        self._inflight = 0
        self._idle = asyncio.Event()
        self._idle.set()

    # -- lifecycle -------------------------------------------------------------------------------------------
    async def start(self) -> None:
        """Load (and warm up) every model; the server is ready only after this."""
        await self.repository.start()
        self._started = True

    def begin_drain(self) -> None:
        """Report not-ready from now on (e.g. on SIGTERM); requests already taken still finish."""
        self._draining = True

    @property
    def draining(self) -> bool:
        return self._draining

    @property
    def inflight(self) -> int:
        return self._inflight

    async def wait_idle(self, timeout_s: float | None = None) -> bool:
        """Wait until no infer request is in flight; False if ``timeout_s`` ran out first."""
        try:
            await asyncio.wait_for(self._idle.wait(), timeout_s)
        except TimeoutError:
            return False
        return True

    # -- access ----------------------------------------------------------------------------------------------
    def use_policy(self, policy: AccessPolicy) -> None:
        """Decide every request from now on by ``policy`` (one assignment: a request sees the old policy or the new,
        never a mix); its rate limits replace the old ones, keeping the buckets' levels."""
        self.limiter.configure(policy.limits)
        self.access = policy

    async def authorize(
        self, authorization: Sequence[str], action: str, model: str | None = None, *, admit: Admission = "all"
    ) -> Principal | None:
        """The caller, from every ``Authorization`` value the request carries, when the access policy lets it take
        ``action`` (on ``model``); else Unauthenticated / RepeatedCredentials / PermissionDenied, each counted.
        The request then takes its share of the caller's rate limits, or is
        :class:`~honed.serve.limits.RateLimited` (counted by principal): of every limit (``admit="all"``), of the
        principal's own (``"principal"``, before the model is known), of the model's alone (``"model"``, after an
        admission by ``"principal"``), or of none (``"none"``).

        Adapters call this before every operation but the health probes; without a policy everything is allowed
        (and None is the caller).
        """
        policy = self.access
        if policy is None:
            return None
        principal = self.authorize_now(authorization, action, model, admit=admit)
        if principal is None:  # a JWT not verified before
            with self._refusals_counted(authorization) as token:
                principal = await policy.authenticate(token)
                policy.grant(principal, action, model)
            self._admit(principal, model, admit)
        return principal

    def authorize_now(
        self, authorization: Sequence[str], action: str, model: str | None = None, *, admit: Admission = "all"
    ) -> Principal | None:
        """:meth:`authorize` decided without waiting, from the request's headers alone: the admitted caller, or
        the same refusal, counted the same way; None when only :meth:`authorize` can decide (a JWT not verified
        before) or when there is no policy. Nothing is taken from a rate limit then."""
        policy = self.access
        if policy is None:
            return None
        with self._refusals_counted(authorization) as token:
            principal = policy.authenticate_now(token)
            if principal is None:
                return None
            policy.grant(principal, action, model)
        self._admit(principal, model, admit)
        return principal

    def refuse_now(self, name: str, version: str | None = None) -> None:
        """Raise :class:`~honed.errors.QueueTimeExceeded` when an infer request for ``name`` (``version``)
        arriving now would be refused by its queue's estimate anyway, counted as that request and its shedding
        are; return when it may be admitted or when only :meth:`infer` can tell (an unknown or unloaded model, an
        unversioned request under a rollout, whose version is drawn when it runs). A transport asks this before
        it reads and decodes the request, so that refusing under overload costs next to nothing."""
        if not version and self.rollouts is not None and self.rollouts.routes(name):
            return
        try:
            resolved, executor = self.repository.get(name, version)
        except HonedError:
            return
        try:
            executor.refuse_now()
        except Overloaded as exc:
            self.metrics.model(name, resolved).observe_request(outcome_of(exc), 0.0)
            raise

    @contextmanager
    def _refusals_counted(self, authorization: Sequence[str]) -> Iterator[str | None]:
        """The request's credentials; a refusal raised inside (or by reading them) is counted by its reason."""
        token = None
        try:
            token = credentials(authorization)
            yield token
        except (Unauthenticated, PermissionDenied, RepeatedCredentials) as exc:
            self.metrics.auth_refused(refusal_reason(exc, token))
            raise

    def _admit(self, principal: Principal, model: str | None, admit: Admission) -> None:
        if admit == "all" or admit == "model":
            self.limiter.admit(principal.name, model, own=admit == "all")
        elif admit == "principal":
            self.limiter.admit(principal.name)

    def admit_copy(self, caller: Principal | None, model: str) -> bool:
        """Whether a copy of ``caller``'s infer request on ``model`` (a rollout's mirrored run) may be made, decided
        as the request itself was: the current policy's grant, then the caller's rate limits (the copy takes its
        share). A refusal is counted as a real request's would be, and the copy is not made. With a policy in force,
        a request that names no caller (an in-process call the adapters did not authorize) is never copied."""
        policy = self.access
        if policy is None:
            return True
        if caller is None:
            return False
        try:
            self.limiter.admit(policy.grant(caller, "infer", model).name, model)
        except PermissionDenied as exc:
            self.metrics.auth_refused(refusal_reason(exc, None))
            return False
        except RateLimited:  # counted by the limiter
            return False
        return True

    # -- health and metadata ---------------------------------------------------------------------------------
    async def live(self) -> bool:
        return True

    async def ready(self) -> bool:
        return self._started and not self._draining

    async def server_metadata(self) -> ServerMetadata:
        return ServerMetadata(SERVER_NAME, __version__, EXTENSIONS)

    async def model_ready(self, name: str, version: str | None = None) -> bool:
        """Whether the model (version) can take requests; an unknown name or version is :class:`NotFound`."""
        try:
            self.repository.get(name, version)
        except Unavailable:
            return False
        return not self._draining

    async def model_metadata(self, name: str, version: str | None = None) -> ModelMetadata:
        resolved, executor = self.repository.get(name, version)
        versions = self.repository.versions(name) if version is None else [resolved]
        return ModelMetadata(
            name=name,
            versions=tuple(versions),
            platform=PLATFORM,
            inputs=tuple(tensor_metadata(s) for s in executor.inputs),
            outputs=tuple(tensor_metadata(s) for s in executor.outputs),
            max_batch_size=executor.max_batch_size,
        )

    async def model_config(self, name: str, version: str | None = None) -> dict[str, Any]:
        """The model's config in Triton's ``ModelConfig`` JSON form (tritonclient's ``get_model_config``)."""
        _, executor = self.repository.get(name, version)
        batched = executor.max_batch_size > 0

        def entry(spec: TensorSpec) -> dict[str, Any]:
            meta = tensor_metadata(spec)
            dims = list(meta.shape)
            return {
                "name": meta.name,
                "data_type": "TYPE_" + ("STRING" if meta.datatype == "BYTES" else meta.datatype),
                "dims": dims[1:] if batched and dims else dims,
            }

        return {
            "name": name,
            "platform": PLATFORM,
            "max_batch_size": executor.max_batch_size,
            "input": [entry(s) for s in executor.inputs],
            "output": [entry(s) for s in executor.outputs],
        }

    # -- inference -------------------------------------------------------------------------------------------
    async def infer(
        self,
        name: str,
        version: str | None,
        request: InferRequest,
        *,
        timeout_s: float | None = None,
        residency: str | Sequence[str] | None = None,
        caller: Principal | None = None,
        arrived: float | None = None,
    ) -> InferResponse:
        """Run one V2 infer request; ``timeout_s`` (e.g. a gRPC deadline) and the ``timeout`` parameter both apply.

        ``arrived`` is when the request arrived (a :func:`time.monotonic` stamp, e.g. taken when its headers were
        read): the time since then, spent reading, decoding and fetching its features, counts against the model's
        queue-time bound.

        ``residency`` is the request's declared data residency (``X-Data-Residency``: its value, or every value
        the request carried, so that a repeated header is refused); the server's
        :class:`~honed.serve.security.ResidencyGuard` allows it or raises ResidencyViolation before any data is used.
        ``caller`` is the principal :meth:`authorize` admitted the request for; a rollout's mirrored copy of the
        request is admitted for it again (:meth:`admit_copy`).
        """
        follower = self.rollouts
        if follower is not None:
            version = follower.route(name, version)
        resolved, executor = self.repository.get(name, version)
        trace = self.tracing.infer(name, resolved) if self.tracing is not None else None
        self._inflight += 1
        self._idle.clear()
        started = self._clock()
        try:
            with self.metrics.model(name, resolved).request():
                await self.residency.check(name, resolved, residency)
                config = self.repository.config(name)
                if config is not None and config.features is not None:
                    request = await self.features.complete(
                        config.features, request, executor.inputs, self.metrics.model(name, resolved), trace
                    )
                feeds = _feeds(executor.inputs, request)
                wanted = _wanted_outputs(executor.outputs, request)
                limit = _min_timeout(request.timeout_s, timeout_s)
                waited = 0.0 if arrived is None else time.monotonic() - arrived
                results = await executor.infer(feeds, timeout_s=limit, observer=trace, waited_s=waited)
                outputs = [_output(spec, results[spec.name]) for spec in wanted]
            if follower is not None:
                follower.observe(name, resolved, self._clock() - started, failed=False)
                follower.mirror(name, resolved, feeds, results, residency, admit=lambda: self.admit_copy(caller, name))
        except Exception as exc:
            if follower is not None:
                follower.observe(name, resolved, self._clock() - started, failed=status_for(exc)[0] >= 500)
            raise
        finally:
            if trace is not None:
                trace.close()
            self._inflight -= 1
            if self._inflight == 0:
                self._idle.set()
        return InferResponse(model_name=name, model_version=resolved, outputs=outputs, id=request.id)

    # -- repository extension --------------------------------------------------------------------------------
    async def repository_index(self, caller: Principal | None = None) -> list[dict[str, str]]:
        """Every model of the repository, or with ``caller`` (a principal) only those it holds a grant on."""
        rows = self.repository.index()
        return rows if caller is None else [row for row in rows if caller.sees(row["name"])]

    async def load(self, name: str) -> None:
        await self.repository.load(name)

    async def unload(self, name: str) -> None:
        await self.repository.unload(name)

    def render_metrics(self) -> tuple[bytes, str]:
        return self.metrics.render()


def _min_timeout(a: float | None, b: float | None) -> float | None:
    if a is None:
        return b
    return a if b is None else min(a, b)


def _feeds(specs: list[TensorSpec], request: InferRequest) -> dict[str, np.ndarray[Any, Any]]:
    """The request's inputs by name, with V2 datatypes checked (the executor checks names, shapes and batch)."""
    by_name = {spec.name: spec for spec in specs}
    feeds: dict[str, np.ndarray[Any, Any]] = {}
    for tensor in request.inputs:
        spec = by_name.get(tensor.name)
        data = tensor.data
        if spec is not None:
            want = from_onnx(spec.elem_type)
            if tensor.datatype != want:
                raise DataError(f"input {tensor.name!r} must be {want}, got {tensor.datatype}")
            if want == "BYTES":
                data = _as_text(tensor.name, data)
        feeds[tensor.name] = data
    return feeds


def _as_text(name: str, array: np.ndarray[Any, Any]) -> np.ndarray[Any, Any]:
    """BYTES elements as ``str``, which is what ONNX Runtime's string tensors take."""
    out = np.empty(array.size, dtype=object)
    try:
        out[:] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in array.reshape(-1)]
    except UnicodeDecodeError:
        raise DataError(
            f"input {name!r} holds bytes that are not UTF-8 text, which the model's string input needs"
        ) from None
    return out.reshape(array.shape)


def _wanted_outputs(specs: list[TensorSpec], request: InferRequest) -> list[TensorSpec]:
    if request.outputs is None:
        return specs
    by_name = {spec.name: spec for spec in specs}
    wanted: list[TensorSpec] = []
    for out in request.outputs:
        if out.name not in by_name:
            raise DataError(f"unknown output {out.name!r}; the model's outputs are: {', '.join(by_name)}")
        wanted.append(by_name[out.name])
    return wanted


def _output(spec: TensorSpec, array: np.ndarray[Any, Any]) -> Tensor:
    datatype = "BYTES" if array.dtype.kind in "OSU" else from_numpy(array.dtype)
    return Tensor(spec.name, datatype, tuple(int(d) for d in array.shape), array)
