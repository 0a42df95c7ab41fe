"""plan.json as a typed document: the real planner's output reads back unchanged; bad files name the field."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from honed.errors import InvalidArgument
from honed.plan.document import Plan, read_plan, write_plan
from honed.plan.planner import make_plan
from honed.plan.spec import Deployment, Pool
from tests.plan.helpers import GPU_PROFILE, bench_doc, write_json


@pytest.fixture(scope="module")
def planned(tmp_path_factory: pytest.TempPathFactory) -> Plan:
    bench = write_json(tmp_path_factory.mktemp("doc") / "bench.json", bench_doc())
    pools = [
        Pool("cpu-ae", 3, 16.0, 64.0, 0.68, "AE", "ae-central-1"),
        Pool("gpu-eu", 2, 32.0, 256.0, 0.98, "EU", "eu-west-1", gpus=1, gpu_type="L4", profiles={"bulk": GPU_PROFILE}),
    ]
    deps = [
        Deployment("fraud", 20.0, 2000.0, profile=str(bench), priority=2, residency=("AE",), model_load_s=0.5),
        Deployment("bulk", 50.0, 6000.0, profile=str(bench), residency=("EU",), model_load_s=0.5),
        Deployment("saudi", 50.0, 10.0, profile=str(bench), residency=("SA",), model_load_s=0.5),
    ]
    return make_plan(pools, deps, time_limit_s=5)


def test_the_planners_output_round_trips(planned: Plan, tmp_path: Path) -> None:
    path = write_plan(planned, tmp_path / "plan.json")
    data = json.loads(path.read_text(encoding="utf-8"))
    plan = read_plan(path)
    assert plan == planned and plan.to_dict() == data
    assert path.read_text(encoding="utf-8") == plan.to_json()
    assert {p.deployment for p in plan.placements} == {"fraud", "bulk"} and plan.unplaced[0].deployment == "saudi"


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda d: d.update(schema="honed.plan/v0"), "is not a honed plan"),
        (lambda d: d["placements"][0].pop("replicas"), "placements[0] (fraud): missing field 'replicas'"),
        (lambda d: d["placements"][0]["autoscaling"].update(min_replicas="2"), "autoscaling: min_replicas must be"),
        (lambda d: d["placements"][0]["profile"]["points"][0].update(batch=None), "points[0]: batch must be"),
    ],
)
def test_a_bad_plan_names_the_file_and_field(planned: Plan, tmp_path: Path, change: Any, message: str) -> None:
    data = planned.to_dict()
    change(data)
    path = write_json(tmp_path / "plan.json", data)
    with pytest.raises(InvalidArgument, match=r"plan\.json") as err:
        read_plan(path)
    assert message in str(err.value)
