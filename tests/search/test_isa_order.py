"""Candidate order per ISA class (AVX2; AVX-512 VNNI; + BF16; + AMX), each from a fixed HardwareSpec built from
cpuinfo text, so the order tested never depends on the CPU running the test."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from honed.hardware import HardwareSpec, build_spec, isa_class
from honed.passes import PassContext
from honed.runtime import RuntimeConfig
from honed.runtime.openvino_backend import supported_precisions
from honed.search.candidates import Candidate, ModelProfile, Step, candidate_rank, is_long_shot, plan_pipelines
from tests.search.test_candidates import _attention, _cnn

_AVX2 = "fpu sse sse2 ssse3 sse4_1 sse4_2 avx f16c fma avx2"
_VNNI = f"{_AVX2} avx512f avx512dq avx512cd avx512bw avx512vl avx512_vnni"  # Cascade Lake
_BF16 = f"{_VNNI} avx512_bf16"  # Zen 4, Cooper Lake
_AMX = f"{_BF16} avx512_fp16 amx_tile amx_bf16 amx_int8"  # Sapphire Rapids
_ALL_CAPABILITIES = ("FP32", "BF16", "FP16", "INT8", "BIN", "EXPORT_IMPORT")


def _spec(flags: str, tmp_path: Path) -> HardwareSpec:
    text = (
        "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 143\n"
        f"model name\t: test CPU\ncpu MHz\t\t: 3000.000\nflags\t\t: {flags}\n\n"
    )
    return build_spec(cpuinfo_text=text, sysfs_root=tmp_path, arch="x86_64", usable_cores=[0])


def _ctx(spec: HardwareSpec, backend: str = "onnxruntime") -> PassContext:
    def source() -> Iterator[dict[str, np.ndarray[Any, Any]]]:
        yield {"x": np.zeros((1, 8, 8), np.float32)}

    return PassContext(target_backend=backend, hardware=spec, calibration=source)


def _ov(precision: str) -> RuntimeConfig:
    return RuntimeConfig(
        backend="openvino", options={"INFERENCE_PRECISION_HINT": precision, "PERFORMANCE_HINT": "LATENCY"}
    )


_NNCF = (Step("nncf-int8"),)
_FUSED_DYNAMIC = (Step("transformer-fusion"), Step("int8-dynamic", {"per_channel": True}))


def _order(profile: ModelProfile, candidates: list[Candidate]) -> list[str]:
    ranked = sorted(range(len(candidates)), key=lambda i: (*candidate_rank(candidates[i], profile), i))
    return [candidates[i].label() for i in ranked]


def _transformer_candidates() -> list[Candidate]:
    ort = RuntimeConfig()
    return [
        Candidate(_FUSED_DYNAMIC, ort),
        Candidate((), _ov("f32")),
        Candidate((), _ov("bf16")),
        Candidate(_NNCF, _ov("f32")),
        Candidate(_NNCF, _ov("bf16")),
        Candidate((Step("transformer-fusion"),), ort),
    ]


@pytest.mark.parametrize(
    ("flags", "expected"),
    [(_AVX2, "avx2"), (_VNNI, "vnni"), (_BF16, "bf16"), (_AMX, "amx"), ("fpu sse2 avx avx2 fma avx_vnni", "vnni")],
)
def test_cpuinfo_flags_give_the_isa_class(flags: str, expected: str, tmp_path: Path) -> None:
    spec = _spec(flags, tmp_path)
    assert spec.isa_class == expected == isa_class(spec.isa)
    assert ModelProfile.of(_attention(), _ctx(spec)) == ModelProfile("transformer", expected)
    if expected == "amx":
        assert spec.has("amx_int8", "amx_bf16")


def test_amx_fp16_is_detected_and_offers_f16(tmp_path: Path) -> None:
    # AMX-FP16 (Granite Rapids) alone, without the AVX512_FP16 flag, is enough for f16
    spec = _spec(f"{_BF16} amx_tile amx_bf16 amx_int8 amx_fp16", tmp_path)
    assert spec.has("amx_fp16") and not spec.has("avx512_fp16") and spec.isa_class == "amx"
    assert supported_precisions(_ALL_CAPABILITIES, spec) == ["f32", "bf16", "f16"]


def test_avx2_transformer_order_leads_with_ort_dynamic_int8_and_keeps_nncf_late(tmp_path: Path) -> None:
    ctx = _ctx(_spec(_AVX2, tmp_path))
    names = [tuple(s.name for s in p) for p in plan_pipelines(_attention(), "onnxruntime", ctx)[0]]
    assert names[0] == ("transformer-fusion", "int8-dynamic")
    order = _order(ModelProfile.of(_attention(), ctx), _transformer_candidates())
    assert order[0].startswith("transformer-fusion + int8-dynamic")
    # no native BF16: the f32 variant of each OpenVINO candidate comes before its bf16 one, NNCF after the float ones
    assert order.index(Candidate((), _ov("f32")).label()) < order.index(Candidate((), _ov("bf16")).label())
    assert order.index(Candidate(_NNCF, _ov("f32")).label()) > order.index(Candidate((), _ov("bf16")).label())
    # and the CPU is offered no lower precision to try at all
    assert supported_precisions(_ALL_CAPABILITIES, ctx.hardware) == ["f32"]  # type: ignore[arg-type]


def test_vnni_transformer_order_puts_nncf_int8_right_after_fused_dynamic_int8(tmp_path: Path) -> None:
    ctx = _ctx(_spec(_VNNI, tmp_path))
    order = _order(ModelProfile.of(_attention(), ctx), _transformer_candidates())
    assert order[0].startswith("transformer-fusion + int8-dynamic")
    assert order[1] == Candidate(_NNCF, _ov("f32")).label()
    assert order.index(Candidate((), _ov("f32")).label()) > order.index(Candidate(_NNCF, _ov("bf16")).label())
    assert supported_precisions(_ALL_CAPABILITIES, ctx.hardware) == ["f32"]  # type: ignore[arg-type]


def test_bf16_transformer_order_leads_with_nncf_int8_with_the_rest_in_bf16(tmp_path: Path) -> None:
    ctx = _ctx(_spec(_BF16, tmp_path))
    profile = ModelProfile.of(_attention(), ctx)
    order = _order(profile, _transformer_candidates())
    assert order[:4] == [
        Candidate(_NNCF, _ov("bf16")).label(),
        Candidate(_NNCF, _ov("f32")).label(),
        Candidate((), _ov("bf16")).label(),
        Candidate((), _ov("f32")).label(),
    ]
    assert order[4].startswith("transformer-fusion + int8-dynamic")
    assert supported_precisions(_ALL_CAPABILITIES, ctx.hardware) == ["f32", "bf16"]  # type: ignore[arg-type]
    # a CNN on the same CPU: NNCF INT8 and OpenVINO BF16 before ORT's static INT8
    cnn = ModelProfile.of(_cnn(), ctx)
    assert cnn == ModelProfile("conv", "bf16")
    static = Candidate((Step("int8-static"),), RuntimeConfig())
    assert candidate_rank(Candidate(_NNCF, _ov("bf16")), cnn) < candidate_rank(Candidate((), _ov("bf16")), cnn)
    assert candidate_rank(Candidate((), _ov("bf16")), cnn) < candidate_rank(static, cnn)


def test_amx_order_ranks_like_bf16_and_offers_f16_only_with_amx_fp16(tmp_path: Path) -> None:
    sapphire_rapids = _spec(_AMX, tmp_path)
    assert supported_precisions(_ALL_CAPABILITIES, sapphire_rapids) == ["f32", "bf16"]
    ctx = _ctx(_spec(f"{_AMX} amx_fp16", tmp_path))  # Granite Rapids
    profile = ModelProfile.of(_attention(), ctx)
    assert profile == ModelProfile("transformer", "amx") and profile.vnni
    candidates = [*_transformer_candidates(), Candidate(_NNCF, _ov("f16"))]
    order = _order(profile, candidates)
    # AMX tiles run INT8 and BF16: NNCF INT8 first, its bf16 rest before f16 (AMX-FP16 is not AMX-BF16) and f32
    assert order[:3] == [
        Candidate(_NNCF, _ov("bf16")).label(),
        Candidate(_NNCF, _ov("f16")).label(),
        Candidate(_NNCF, _ov("f32")).label(),
    ]
    assert order.index(Candidate((), _ov("bf16")).label()) < order.index(candidates[0].label())
    assert supported_precisions(_ALL_CAPABILITIES, ctx.hardware) == ["f32", "bf16", "f16"]  # type: ignore[arg-type]


def test_candidates_name_their_precision() -> None:
    assert Candidate(_NNCF, _ov("bf16")).precision == "int8+bf16"
    assert Candidate(_NNCF, _ov("f32")).precision == "int8+f32"
    assert Candidate((), _ov("bf16")).precision == "bf16"
    assert Candidate((), RuntimeConfig()).precision == "f32"
    assert Candidate((Step("fp16"),), RuntimeConfig()).precision == "f16"
    assert Candidate(_FUSED_DYNAMIC, RuntimeConfig()).precision == "int8+f32"
    assert "[int8+bf16] @ openvino/cpu" in Candidate(_NNCF, _ov("bf16")).label()
    assert Candidate(_NNCF, _ov("bf16")).to_dict()["precision"] == "int8+bf16"


def test_the_search_tries_every_openvino_pipeline_at_each_precision_the_cpu_has(tmp_path: Path) -> None:
    pytest.importorskip("openvino")
    import dataclasses

    from honed.hardware import detect_hardware
    from honed.runtime import get_backend
    from honed.search import optimize
    from tests.search.optimize_models import tiny_classifier, tiny_data

    if "bf16" not in get_backend("openvino").precisions():
        pytest.skip("OpenVINO's CPU plugin reports no BF16 on this CPU, so no machine description can offer it")
    here = detect_hardware()
    # A fixed VNNI + BF16 CPU: no AVX512_FP16 or AMX, whatever this machine has (they would add f16 and the amx class).
    isa = ("avx", "avx2", "avx512_bf16", "avx512_vnni", "avx512bw", "avx512f", "avx512vl", "fma", "sse4_2")
    bf16_machine = dataclasses.replace(here, isa=isa)
    result = optimize(
        tiny_classifier(tmp_path / "tiny.onnx"),
        out=tmp_path / "out",
        data=tiny_data(tmp_path / "calib.npz", 40),
        metric="cosine",
        minimum=0.9,
        batch=4,
        time_budget="2m",
        backends=["openvino"],
        passes=["graph"],
        tune_runtime=False,
        evaluate_slower=True,
        measure_s=0.02,
        final_rounds=2,
        cache_dir=tmp_path / "cache",
        hardware=bf16_machine,
    )
    labels = [c["label"] for c in result.report["candidates"] if c["backend"] == "openvino"]
    for pipeline in ("original", "graph(level=basic)"):
        tried = [label.split(" @ ")[0] for label in labels if label.startswith(pipeline + " ")]
        # with native BF16, each pipeline's bf16 variant is tried before its f32 one
        assert tried == [f"{pipeline} [bf16]", f"{pipeline} [f32]"], labels
    assert result.report["candidate_order"]["isa_class"] == "bf16"


def test_avx2_transformer_order_puts_nncf_int8_with_the_known_losers(tmp_path: Path) -> None:
    profile = ModelProfile.of(_attention(), _ctx(_spec(_AVX2, tmp_path)))
    nncf, static = Candidate(_NNCF, _ov("f32")), Candidate((Step("int8-static"),), RuntimeConfig())
    graph_nncf = Candidate((Step("graph", {"level": "basic"}), *_NNCF), _ov("f32"))
    assert is_long_shot(nncf, profile) and is_long_shot(graph_nncf, profile) and is_long_shot(static, profile)
    assert not is_long_shot(Candidate(_FUSED_DYNAMIC, RuntimeConfig()), profile)
    assert not is_long_shot(Candidate((), _ov("f32")), profile)
    # with VNNI it is a leader
    vnni = ModelProfile.of(_attention(), _ctx(_spec(_VNNI, tmp_path)))
    assert not is_long_shot(nncf, vnni) and is_long_shot(static, vnni)


def test_the_search_tunes_its_leaders_before_it_tries_the_known_losers(tmp_path: Path) -> None:
    import dataclasses

    import onnx

    from honed.hardware import detect_hardware
    from honed.search import optimize

    # a CNN on an AVX2 CPU: ORT's dynamic INT8 (ConvInteger) is a known loser there, graph clean-up a leader
    model = tmp_path / "cnn.onnx"
    cnn = _cnn()
    cnn.graph.output[0].CopyFrom(onnx.helper.make_tensor_value_info("y", onnx.TensorProto.FLOAT, ["N", 2]))
    onnx.save(cnn, model)
    data = tmp_path / "calib.npz"
    np.savez(data, x=np.random.default_rng(0).normal(size=(40, 3, 8, 8)).astype(np.float32))
    avx2_machine = dataclasses.replace(detect_hardware(), isa=tuple(_AVX2.split()))
    result = optimize(
        model,
        out=tmp_path / "out",
        data=data,
        metric="cosine",
        minimum=0.5,
        batch=4,
        time_budget="2m",
        backends=["onnxruntime"],
        passes=["graph", "int8-dynamic"],
        evaluate_slower=True,
        measure_s=0.02,
        final_rounds=2,
        cache_dir=tmp_path / "cache",
        hardware=avx2_machine,
    )
    rows = [(c["label"], c["status"]) for c in result.report["candidates"]]
    labels = [label for label, _ in rows]
    first_loser = next(i for i, label in enumerate(labels) if "int8-dynamic" in label)
    tuned = [i for i, label in enumerate(labels) if " t1" in label or " t2" in label]
    # the tuning of the leaders came first (and tuned nothing twice), every known loser was still tried
    assert tuned and max(tuned[:2]) < first_loser, rows
    assert len(labels) == len(set(labels)), rows
    assert all(status != "not-run" for _, status in rows), rows
    assert result.report["candidate_order"]["isa_class"] == "avx2"
