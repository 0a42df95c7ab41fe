"""The PrometheusRule beside the manifests: the CRD's shape, every expression valid PromQL (promtool check rules),
and the burn-rate alert firing on a failing deployment and not on a healthy one (promtool test rules)."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path
from typing import Any

import jsonschema
import pytest
import yaml

from honed.deploy import DeployOptions, build, write
from honed.deploy.alerts import SERVER_FAILURES, latency_bound_s
from honed.errors import InvalidArgument
from honed.plan.document import Plan, write_plan
from honed.serve import contract
from tests.deploy.test_manifests import SECURE, plan

__all__ = ["plan"]

PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(PROMTOOL is None, reason="promtool (Debian's prometheus package) is not installed")

_STR = {"type": "string", "minLength": 1}
_MAP = {"type": "object", "additionalProperties": {"type": "string"}}
PROMETHEUS_RULE: dict[str, Any] = {
    "type": "object",
    "required": ["apiVersion", "kind", "metadata", "spec"],
    "additionalProperties": False,
    "properties": {
        "apiVersion": {"const": "monitoring.coreos.com/v1"},
        "kind": {"const": "PrometheusRule"},
        "metadata": {"type": "object", "required": ["name", "namespace"]},
        "spec": {
            "type": "object",
            "additionalProperties": False,
            "required": ["groups"],
            "properties": {
                "groups": {
                    "type": "array",
                    "minItems": 1,
                    "items": {
                        "type": "object",
                        "required": ["name", "rules"],
                        "additionalProperties": False,
                        "properties": {
                            "name": _STR,
                            "rules": {
                                "type": "array",
                                "minItems": 1,
                                "items": {
                                    "type": "object",
                                    "required": ["alert", "expr"],
                                    "additionalProperties": False,
                                    "properties": {
                                        "alert": _STR,
                                        "expr": _STR,
                                        "for": {"type": "string", "pattern": "^[0-9]+(ms|s|m|h|d|w|y)$"},
                                        "labels": _MAP,
                                        "annotations": _MAP,
                                    },
                                },
                            },
                        },
                    },
                },
            },
        },
    },
}
"""The part of the prometheus-operator's PrometheusRule CRD schema honed uses (spec.groups[].rules[]), strictly."""


def rules_file(objects: list[dict[str, Any]], path: Path) -> Path:
    """The PrometheusRules' groups as one Prometheus rule file (what the operator hands Prometheus)."""
    groups = [g for obj in objects for g in obj["spec"]["groups"]]
    path.write_text(yaml.safe_dump({"groups": groups}, sort_keys=False), encoding="utf-8")
    return path


def test_one_rule_per_namespace_with_every_alert_per_deployment(plan: Plan) -> None:
    objects = build(plan, SECURE)["_alerts"]
    assert sorted(o["metadata"]["namespace"] for o in objects) == sorted({p.namespace for p in plan.placements})
    for obj in objects:
        jsonschema.validate(obj, PROMETHEUS_RULE)
    groups = {g["name"]: g["rules"] for o in objects for g in o["spec"]["groups"]}
    assert set(groups) == {f"honed-{p.deployment}" for p in plan.placements}
    names = contract.metric_names()
    for p in plan.placements:
        rules = groups[f"honed-{p.deployment}"]
        alerts = [(r["alert"], r["labels"].get("severity")) for r in rules]
        assert alerts == [
            ("HonedSLOBurnAvailability", "page"),
            ("HonedSLOBurnAvailability", "ticket"),
            ("HonedSLOBurnLatency", "page"),
            ("HonedSLOBurnLatency", "ticket"),
            ("HonedRolloutRollback", "ticket"),
            ("HonedRequestRateAnomaly", "ticket"),
        ]
        text = " ".join(r["expr"] for r in rules)
        for metric in {m.split("{")[0] for m in text.split("(") if m.startswith("honed_")}:
            assert metric.removesuffix("_bucket").removesuffix("_count") in names, metric
        assert f'model="{p.deployment}"' in text and "offset 1w" in text
        # The latency bucket: the largest bound not above the SLO.
        bound = latency_bound_s(p.slo_p99_ms)
        assert bound <= p.slo_p99_ms / 1000 and f"{bound:g}".replace(".", "\\\\.") in text
    assert set(SERVER_FAILURES) < set(contract.OUTCOMES) and contract.SUCCESS not in SERVER_FAILURES


@needs_promtool
def test_every_expression_is_valid_promql(plan: Plan, tmp_path: Path) -> None:
    path = rules_file(build(plan, SECURE)["_alerts"], tmp_path / "rules.yaml")
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stdout + done.stderr
    assert f"SUCCESS: {6 * len(plan.placements)} rules found" in done.stdout
    broken = yaml.safe_load(path.read_text())
    broken["groups"][0]["rules"][0]["expr"] += " >"
    path.write_text(yaml.safe_dump(broken), encoding="utf-8")
    done = subprocess.run([str(PROMTOOL), "check", "rules", str(path)], capture_output=True, text=True, timeout=60)
    assert done.returncode != 0  # the check can fail


@needs_promtool
def test_burn_alert_pages_for_a_failing_deployment_and_not_a_healthy_one(plan: Plan, tmp_path: Path) -> None:
    """Two hours at 10 requests/s per minute sample: fraud fails 5% on the server (35x its 0.1% budget), bulk
    fails 5% with client errors only, which spend no budget, and answers every request slower than its SLO's
    bucket (the latency alert pages for bulk alone)."""
    objects = build(plan, SECURE)["_alerts"]
    rules_file(objects, tmp_path / "rules.yaml")
    groups = {g["name"]: g["rules"] for o in objects for g in o["spec"]["groups"]}
    bound = f"{latency_bound_s(plan.placement('bulk').slo_p99_ms)!r}"
    series = [
        ('honed_requests_total{model="fraud",version="1",outcome="success"}', "0+570x120"),
        ('honed_requests_total{model="fraud",version="1",outcome="error"}', "0+30x120"),
        ('honed_requests_total{model="bulk",version="1",outcome="success"}', "0+570x120"),
        ('honed_requests_total{model="bulk",version="1",outcome="invalid"}', "0+30x120"),
        (f'honed_request_duration_seconds_bucket{{model="bulk",version="1",le="{bound}"}}', "0+0x120"),
        ('honed_request_duration_seconds_count{model="bulk",version="1"}', "0+600x120"),
    ]

    def expected(group: str, alert: str) -> list[dict[str, Any]]:
        out = [
            {"exp_labels": r["labels"], "exp_annotations": r["annotations"]}
            for r in groups[group]
            if r["alert"] == alert
        ]
        assert [e["exp_labels"]["severity"] for e in out] == ["page", "ticket"]
        return out

    test = {
        "rule_files": ["rules.yaml"],
        "evaluation_interval": "1m",
        "tests": [
            {
                "interval": "1m",
                "input_series": [{"series": s, "values": v} for s, v in series],
                "alert_rule_test": [
                    {
                        "eval_time": "90m",
                        "alertname": "HonedSLOBurnAvailability",
                        "exp_alerts": expected("honed-fraud", "HonedSLOBurnAvailability"),
                    },
                    {
                        "eval_time": "90m",
                        "alertname": "HonedSLOBurnLatency",
                        "exp_alerts": expected("honed-bulk", "HonedSLOBurnLatency"),
                    },
                    {"eval_time": "90m", "alertname": "HonedRolloutRollback", "exp_alerts": []},
                ],
            }
        ],
    }
    (tmp_path / "test.yaml").write_text(yaml.safe_dump(test, sort_keys=False), encoding="utf-8")
    done = subprocess.run(
        [str(PROMTOOL), "test", "rules", "test.yaml"], capture_output=True, text=True, timeout=60, cwd=tmp_path
    )
    assert done.returncode == 0, done.stdout + done.stderr


def test_written_beside_the_manifests_and_a_bad_objective_is_one_line(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    written = write(plan, tmp_path / "m", SECURE)
    assert tmp_path / "m" / "honed-alerts.yaml" in written
    for doc in yaml.safe_load_all((tmp_path / "m" / "honed-alerts.yaml").read_text()):
        jsonschema.validate(doc, PROMETHEUS_RULE)
    with pytest.raises(InvalidArgument, match="--slo-objective"):
        DeployOptions(insecure_no_auth=True, slo_objective=1.0)
    from honed.cli.main import run

    path = write_plan(plan, tmp_path / "plan.json")
    base = ["deploy", "k8s", "--plan", str(path), "--insecure-no-auth"]
    assert run([*base, "--out", str(tmp_path / "m1"), "--slo-objective", "0.99"]) == 0
    text = (tmp_path / "m1" / "honed-alerts.yaml").read_text()
    assert "> 0.144" in text  # 14.4 x the 1% budget
    capsys.readouterr()
    assert run([*base, "--out", str(tmp_path / "m2"), "--slo-objective", "99.9"]) == 2
    err = capsys.readouterr().err
    assert "--slo-objective must be between 0 and 1" in err and err.count("\n") == 1
    assert not (tmp_path / "m2").exists()
