"""ServeOptions and ServingDefaults: what honed serve's flags become, checked before anything binds."""

from __future__ import annotations

from pathlib import Path

import pytest

from honed.errors import InvalidArgument
from honed.serve.config import DEFAULT_MAX_QUEUE_TIME_MS
from honed.serve.launch import ServeOptions, ServingDefaults, run_server, tls_files
from honed.serve.repository import read_config, scan_model_folder
from tests.conformance import models


def test_defaults_hold_only_the_knobs_given() -> None:
    assert ServingDefaults().to_dict() == {}
    given = ServingDefaults(max_batch_size=8, max_queue_size=5, batching=False, threads_per_instance=2, pin_cores=True)
    assert given.to_dict() == {
        "batching": {"max_batch_size": 8, "max_queue_size": 5, "enabled": False},
        "threads_per_instance": 2,
        "pin_cores": True,
    }


def test_a_model_config_file_overrides_the_defaults(tmp_path: Path) -> None:
    models.mlp(tmp_path / "m" / "1" / "model.onnx")
    (tmp_path / "m" / "config.yaml").write_text("batching:\n  max_batch_size: 4\n")
    defaults = ServingDefaults(max_batch_size=16, max_queue_delay_ms=1.5, instances=2)
    config = read_config(scan_model_folder("m", tmp_path / "m"), defaults.to_dict())
    assert (config.batching.max_batch_size, config.batching.max_queue_delay_ms, config.instances) == (4, 1.5, 2)


def test_the_queue_time_bound_is_a_server_default_a_model_config_overrides(tmp_path: Path) -> None:
    defaults = ServingDefaults(max_queue_time_ms=250).to_dict()
    assert defaults == {"batching": {"max_queue_time_ms": 250}}
    for name, own in (("a", None), ("b", "40"), ("c", "null")):
        models.mlp(tmp_path / name / "1" / "model.onnx")
        if own is not None:
            (tmp_path / name / "config.yaml").write_text(f"batching:\n  max_queue_time_ms: {own}\n")

    def bound(name: str, given: dict[str, object]) -> float | None:
        return read_config(scan_model_folder(name, tmp_path / name), given).batching.max_queue_time_ms

    assert bound("a", defaults) == 250.0 and bound("b", defaults) == 40.0
    assert bound("c", defaults) is None  # a model may turn the bound off
    assert bound("a", {}) == DEFAULT_MAX_QUEUE_TIME_MS  # neither the model nor the server sets one


@pytest.mark.parametrize(
    ("knobs", "message"),
    [
        ({"instances": 0}, "instances must be"),
        ({"max_batch_size": 0}, "max_batch_size"),
        ({"max_queue_delay_ms": -1}, "delay"),
        ({"max_queue_time_ms": 0}, "max_queue_time_ms must be a number > 0"),
    ],
)
def test_a_bad_knob_fails_when_the_defaults_are_built(knobs: dict[str, float], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ServingDefaults(**knobs)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({}, "nothing to serve"),
        ({"source": Path("m"), "models": ("a",)}, "not both"),
        ({"models": ("a",)}, "give --registry"),
        ({"source": Path("m"), "jurisdictions": ("ae",)}, "carry no residency label"),
    ],
)
def test_options_that_cannot_serve_are_refused(options: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ServeOptions(**options)  # type: ignore[arg-type]


def test_jurisdictions_are_normalized_and_unlabelled_files_may_opt_in() -> None:
    options = ServeOptions(source=Path("m"), jurisdictions=("ae, sa",), allow_unlabelled=True)
    assert options.jurisdictions == ("AE", "SA")
    assert options.who.startswith("honed-serve@") and ServeOptions(source=Path("m"), actor="srv-1").who == "srv-1"


def test_a_missing_source_fails_before_binding(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="does not exist"):
        run_server(ServeOptions(source=tmp_path / "missing"))


def test_tls_needs_a_cert_and_a_key() -> None:
    assert tls_files(None, None) is None
    with pytest.raises(InvalidArgument, match="both --tls-cert and --tls-key"):
        tls_files(Path("c.pem"), None)
    with pytest.raises(InvalidArgument, match="needs --tls-cert"):
        tls_files(None, None, Path("ca.pem"))
