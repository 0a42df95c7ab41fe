"""The tiny model the edge tests export (``scorer``: x float32[?, 64] -> y float32[?, 32]) and its bundle."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.edge import export_edge
from tests.graphs import matmul_model


@pytest.fixture(scope="module")
def source(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return matmul_model(tmp_path_factory.mktemp("model") / "scorer.onnx")


@pytest.fixture(scope="module")
def bundle(tmp_path_factory: pytest.TempPathFactory, source: Path) -> Path:
    return export_edge(str(source), tmp_path_factory.mktemp("export") / "bundle", measure=False).path
