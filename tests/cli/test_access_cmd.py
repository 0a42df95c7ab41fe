"""``honed access token``: the printed entry authorizes the printed token; --policy adds to a file safely."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from honed.cli.main import run
from honed.serve.access import AccessPolicy


def test_token_prints_an_entry_that_authorizes_that_token(capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["access", "token", "fraud-app", "--model", "fraud-*"]) == 0
    out, err = capsys.readouterr()
    token = err.strip().splitlines()[-1]
    policy = AccessPolicy.from_dict(yaml.safe_load(out))
    assert policy.authorize(token, "infer", "fraud-scorer").name == "fraud-app"
    assert token not in out  # only its hash goes into the policy


def test_policy_file_gains_principals_and_a_broken_one_is_left_alone(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "access.yaml"
    assert run(["access", "token", "a", "-m", "m1", "--policy", str(path)]) == 0
    first = capsys.readouterr().out.strip()
    assert run(["access", "token", "ops", "-a", "metrics", "--policy", str(path)]) == 0
    second = capsys.readouterr().out.strip()
    policy = AccessPolicy.from_file(path)
    assert policy.authorize(first, "infer", "m1").name == "a"
    assert policy.authorize(second, "metrics").name == "ops"
    assert run(["access", "token", "a", "-m", "m1", "--policy", str(path)]) == 2  # names are unique
    path.write_text("principals: [\n")
    assert run(["access", "token", "b", "-m", "m1", "--policy", str(path)]) == 2
    assert path.read_text() == "principals: [\n"
    assert run(["access", "token", "c", "-a", "infer"]) == 2  # infer without a model grant
    assert "at least one entry in 'models'" in capsys.readouterr().err
