"""honed deploy k8s --registry: every pod serves its model from one shared registry, its password from a Secret."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from honed.deploy import DeployOptions, build
from honed.deploy.serving import RegistrySource, ServingSecrets
from honed.errors import InvalidArgument
from honed.plan.document import Plan, write_plan
from tests.deploy.test_manifests import CORE_KINDS, plan, serving_pod, validate

__all__ = ["plan"]

URL = "postgresql://honed@registry.db.svc:6543/honed"
OPTIONS = DeployOptions(
    secrets=ServingSecrets(access_secret="honed-access"), registry=RegistrySource(URL, "honed-registry")
)


def test_every_pod_serves_from_the_registry_with_its_password_from_the_secret(plan: Plan) -> None:
    objects = build(plan, OPTIONS)
    for name in ("fraud", "bulk", "fraud-predictive"):
        for obj in objects[name]:
            if obj["kind"] in CORE_KINDS:
                validate(obj)
        container = serving_pod(objects, name)["spec"]["containers"][0]
        args = container["args"]
        assert args[:5] == ["serve", "--registry", URL, "--model", f"{name}@production"]
        env = {e["name"]: e for e in container["env"]}
        assert env["PGPASSWORD"]["valueFrom"] == {"secretKeyRef": {"name": "honed-registry", "key": "password"}}
        assert env["HONED_ARTIFACTS"]["value"] == "/models/artifacts"
        egress = next(o for o in objects[name] if o["metadata"]["name"] == f"{name}-allow-egress")
        ports = [p["port"] for rule in egress["spec"]["egress"] for p in rule["ports"]]
        assert 6543 in ports and 53 in ports
    # Without --registry nothing of it is there.
    plain = build(plan, DeployOptions(secrets=ServingSecrets(access_secret="honed-access")))
    assert "--registry" not in serving_pod(plain)["spec"]["containers"][0]["args"]
    assert not [o for o in plain["fraud"] if o["metadata"]["name"].endswith("-allow-egress")]


@pytest.mark.parametrize(
    ("url", "secret", "says"),
    [
        ("postgresql://honed:hunter2@db/honed", "s", "carries a password"),
        ("sqlite:///registry.db", "s", "cannot be shared"),
        ("postgresql://db:notaport/honed", "s", "not a URL"),
        (URL, "", "--registry-secret"),
    ],
)
def test_bad_registry_settings_are_refused(url: str, secret: str, says: str) -> None:
    with pytest.raises(InvalidArgument, match=says):
        RegistrySource(url, secret)


def test_kserve_is_refused_with_the_way_kserve_does_it() -> None:
    with pytest.raises(InvalidArgument, match="canaryTrafficPercent"):
        DeployOptions(fmt="kserve", insecure_no_auth=True, registry=RegistrySource(URL, "r"))


def test_cli_writes_registry_pods_and_refuses_a_password_in_one_line(
    plan: Plan, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from honed.cli.main import run

    path = write_plan(plan, tmp_path / "plan.json")
    base = ["deploy", "k8s", "--plan", str(path), "--access-secret", "a"]
    assert run([*base, "--out", str(tmp_path / "m"), "--registry", URL, "--registry-secret", "reg"]) == 0
    docs = list(yaml.safe_load_all((tmp_path / "m" / "fraud.yaml").read_text()))
    dep = next(d for d in docs if d["kind"] == "Deployment")
    assert "hunter2" not in (tmp_path / "m" / "fraud.yaml").read_text()
    assert dep["spec"]["template"]["spec"]["containers"][0]["args"][1:3] == ["--registry", URL]
    capsys.readouterr()
    bad = [*base, "--out", str(tmp_path / "m2"), "--registry", "postgresql://u:hunter2@db/h", "--registry-secret", "r"]
    assert run(bad) == 2
    err = capsys.readouterr().err
    assert "carries a password" in err and err.count("\n") == 1 and not (tmp_path / "m2").exists()
    assert run([*base, "--out", str(tmp_path / "m3"), "--registry-secret", "r"]) == 2
    assert "needs --registry" in capsys.readouterr().err
