"""Feature-store inputs: a request carries entity keys, and the server fetches the model's features from Feast.

A model's serving config may name a Feast feature server (``feast serve``) and which of the model's inputs come
from it (:class:`FeatureConfig`, the ``features`` section of ``config.yaml``)::

    features:
      feast_url: http://127.0.0.1:6566     # Feast's HTTP feature server
      feature_service: scorer_v1           # optional: fetch by feature service (else by the refs below)
      entities: [driver_id]                # the entity join keys a request may carry, one value per row
      inputs:                              # model input -> the feature refs that fill its last dimension
        x: [driver_stats:conv_rate, driver_stats:acc_rate, driver_stats:trips]
      timeout_ms: 1000

A request then gives, instead of ``x``, one tensor per join key named after it (INT64/INT32 or BYTES, shape
``[rows]`` or ``[rows, 1]``); :meth:`FeatureFetcher.complete` posts them to Feast's ``/get-online-features`` and
hands the batcher the request with ``x`` built from the answer (``[rows, len(refs)]``, in the model's datatype).
An input the request gives itself is not fetched, so a caller may override features or mix fetched and given
inputs. An entity the online store has no value for (``NOT_FOUND``, ``NULL_VALUE``, ``OUTSIDE_MAX_AGE``) is
:class:`~honed.errors.NotFound` (404 / NOT_FOUND) naming the key and the feature: never a silent zero. Feast
unreachable or refusing the lookup is :class:`~honed.errors.Unavailable` (503 / UNAVAILABLE).

honed does not import Feast: it speaks the feature server's HTTP API with httpx, so Feast runs where (and with the
dependencies) it likes, as it does beside a KServe predictor.
"""

from __future__ import annotations

import math
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, fields, replace
from typing import TYPE_CHECKING, Any

import httpx
import numpy as np

from honed.errors import DataError, InvalidArgument, NotFound, Unavailable
from honed.fields import known_keys
from honed.model.spec import TensorSpec
from honed.serve.protocol.datatypes import from_onnx, numpy_dtype
from honed.serve.protocol.types import InferRequest, Tensor

if TYPE_CHECKING:
    from honed.serve.metrics import ModelMetrics
    from honed.serve.tracing import InferTrace

ONLINE_PATH = "/get-online-features"
PRESENT = "PRESENT"
KEY_DATATYPES = ("INT64", "INT32", "BYTES")
"""The V2 datatypes an entity key tensor may have."""


@dataclass(frozen=True)
class FeatureConfig:
    """Which of a model's inputs a Feast feature server supplies, keyed by which entities."""

    feast_url: str
    entities: tuple[str, ...]
    inputs: tuple[tuple[str, tuple[str, ...]], ...]
    """(model input, feature refs ``view:feature`` in the order of the input's last dimension), per fetched input."""
    feature_service: str | None = None
    timeout_ms: float = 1000.0

    def __post_init__(self) -> None:
        url = self.feast_url
        if not isinstance(url, str) or not url.startswith(("http://", "https://")):
            raise InvalidArgument(f"features.feast_url must be an http(s) URL like http://127.0.0.1:6566, got {url!r}")
        object.__setattr__(self, "feast_url", url.rstrip("/"))
        keys = self.entities
        if isinstance(keys, str) or not isinstance(keys, list | tuple) or not keys:
            raise InvalidArgument(f"features.entities must be a non-empty list of join key names, got {keys!r}")
        if not all(isinstance(k, str) and k for k in keys) or len(set(keys)) != len(keys):
            raise InvalidArgument(f"features.entities must name distinct join keys, got {list(keys)!r}")
        object.__setattr__(self, "entities", tuple(keys))
        service = self.feature_service
        if service is not None and (not isinstance(service, str) or not service):
            raise InvalidArgument(f"features.feature_service must be a feature service's name, got {service!r}")
        timeout = self.timeout_ms
        if (
            isinstance(timeout, bool)
            or not isinstance(timeout, int | float)
            or not math.isfinite(timeout)
            or timeout <= 0
        ):
            raise InvalidArgument(f"features.timeout_ms must be a number > 0, got {timeout!r}")
        object.__setattr__(self, "timeout_ms", float(timeout))
        for name, refs in self.inputs:
            if name in self.entities:
                raise InvalidArgument(f"features.inputs: {name!r} is also an entity key; a model input cannot be both")
            for ref in refs:
                view, _, feature = ref.partition(":")
                if not view or not feature:
                    raise InvalidArgument(
                        f"features.inputs.{name}: {ref!r} is not a feature ref; write it view:feature"
                    )

    @property
    def fetched(self) -> tuple[str, ...]:
        """The model inputs the feature store can supply."""
        return tuple(name for name, _ in self.inputs)

    def to_dict(self) -> dict[str, Any]:
        return {
            "feast_url": self.feast_url,
            "feature_service": self.feature_service,
            "entities": list(self.entities),
            "inputs": {name: list(refs) for name, refs in self.inputs},
            "timeout_ms": self.timeout_ms,
        }

    @classmethod
    def from_dict(cls, data: Any) -> FeatureConfig:
        data = known_keys("features", data, cls)
        known = {f.name for f in fields(cls)}
        for key in ("feast_url", "entities", "inputs"):
            if key not in data:
                raise InvalidArgument(f"features needs {key!r} (known: {', '.join(sorted(known))})")
        inputs = data["inputs"]
        if not isinstance(inputs, dict) or not inputs:
            raise InvalidArgument(
                "features.inputs must map each fetched model input to its feature refs, "
                f"like {{x: [view:feature, ...]}}; got {inputs!r}"
            )
        pairs = []
        for name, refs in inputs.items():
            if isinstance(refs, str) or not isinstance(refs, list | tuple) or not refs:
                raise InvalidArgument(f"features.inputs.{name} must be a non-empty list of feature refs, got {refs!r}")
            if not all(isinstance(r, str) for r in refs):
                raise InvalidArgument(f"features.inputs.{name} must list feature refs as text, got {refs!r}")
            pairs.append((str(name), tuple(refs)))
        return cls(**{**data, "inputs": tuple(pairs)})


class FeatureFetcher:
    """Completes requests of models with a :class:`FeatureConfig` from their feature servers (one HTTP pool)."""

    def __init__(self, *, transport: httpx.AsyncBaseTransport | None = None) -> None:
        self._transport = transport
        self._client: httpx.AsyncClient | None = None

    def _http(self) -> httpx.AsyncClient:
        if self._client is None:
            self._client = httpx.AsyncClient(transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def complete(
        self,
        config: FeatureConfig,
        request: InferRequest,
        specs: Sequence[TensorSpec],
        metrics: ModelMetrics | None = None,
        trace: InferTrace | None = None,
    ) -> InferRequest:
        """``request`` with the fetched inputs it lacks filled in from the feature store and its entity keys
        dropped (unless the model itself takes them); unchanged when it gives every fetched input itself."""
        by_spec = {s.name: s for s in specs}
        for name in config.fetched:
            if name not in by_spec:
                raise InvalidArgument(
                    f"the model's features.inputs names {name!r}, which is not a model input "
                    f"(inputs: {', '.join(by_spec)})"
                )
        given = {t.name for t in request.inputs}
        wanted = [(name, refs) for name, refs in config.inputs if name not in given]
        kept = [t for t in request.inputs if t.name not in config.entities or t.name in by_spec]
        if not wanted:
            return replace(request, inputs=kept) if len(kept) != len(request.inputs) else request
        keys = _entity_keys(config, request, [name for name, _ in wanted])
        started = time.perf_counter()
        try:
            answer = await self._lookup(config, keys, [ref for _, refs in wanted for ref in refs])
        finally:
            seconds = time.perf_counter() - started
            if metrics is not None:
                metrics.observe_feature_fetch(seconds)
        rows = len(next(iter(keys.values())))
        if trace is not None:
            trace.fetched_features(rows, sum(len(refs) for _, refs in wanted))
        fetched = [_tensor(name, refs, by_spec[name], answer, keys, config) for name, refs in wanted]
        return replace(request, inputs=[*kept, *fetched])

    async def _lookup(
        self, config: FeatureConfig, keys: Mapping[str, list[Any]], refs: Sequence[str]
    ) -> dict[str, tuple[list[Any], list[str]]]:
        """Feast's answer as feature name (``view__feature``) -> (values, statuses), one per row."""
        body: dict[str, Any] = {"entities": dict(keys), "full_feature_names": True}
        if config.feature_service is not None:
            body["feature_service"] = config.feature_service
        else:
            body["features"] = list(dict.fromkeys(refs))
        where = f"the feature store at {config.feast_url}"
        try:
            response = await self._http().post(
                f"{config.feast_url}{ONLINE_PATH}", json=body, timeout=config.timeout_ms / 1000.0
            )
        except httpx.TimeoutException:
            raise Unavailable(f"{where} did not answer within {config.timeout_ms:g} ms") from None
        except httpx.HTTPError as exc:
            raise Unavailable(f"{where} is unreachable: {exc or type(exc).__name__}") from None
        if response.status_code != 200:
            raise Unavailable(f"{where} refused the lookup (HTTP {response.status_code}): {_detail(response)}")
        try:
            data = response.json()
            names = data["metadata"]["feature_names"]
            results = data["results"]
            return {
                str(n): (list(r["values"]), [str(s) for s in r["statuses"]])
                for n, r in zip(names, results, strict=True)
            }
        except (ValueError, KeyError, TypeError):
            raise Unavailable(f"{where} answered HTTP 200 with a body that is not Feast's online features") from None


def _detail(response: httpx.Response) -> str:
    """Feast's error text, in one line."""
    try:
        text = response.json()
    except ValueError:
        text = response.text
    if isinstance(text, dict) and "detail" in text:
        text = text["detail"]
    if isinstance(text, str) and text.startswith("{"):
        try:
            import json

            inner = json.loads(text)
            text = inner.get("message", text) if isinstance(inner, dict) else text
        except ValueError:
            pass
    return " ".join(str(text).split())[:300]


def _entity_keys(config: FeatureConfig, request: InferRequest, wanted: list[str]) -> dict[str, list[Any]]:
    """The request's entity key tensors as Feast's ``entities`` (join key -> one value per row)."""
    tensors = {t.name: t for t in request.inputs if t.name in config.entities}
    missing = [k for k in config.entities if k not in tensors]
    if missing:
        raise DataError(
            f"input(s) {', '.join(wanted)} come from the feature store: give the entity key(s) "
            f"{', '.join(missing)} (one value per row), or the input(s) themselves"
        )
    keys: dict[str, list[Any]] = {}
    rows: int | None = None
    for name in config.entities:
        tensor = tensors[name]
        if tensor.datatype not in KEY_DATATYPES:
            raise DataError(f"entity key {name!r} must be {', '.join(KEY_DATATYPES)}, got {tensor.datatype}")
        shape = tuple(tensor.data.shape)
        if not (len(shape) == 1 or (len(shape) == 2 and shape[1] == 1)) or shape[0] == 0:
            raise DataError(f"entity key {name!r} must have shape [rows] or [rows, 1], got {list(shape)}")
        if rows is not None and shape[0] != rows:
            raise DataError(f"entity keys give different row counts: {name!r} has {shape[0]}, the others {rows}")
        rows = shape[0]
        flat = tensor.data.reshape(-1)
        if tensor.datatype == "BYTES":
            try:
                keys[name] = [v.decode("utf-8") if isinstance(v, bytes) else str(v) for v in flat]
            except UnicodeDecodeError:
                raise DataError(f"entity key {name!r} holds bytes that are not UTF-8 text") from None
        else:
            keys[name] = [int(v) for v in flat]
    return keys


def _tensor(
    name: str,
    refs: tuple[str, ...],
    spec: TensorSpec,
    answer: dict[str, tuple[list[Any], list[str]]],
    keys: Mapping[str, list[Any]],
    config: FeatureConfig,
) -> Tensor:
    """Model input ``name`` as ``[rows, len(refs)]`` in its datatype, or NotFound for the first missing value."""
    datatype = from_onnx(spec.elem_type)
    if datatype == "BYTES":
        raise InvalidArgument(f"features.inputs.{name}: the model's input is BYTES; only numeric inputs are fetched")
    columns = []
    for ref in refs:
        column = answer.get(ref.replace(":", "__", 1))
        if column is None:
            service = f" (is it in feature service {config.feature_service!r}?)" if config.feature_service else ""
            raise Unavailable(f"the feature store at {config.feast_url} answered without feature {ref!r}{service}")
        values, statuses = column
        for row, status in enumerate(statuses):
            if status != PRESENT or values[row] is None:
                entity = ", ".join(f"{k}={v[row]!r}" for k, v in keys.items())
                raise NotFound(
                    f"the feature store has no {ref} for entity {entity} ({status}); "
                    f"materialize it, or give input {name!r} in the request"
                )
        columns.append(values)
    try:
        data = np.asarray(columns, dtype=numpy_dtype(datatype)).T.copy()
    except (TypeError, ValueError):
        raise Unavailable(f"the feature store's values for input {name!r} are not {datatype} numbers") from None
    return Tensor(name, datatype, tuple(int(d) for d in data.shape), data)
