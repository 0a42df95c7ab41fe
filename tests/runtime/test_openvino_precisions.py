"""Which lower precisions honed offers OpenVINO: what the plugin reports, limited to a described machine's ISA."""

from __future__ import annotations

import dataclasses

from honed.hardware import HardwareSpec, detect_hardware
from honed.runtime.openvino_backend import supported_precisions

REPORTED = ["FP32", "BF16", "FP16", "INT8", "BIN", "EXPORT_IMPORT"]


def _machine(*isa: str) -> HardwareSpec:
    return dataclasses.replace(detect_hardware(), isa=("sse4_2", "avx2", "fma", *isa))


def test_the_plugins_report_alone_decides_without_a_machine() -> None:
    assert supported_precisions(REPORTED) == ["f32", "bf16", "f16"]
    assert supported_precisions(["FP32", "INT8"]) == ["f32"]


def test_a_described_machine_limits_the_lower_precisions_to_its_isa() -> None:
    assert supported_precisions(REPORTED, _machine("avx512f", "avx512_vnni")) == ["f32"]
    assert supported_precisions(REPORTED, _machine("avx512f", "avx512_bf16")) == ["f32", "bf16"]
    assert supported_precisions(REPORTED, _machine("amx_bf16", "amx_fp16")) == ["f32", "bf16", "f16"]
    assert supported_precisions(["FP32"], _machine("avx512_bf16", "avx512_fp16")) == ["f32"]
    # Sapphire Rapids: AVX512_FP16 without AMX-FP16 tiles, where OpenVINO's f16 is slower than its bf16
    sapphire_rapids = _machine("avx512f", "avx512_bf16", "avx512_fp16", "amx_tile", "amx_bf16", "amx_int8")
    assert supported_precisions(REPORTED, sapphire_rapids) == ["f32", "bf16"]


def test_the_search_gets_lower_precisions_as_configs_and_onnxruntime_offers_none() -> None:
    from honed.runtime import RuntimeConfig, get_backend

    assert get_backend("onnxruntime").lower_precisions(RuntimeConfig()).configs == ()
    assert get_backend("onnxruntime").lower_precisions(RuntimeConfig()).precisions == ()
    ov = get_backend("openvino")
    default = ov.runtime_variants((0,))[0]
    offer = ov.lower_precisions(default, _machine("avx512f", "avx512_vnni"))
    assert offer.precisions == ("bf16", "f16") and offer.configs == ()
    assert offer.reason is not None
