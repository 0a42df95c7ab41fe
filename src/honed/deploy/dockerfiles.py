"""Dockerfiles for a CPU and a GPU image of honed that run ``honed serve`` (templates in ``templates/``)."""

from __future__ import annotations

from importlib.resources import files

from honed import __version__
from honed.serve.contract import GRPC_PORT, HTTP_PORT


def dockerfile(kind: str, *, version: str = __version__, extras: str = "") -> str:
    """The text of ``Dockerfile.cpu`` or ``Dockerfile.gpu``; ``extras`` e.g. ``[serve]``."""
    template = files("honed.deploy").joinpath("templates", f"Dockerfile.{kind}").read_text(encoding="utf-8")
    return template.format(version=version, extras=extras, http_port=HTTP_PORT, grpc_port=GRPC_PORT)
