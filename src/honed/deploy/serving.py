"""How a container runs ``honed serve`` for one placement: the one place the serve command line is built."""

from __future__ import annotations

from typing import Any

from honed.deploy.metrics import GRPC_PORT, HTTP_PORT


def serve_args(placement: dict[str, Any], model_path: str) -> list[str]:
    """Arguments after the ``honed`` entry point; sized from the plan (threads, instances, batch)."""
    return [
        "serve",
        model_path,
        "--http",
        f"0.0.0.0:{HTTP_PORT}",
        "--grpc",
        f"0.0.0.0:{GRPC_PORT}",
        "--instances",
        str(placement["instances"]),
        "--threads",
        str(placement["threads"]),
        "--max-batch-size",
        str(placement["batch"]),
    ]
