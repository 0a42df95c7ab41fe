"""``honed serve`` from the command line: serving an optimize output folder as is, and bad flags."""

from __future__ import annotations

from pathlib import Path

import httpx
import numpy as np
import pytest
import tritonclient.http as httpclient

from honed.cli.main import run
from honed.runtime import create_session
from tests.conformance import models
from tests.conformance.server import start_server


def test_serve_an_optimize_output_folder(tmp_path: Path) -> None:
    out = tmp_path / "out"
    models.mlp(out / "model.onnx", seed=4)
    (out / "recipe.json").write_text("{}")
    (out / "report.json").write_text("{}")
    server = start_server([str(out), "--max-batch-size", "2", "--instances", "1", "--threads", "1"], tmp_path / "log")
    try:
        client = httpclient.InferenceServerClient(server.http_url)
        assert client.get_model_metadata("out")["versions"] == ["1"]
        x = np.ones((2, 8), np.float32)
        inp = httpclient.InferInput("x", [2, 8], "FP32")
        inp.set_data_from_numpy(x)
        got = client.infer("out", [inp]).as_numpy("y")
        np.testing.assert_allclose(got, create_session(out).run({"x": x})["y"], rtol=1e-5, atol=1e-6)
        over = httpx.post(
            f"{server.base}/v2/models/out/infer",
            json={"inputs": [{"name": "x", "datatype": "FP32", "shape": [3, 8], "data": [0.0] * 24}]},
        )
        assert over.status_code == 400 and "max batch size 2" in over.json()["error"]
    finally:
        assert server.stop() == 0, server.output()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "nothing to serve"),
        (["MISSING"], "does not exist"),
        (["MODEL", "--http", "localhost"], "bad address"),
        (["MODEL", "--grpc", "1.2.3.4:99999"], "bad address"),
        (["MODEL", "--instances", "0"], "instances must be a whole number >= 1"),
        (["MODEL", "--max-batch-size", "0"], "max_batch_size"),
        (["MODEL", "--max-body-mb", "0"], "--max-body-mb"),
        (["MODEL", "--repository", "MODEL"], "not both"),
        (["MODEL", "--tls-cert", "MODEL"], "both --tls-cert and --tls-key"),
        (["MODEL", "--tls-client-ca", "MODEL"], "needs --tls-cert"),
        (["MODEL", "--tls-cert", "MISSING", "--tls-key", "MISSING"], "--tls-cert: no such file"),
        (["MODEL", "--tls-cert", "ONNX", "--tls-key", "ONNX"], "matching private key"),
        (["MODEL", "--access", "MISSING"], "cannot read the access policy"),
        (["MODEL", "--access", "ONNX"], "not valid YAML"),
    ],
)
def test_bad_flags_exit_2_with_a_clear_message(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], args: list[str], message: str
) -> None:
    model = models.mlp(tmp_path / "m" / "model.onnx").parent
    named = {"MODEL": str(model), "MISSING": str(tmp_path / "missing"), "ONNX": str(model / "model.onnx")}
    args = [named.get(a, a) for a in args]
    assert run(["serve", *args]) == 2
    err = capsys.readouterr().err
    assert message in err
    assert "Traceback" not in err


def test_a_flag_of_the_wrong_type_exits_2() -> None:
    assert run(["serve", "--instances", "many"]) == 2


@pytest.mark.parametrize("transport", ["--http", "--grpc"])
def test_an_address_in_use_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str], transport: str) -> None:
    import socket

    model = models.mlp(tmp_path / "m" / "model.onnx").parent
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        address = f"127.0.0.1:{taken.getsockname()[1]}"
        other = "--grpc" if transport == "--http" else "--http"
        assert run(["serve", str(model), transport, address, other, "off"]) == 2
    assert "cannot listen" in capsys.readouterr().err


def test_a_single_model_that_cannot_load_exits_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.onnx"
    bad.write_bytes(b"not onnx")
    assert run(["serve", str(bad), "--http", "127.0.0.1:0", "--grpc", "off"]) == 2
    assert "bad.onnx" in capsys.readouterr().err
