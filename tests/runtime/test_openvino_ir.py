"""OpenVINO IR (``model.xml`` + ``model.bin``) as a model file: sessions, bench and serve load it, a folder holding
it resolves to it, and an IR without its ``.bin`` is a one-line error (exit 2 on the command line)."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import numpy as np
import pytest

from honed.bench import BenchSettings, run_bench
from honed.cli.main import run
from honed.errors import InvalidArgument, InvalidModel
from honed.model.artifact import artifact_sha256, copy_artifact, file_hashes, winner_file
from honed.model.loader import resolve_model_path
from honed.runtime import RuntimeConfig, create_session, runtime_for
from honed.serve.repository import discover
from tests.graphs import matmul_model
from tests.serve.test_repository import dataplane, request, tiny

ov = pytest.importorskip("openvino")


def _ir(onnx_path: Path, xml: Path) -> Path:
    xml.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(ov.Core().read_model(str(onnx_path)), str(xml), compress_to_fp16=False)
    return xml


def test_an_ir_runs_like_its_onnx_and_hashes_both_files(tmp_path: Path) -> None:
    source = matmul_model(tmp_path / "mlp.onnx")
    xml = _ir(source, tmp_path / "ir" / "model.xml")
    ort = create_session(source)
    ir = create_session(xml, RuntimeConfig(backend="openvino"))
    assert [s.name for s in ir.inputs] == [s.name for s in ort.inputs]
    feed = {ort.inputs[0].name: np.random.default_rng(0).normal(size=(3, 64)).astype(np.float32)}
    want, got = ort.run(feed), ir.run(feed)
    for name, value in want.items():
        np.testing.assert_allclose(got[name], value, rtol=1e-4, atol=1e-5)
    # a folder holding model.xml resolves to it; its hash covers the .bin too
    assert resolve_model_path(tmp_path / "ir") == xml == winner_file(tmp_path / "ir")
    before = artifact_sha256(xml)
    copy = copy_artifact(xml, tmp_path / "copy" / "model.xml")
    assert file_hashes(copy) == file_hashes(xml) and set(file_hashes(copy)) == {"model.xml", "model.bin"}
    weights = bytearray(copy.with_suffix(".bin").read_bytes())
    weights[-1] ^= 0xFF
    copy.with_suffix(".bin").write_bytes(bytes(weights))
    assert artifact_sha256(copy) != before


def test_an_ir_without_its_bin_is_refused_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    xml = _ir(matmul_model(tmp_path / "mlp.onnx"), tmp_path / "ir" / "model.xml")
    xml.with_suffix(".bin").unlink()
    with pytest.raises(InvalidModel, match=r"model\.bin is missing"):
        create_session(xml, RuntimeConfig(backend="openvino"))
    for command in (["bench", str(xml), "-n", "2"], ["bench", str(tmp_path / "ir"), "-n", "2"]):
        assert run(command) == 2
        err = capsys.readouterr().err.strip()
        assert "model.bin is missing" in err and len(err.splitlines()) == 1
    with pytest.raises(InvalidModel, match=r"model\.bin is missing"):
        discover(tmp_path / "ir")


def test_runtime_for_moves_ir_to_openvino_and_keeps_the_rest() -> None:
    config = RuntimeConfig(intra_op_threads=2, affinity=(0, 1))
    moved = runtime_for(Path("out/model.xml"), config)
    assert moved.backend == "openvino" and moved.intra_op_threads == 2 and moved.affinity == (0, 1)
    assert runtime_for(Path("out/model.onnx"), config) is config
    bf16 = RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "bf16"})
    assert runtime_for(Path("model.xml"), bf16) is bf16
    with pytest.raises(InvalidArgument, match="CPU only"):
        runtime_for(Path("model.xml"), RuntimeConfig(provider="cuda"))


def test_bench_measures_an_ir_on_openvino(tmp_path: Path) -> None:
    xml = _ir(matmul_model(tmp_path / "mlp.onnx"), tmp_path / "out" / "model.xml")
    report = run_bench(tmp_path / "out", BenchSettings(batches=(2,), threads=(1,), iterations=3, warmup=1))
    assert report.model_path == xml and report.runtime.backend == "openvino"
    assert report.sha256 == artifact_sha256(xml) and report.precision == "fp32"
    assert report.results[0].items_per_s > 0


def test_serve_serves_an_ir_winner_at_its_recorded_runtime(tmp_path: Path) -> None:
    out = tmp_path / "out"
    _ir(tiny(tmp_path / "tiny.onnx", scale=3.0), out / "model.xml")
    runtime = RuntimeConfig(backend="openvino", options={"INFERENCE_PRECISION_HINT": "f32"}).to_dict()
    (out / "recipe.json").write_text(json.dumps({"runtime": runtime, "passes": []}))
    assert [s.versions for s in discover(out)[0]] == [{"1": out / "model.xml"}]

    async def serve() -> None:
        dp = dataplane(out)
        await dp.start()
        try:
            assert await dp.ready()
            answer = await dp.infer("out", None, request(2.0))
            np.testing.assert_allclose(answer.outputs[0].data, np.full((1, 3), 6.0, np.float32))
            assert dp.repository.config("out").runtime.backend == "openvino"  # type: ignore[union-attr]
        finally:
            await dp.repository.close()

    asyncio.run(serve())
