"""honed's domain errors: one rooted tree, no transport codes.

    HonedError
    ├── InvalidArgument        a flag, option or parameter value that cannot be used
    ├── ModelError             the model file itself
    │   ├── ModelNotFound      no such file
    │   └── InvalidModel       not ONNX, truncated, fails the checker, missing external data
    ├── DataError              inputs that do not fit the model (names, dtypes, shapes, too few samples)
    ├── BackendError           building or running a session
    │   └── BackendUnavailable a provider or backend asked for is not installed on this machine
    └── NotFound               a named thing (model, version, alias, record) that does not exist

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


class DataError(HonedError):
    """Input data does not fit the model."""


class BackendError(HonedError):
    """A backend failed to build or run a session."""


class BackendUnavailable(BackendError):
    """An execution provider or backend that was asked for is not installed."""


class NotFound(HonedError):
    """A named thing (model, version, alias, record) does not exist."""
