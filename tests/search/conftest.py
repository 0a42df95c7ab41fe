"""Fixtures the optimize tests share: the tiny classifier and its calibration data."""

from __future__ import annotations

from pathlib import Path

import pytest
from optimize_models import tiny_classifier, tiny_data


@pytest.fixture
def model(tmp_path: Path) -> Path:
    return tiny_classifier(tmp_path / "tiny.onnx")


@pytest.fixture
def data(tmp_path: Path) -> Path:
    return tiny_data(tmp_path / "calib.npz", 40)
