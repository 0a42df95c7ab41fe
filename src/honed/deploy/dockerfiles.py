"""Dockerfiles for a CPU and a GPU image of honed that run ``honed serve`` (templates in ``templates/``)."""

from __future__ import annotations

from importlib.resources import files

from honed import __version__
from honed.deploy.k8s import IMAGE_UID
from honed.serve.contract import GRPC_PORT, HTTP_PORT

DEFAULT_BASE = "python:3.11-slim"
"""The CPU image's base when none is named: any image with ``python3`` and its ``venv`` module fits."""


def dockerfile(kind: str, *, version: str = __version__, extras: str = "", base: str = DEFAULT_BASE) -> str:
    """The text of ``Dockerfile.cpu`` or ``Dockerfile.gpu``; ``extras`` e.g. ``[serve]``; ``base`` is the CPU
    image's default ``BASE`` build argument (the GPU image is built on CUDA's own)."""
    template = files("honed.deploy").joinpath("templates", f"Dockerfile.{kind}").read_text(encoding="utf-8")
    return template.format(
        version=version, extras=extras, base=base, uid=IMAGE_UID, http_port=HTTP_PORT, grpc_port=GRPC_PORT
    )
