"""ModelServingConfig / BatchingConfig: defaults, round trips, and clear errors for bad settings."""

from __future__ import annotations

import pytest

from honed.errors import InvalidArgument
from honed.runtime import RuntimeConfig
from honed.serve.config import BatchingConfig, ModelServingConfig


def test_defaults_round_trip() -> None:
    config = ModelServingConfig()
    assert config.batching.enabled and config.batching.max_batch_size == 32
    assert ModelServingConfig.from_dict(config.to_dict()) == config


def test_full_round_trip() -> None:
    config = ModelServingConfig(
        batching=BatchingConfig(max_batch_size=16, max_queue_delay_ms=5, preferred_batch_sizes=(8, 4)),
        instances=2,
        threads_per_instance=1,
        pin_cores=((0,), (1,)),
        runtime=RuntimeConfig(graph_optimization="basic"),
        warmup=False,
    )
    assert config.batching.preferred_batch_sizes == (4, 8)
    data = config.to_dict()
    assert data["pin_cores"] == [[0], [1]]
    assert ModelServingConfig.from_dict(data) == config


def test_from_dict_partial() -> None:
    config = ModelServingConfig.from_dict({"batching": {"max_batch_size": 8}, "runtime": {"spinning": False}})
    assert config.batching.max_batch_size == 8
    assert config.batching.max_queue_delay_ms == BatchingConfig().max_queue_delay_ms
    assert config.runtime.spinning is False


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"instance": 2}, "unknown serving config key"),
        ({"batching": {"max_batch": 2}}, "unknown batching key"),
        ({"runtime": {"threads": 2}}, "unknown runtime setting"),
        ({"instances": 0}, "instances must be a whole number >= 1"),
        ({"instances": "2"}, "instances must be a whole number"),
        ({"threads_per_instance": 1.5}, "threads_per_instance"),
        ({"batching": {"max_batch_size": 0}}, "max_batch_size"),
        ({"batching": {"max_queue_delay_ms": -1}}, "max_queue_delay_ms"),
        ({"batching": {"max_queue_delay_ms": float("nan")}}, "max_queue_delay_ms"),
        ({"batching": {"max_queue_size": 0}}, "max_queue_size"),
        ({"batching": {"enabled": "yes"}}, "enabled"),
        ({"batching": {"preferred_batch_sizes": [64]}}, "above max_batch_size"),
        ({"batching": {"preferred_batch_sizes": "8"}}, "preferred_batch_sizes"),
        ({"batching": []}, "batching must be a mapping"),
        ({"pin_cores": [[0]], "instances": 2}, "one per instance"),
        ({"pin_cores": [[0, 0]]}, "twice"),
        ({"pin_cores": [[-1]]}, "CPU id"),
        ({"pin_cores": "0"}, "pin_cores"),
        ({"warmup": 1}, "warmup"),
        ({"runtime": {"provider": "tpu"}}, "provider"),
        ({"runtime": "fast"}, "runtime must be a mapping"),
    ],
)
def test_bad_settings_are_refused(data: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidArgument, match=message):
        ModelServingConfig.from_dict(data)


def test_not_a_mapping() -> None:
    with pytest.raises(InvalidArgument, match="must be a mapping"):
        ModelServingConfig.from_dict([1, 2])
