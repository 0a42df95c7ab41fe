"""README's planning example works as written, from the project root, on the files in examples/."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from honed.cli.main import run

ROOT = Path(__file__).resolve().parents[1]


def test_readme_plan_and_deploy_on_the_examples(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.chdir(ROOT)
    plan = tmp_path / "plan.json"
    args = ["plan", "--fleet", "examples/fleet.yaml", "--deployments", "examples/deployments.yaml"]
    assert run([*args, "--out", str(plan)]) == 0, capsys.readouterr().err
    placed = {p["deployment"] for p in json.loads(plan.read_text())["placements"]}
    assert {"fraud-scorer", "doc-classifier", "bulk-tagger"} <= placed
    deploy = ["deploy", "k8s", "--plan", str(plan), "--out", str(tmp_path / "manifests")]
    assert run([*deploy, "--access-secret", "honed-access"]) == 0
    assert (tmp_path / "manifests" / "fraud-scorer.yaml").is_file()
