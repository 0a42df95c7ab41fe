"""``honed hw`` through the real CLI entry point: the table and the JSON."""

from __future__ import annotations

import json

import pytest

from honed.cli.main import run
from honed.hardware import HardwareSpec, detect_hardware


def test_hw_json(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["hw", "--json"]) == 0
    out = capsys.readouterr().out
    data = json.loads(out)
    for key in ("cpu_model", "usable_cores", "isa", "caches", "clock_ghz", "clock_source", "memory_bytes", "gpus"):
        assert key in data
    for key in ("ort_providers", "peak_fp32_gflops", "peak_bf16_gflops", "peak_int8_gops", "estimated"):
        assert key in data
    assert HardwareSpec.from_dict(data) == detect_hardware()


def test_hw_table(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["hw", "--refresh"]) == 0
    out = capsys.readouterr().out
    spec = detect_hardware()
    assert "peak FP32" in out and "ORT providers" in out
    assert spec.vendor in out
    if spec.peak_fp32_gflops is not None:
        assert f"{spec.peak_fp32_gflops:,.1f} GFLOP/s" in out


def test_hw_rejects_unknown_option(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["hw", "--bogus"]) == 2
    assert "--bogus" in capsys.readouterr().err
