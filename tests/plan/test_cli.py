"""End to end through the CLI: plan -> simulate -> deploy on a real (tiny) ONNX model with a bench-v1 profile."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml

from honed.cli.main import run
from honed.plan import traces
from tests.graphs import matmul_model
from tests.plan.helpers import GPU_PROFILE, bench_doc, write_json, write_yaml


@pytest.fixture(scope="module")
def inputs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("cli")
    out = tmp / "out"  # an optimize-style output folder: model.onnx + bench.json
    out.mkdir()
    matmul_model(out / "model.onnx")
    write_json(out / "bench.json", bench_doc(model_path=str(out / "model.onnx")))
    history = traces.generate("diurnal", days=2, base=100, peak=1500, seed=0)
    traces.write_csv(history, tmp / "history.csv")
    write_yaml(
        tmp / "fleet.yaml",
        {
            "pools": [
                {
                    "name": "cpu-ae",
                    "count": 3,
                    "jurisdiction": "AE",
                    "region": "ae-central-1",
                    "cpu": 16,
                    "memory_gb": 64,
                    "cost_per_hour": 0.68,
                },
                {
                    "name": "gpu-eu",
                    "count": 2,
                    "jurisdiction": "EU",
                    "region": "eu-west-1",
                    "cpu": 32,
                    "memory_gb": 256,
                    "gpus": 1,
                    "gpu_type": "L4",
                    "cost_per_hour": 0.98,
                    "profiles": {"tagger": GPU_PROFILE},
                },
            ]
        },
    )
    write_yaml(
        tmp / "deployments.yaml",
        {
            "deployments": [
                {
                    "name": "fraud-scorer",
                    "model": "out/",
                    "slo_p99_ms": 50,
                    "peak_rps": 1500,
                    "priority": "high",
                    "residency": ["AE"],
                    "autoscaling": {"policy": "predictive", "history": "history.csv"},
                },
                {"name": "tagger", "model": "out/", "slo_p99_ms": 50, "peak_rps": 5000, "residency": ["EU"]},
                {
                    "name": "riyadh",
                    "model": "out/",
                    "slo_p99_ms": 50,
                    "peak_rps": 10,
                    "residency": ["SA"],
                    "priority": "low",
                },
            ]
        },
    )
    return tmp


def test_plan_simulate_deploy(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    plan_path = inputs / "plan.json"
    code = run(
        [
            "plan",
            "--fleet",
            str(inputs / "fleet.yaml"),
            "--deployments",
            str(inputs / "deployments.yaml"),
            "--out",
            str(plan_path),
        ]
    )
    assert code == 0, capsys.readouterr().err
    plan = json.loads(plan_path.read_text())
    placed = {p["deployment"]: p for p in plan["placements"]}
    assert placed["fraud-scorer"]["pool"] == "cpu-ae" and placed["tagger"]["pool"] == "gpu-eu"
    assert placed["tagger"]["profile_source"] == "declared, not measured"
    assert placed["fraud-scorer"]["autoscaling"]["model_load_s"] > 0  # measured on the real model file
    assert len(placed["fraud-scorer"]["autoscaling"]["schedule"]) == 24
    for key in ("deployment", "pool", "replicas", "instances", "threads", "batch", "expected_p99_ms", "cost_per_hour"):
        assert key in placed["tagger"]
    assert plan["unplaced"][0]["deployment"] == "riyadh" and "residency [SA]" in plan["unplaced"][0]["reason"]
    printed = capsys.readouterr().out
    assert "declared, not measured" in printed and "riyadh" in printed

    sim = inputs / "sim"
    code = run(
        [
            "plan",
            "simulate",
            "--plan",
            str(plan_path),
            "--trace",
            "spike",
            "--days",
            "0.25",
            "--policy",
            "hpa,static",
            "--out",
            str(sim),
            "-d",
            "fraud-scorer",
        ]
    )
    assert code == 0, capsys.readouterr().err
    summary = json.loads((sim / "summary.json").read_text())
    pols = summary["deployments"]["fraud-scorer"]["policies"]
    assert set(pols) == {"hpa", "static"} and pols["static"]["replica_hours"] >= pols["hpa"]["replica_hours"]
    assert (sim / "fraud-scorer.png").stat().st_size > 10_000

    manifests = inputs / "manifests"
    secure = ["--access-secret", "honed-access"]
    assert run(["deploy", "k8s", "--plan", str(plan_path), "--out", str(manifests), *secure]) == 0
    kinds = []
    for f in manifests.glob("*.yaml"):
        for doc in yaml.safe_load_all(f.read_text()):
            kinds.append(doc["kind"])
            # KEDA's and the prometheus-operator's CRDs are checked in tests/deploy
            if not doc["apiVersion"].startswith(("keda.sh/", "monitoring.coreos.com/")):
                kubernetes_validate.validate(doc, "1.33.0", strict=True)
    assert {"ScaledObject", "TriggerAuthentication", "HorizontalPodAutoscaler", "PrometheusRule"} <= set(kinds)
    kserve = ["--format", "kserve", *secure]
    assert run(["deploy", "k8s", "--plan", str(plan_path), "--out", str(inputs / "ks"), *kserve]) == 0
    assert "InferenceService" in (inputs / "ks" / "tagger.yaml").read_text()


@pytest.mark.parametrize(
    ("fleet_change", "message"),
    [
        ({"pools": [{"name": "p", "count": 0, "cpu": 1, "memory_gb": 1, "cost_per_hour": 1}]}, "count must be"),
        (
            {"pools": [{"name": "p", "count": 1, "cpu": 1, "memory_gb": 1, "cost_per_hour": 1, "zone": "x"}]},
            "unknown field",
        ),
    ],
)
def test_bad_fleet_exits_2(inputs: Path, capsys: pytest.CaptureFixture[str], fleet_change: dict, message: str) -> None:
    bad = write_yaml(inputs / "bad-fleet.yaml", fleet_change)
    code = run(
        [
            "plan",
            "--fleet",
            str(bad),
            "--deployments",
            str(inputs / "deployments.yaml"),
            "--out",
            str(inputs / "x.json"),
        ]
    )
    assert code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_missing_model_and_bad_plan_exit_2(inputs: Path, capsys: pytest.CaptureFixture[str]) -> None:
    deps = write_yaml(
        inputs / "bad-deps.yaml", {"deployments": [{"name": "a", "model": "nope.onnx", "slo_p99_ms": 5, "peak_rps": 1}]}
    )
    assert run(["plan", "--fleet", str(inputs / "fleet.yaml"), "--deployments", str(deps)]) == 2
    assert "does not exist" in capsys.readouterr().err
    (inputs / "notplan.json").write_text("{}")
    deploy = [
        "deploy",
        "k8s",
        "--plan",
        str(inputs / "notplan.json"),
        "--out",
        str(inputs / "m2"),
        "--insecure-no-auth",
    ]
    assert run(deploy) == 2
    assert run(["plan", "simulate", "--plan", str(inputs / "notplan.json")]) == 2
    assert run(["plan"]) == 2


@pytest.fixture(scope="module")
def planned(inputs: Path) -> Path:
    """plan.json as ``honed plan`` writes it from the module's fleet and deployments."""
    path = inputs / "planned.json"
    args = ["--fleet", str(inputs / "fleet.yaml"), "--deployments", str(inputs / "deployments.yaml")]
    assert run(["plan", *args, "--out", str(path)]) == 0
    return path


def _drop_max_replicas(text: str) -> str:
    data = json.loads(text)
    del data["placements"][0]["autoscaling"]["max_replicas"]
    return json.dumps(data)


def _wrong_type(text: str) -> str:
    data = json.loads(text)
    data["placements"][1]["resources"]["cpu"] = "two"
    return json.dumps(data)


@pytest.mark.parametrize(
    "command",
    [
        ["deploy", "k8s", "--out", "m", "--access-secret", "honed-access"],
        ["plan", "simulate", "--out", "sim"],
        ["plan", "forecast-server", "--insecure-no-auth"],
    ],
    ids=["deploy", "simulate", "forecast-server"],
)
@pytest.mark.parametrize(
    ("damage", "expected"),
    [
        (lambda t: t.replace('"honed.plan/v1"', '"honed.bench/v1"', 1), ["not a honed plan", "honed.bench/v1"]),
        (lambda t: t[: len(t) // 2], ["is not valid JSON", "line"]),
        (_drop_max_replicas, ["placements[0] (fraud-scorer).autoscaling", "missing field 'max_replicas'"]),
        (_wrong_type, ["placements[1] (tagger).resources", "cpu must be a number", "'two'"]),
    ],
    ids=["other-schema", "truncated", "missing-field", "wrong-type"],
)
def test_a_bad_plan_is_one_line_naming_the_file_and_field_exit_2(
    planned: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: list[str],
    damage: Any,
    expected: list[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    bad = tmp_path / "damaged-plan.json"
    bad.write_text(damage(planned.read_text(encoding="utf-8")), encoding="utf-8")
    capsys.readouterr()
    assert run([*command, "--plan", "damaged-plan.json"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("honed: error: damaged-plan.json"), err
    for part in expected:
        assert part in err, err
    assert not (tmp_path / "m").exists() and not (tmp_path / "sim").exists()  # nothing half-written


@pytest.mark.parametrize(
    ("flags", "message"),
    [
        (["--format", "helm"], "--format must be one of k8s, kserve"),
        (["--format", "kserve", "--tls-secret", "honed-tls"], "pass --access-secret NAME"),
        ([], "pass --access-secret NAME"),
        (["--tls-secret", "honed-tls"], "pass --access-secret NAME"),
        (["--format", "kserve"], "or --insecure-no-auth"),
        (["--access-secret", "a", "--insecure-no-auth"], "not both"),
    ],
)
def test_bad_deploy_options_exit_2_and_write_nothing(
    planned: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], flags: list[str], message: str
) -> None:
    capsys.readouterr()
    assert run(["deploy", "k8s", "--plan", str(planned), "--out", str(tmp_path / "m"), *flags]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1
    assert not (tmp_path / "m").exists()


def test_the_written_plan_reads_back_and_simulates(planned: Path, tmp_path: Path) -> None:
    """plan -> plan.json -> read -> simulate, through the real planner's file."""
    from honed.plan import read_plan, simulate_plan

    plan = read_plan(planned)
    assert planned.read_text(encoding="utf-8") == plan.to_json()
    summary = simulate_plan(plan, trace="ramp", policies=["hpa"], out=tmp_path / "sim", days=0.1)
    scorer = summary.deployments["fraud-scorer"].policies["hpa"]
    assert scorer.slo_p99_ms == plan.placement("fraud-scorer").slo_p99_ms
    assert scorer.max_replicas <= plan.placement("fraud-scorer").autoscaling.max_replicas
    assert scorer.anomalies is None and summary.deployments["fraud-scorer"].profile_source == "measured"
    written = json.loads((tmp_path / "sim" / "summary.json").read_text(encoding="utf-8"))
    assert written == summary.to_dict() and written["schema"] == "honed.simulation/v1"


_BLOCK_PLANNING_LIBRARIES = """
import sys
from importlib.abc import MetaPathFinder

class Blocked(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {"pulp", "statsmodels", "matplotlib"}:
            raise ImportError(f"{name} is not installed here")
        return None

sys.meta_path.insert(0, Blocked())
from honed.cli.main import run
sys.exit(run(sys.argv[1:]))
"""


def test_deploy_reads_a_real_plan_without_the_planning_libraries(
    inputs: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    plan_path = tmp_path / "plan.json"
    args = ["--fleet", str(inputs / "fleet.yaml"), "--deployments", str(inputs / "deployments.yaml")]
    assert run(["plan", *args, "--out", str(plan_path)]) == 0, capsys.readouterr().err
    manifests = tmp_path / "manifests"
    deploy = [sys.executable, "-c", _BLOCK_PLANNING_LIBRARIES, "deploy", "k8s", "--plan", str(plan_path)]
    secure = ["--access-secret", "honed-access"]
    done = subprocess.run([*deploy, "--out", str(manifests), *secure], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert {p.name for p in manifests.glob("*.yaml")} >= {"fraud-scorer.yaml", "tagger.yaml"}

    broken = json.loads(plan_path.read_text())
    del broken["placements"][0]["replicas"]
    bad = write_json(tmp_path / "bad-plan.json", broken)
    done = subprocess.run(
        [*deploy[:-1], str(bad), "--out", str(tmp_path / "m2"), *secure], capture_output=True, text=True
    )
    assert done.returncode == 2
    assert "bad-plan.json" in done.stderr and "replicas" in done.stderr and "Traceback" not in done.stderr
