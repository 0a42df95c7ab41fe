"""honed's domain errors: one rooted tree, no transport codes.

    HonedError
    ├── InvalidArgument        a flag, option or parameter value that cannot be used
    ├── ModelError             the model file itself
    │   ├── ModelNotFound      no such file
    │   ├── InvalidModel       not ONNX, truncated, fails the checker, missing external data
    │   └── ExportMismatch     a converted model whose outputs differ from its source beyond the tolerance
    ├── DataError              inputs that do not fit the model (names, dtypes, shapes, too few samples)
    │   └── PayloadTooLarge    a request body larger than the server accepts
    ├── BackendError           building or running a session
    │   └── BackendUnavailable a provider or backend asked for is not installed on this machine
    ├── NotFound               a named thing (model, version, alias, record) that does not exist
    ├── AlreadyExists          a named thing that must be unique already exists
    ├── Unavailable            not ready now (loading, draining, unloaded); may succeed later
    │   └── Overloaded         at capacity (queue full, a rate limit); retry after ``retry_after_s``
    │       └── QueueTimeExceeded  shed by a model's queue-time bound: it would wait (by the batcher's estimate)
    │                              or has waited longer than the bound; retry after ``retry_after_s``
    ├── DeadlineExceeded       a request's time limit ran out before it was served
    ├── Unauthenticated        no or bad credentials
    └── PermissionDenied       authenticated, but not allowed
        └── ResidencyViolation data or a model would be processed/placed outside approved jurisdictions

Adapters (CLI, HTTP, gRPC) map these to exit codes and status codes in one table each; nothing here
knows about them. Every message says what is wrong and, where it can, what to do about it.
"""

from __future__ import annotations


class HonedError(Exception):
    """Root of every error honed raises on purpose."""


class InvalidArgument(HonedError):
    """A flag, option or parameter value that cannot be used."""


class ModelError(HonedError):
    """Something is wrong with a model file."""


class ModelNotFound(ModelError):
    """The model path does not exist or is not a file."""


class InvalidModel(ModelError):
    """The file is not a valid, loadable ONNX model."""


class ExportMismatch(ModelError):
    """A model converted to ONNX gives outputs that differ from its source framework's beyond the tolerance."""


class DataError(HonedError):
    """Input data does not fit the model."""


class PayloadTooLarge(DataError):
    """A request body is larger than the server accepts."""


class BackendError(HonedError):
    """A backend failed to build or run a session."""


class BackendUnavailable(BackendError):
    """An execution provider or backend that was asked for is not installed."""


class NotFound(HonedError):
    """A named thing (model, version, alias, record) does not exist."""


class AlreadyExists(HonedError):
    """A named thing that must be unique already exists."""


class Unavailable(HonedError):
    """Not ready now (loading, draining, unloaded); the same call may succeed later."""


class Overloaded(Unavailable):
    """At capacity (e.g. a full queue); retry after ``retry_after_s`` seconds."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class QueueTimeExceeded(Overloaded):
    """Shed by the model's queue-time bound, so answered without running: the request would wait in the queue
    longer than the bound by the batcher's estimate of the work ahead of it (refused on arrival), or it has waited
    that long; retry after ``retry_after_s`` seconds (or elsewhere)."""


class DeadlineExceeded(HonedError):
    """A request's time limit ran out before it was served."""


class Unauthenticated(HonedError):
    """No credentials, or credentials that do not verify."""


class PermissionDenied(HonedError):
    """Authenticated, but not allowed to do this."""


class ResidencyViolation(PermissionDenied):
    """Data or a model would be processed or placed outside its approved jurisdictions."""
