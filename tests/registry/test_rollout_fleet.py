"""Two ``honed serve`` processes on one registry (SQLite, and PostgreSQL when HONED_TEST_POSTGRES_URL is set)
follow one rollout: they apply the same weights, take one decision per interval between them (the lease), and
the candidate is promoted under load from a real client."""

from __future__ import annotations

import itertools
import json
import re
import time
from datetime import datetime
from pathlib import Path

import httpx

from honed.registry import open_registry
from tests.serve.test_rollout_serving import OFFSETS, Load, _model, _serve

_WEIGHT = re.compile(r'honed_rollout_weight\{model="scorer",version="2"\} ([\d.]+)')


def _weight(url: str) -> float | None:
    match = _WEIGHT.search(httpx.get(f"{url}/metrics", timeout=5).text)
    return None if match is None else float(match.group(1))


def test_two_servers_one_decision_per_interval_same_weights(cli, db_url: str, artifacts: Path, tmp_path: Path) -> None:
    with open_registry(db_url, artifacts=artifacts) as reg:
        for v in (1, 2):
            reg.register(_model(tmp_path / f"v{v}.onnx", OFFSETS[v], False), "scorer", actor="alice")
        reg.set_alias("scorer", "production", 1, actor="alice")
    cli(
        "rollout", "start", "scorer", "--to", "2", "--steps", "25,50,100", "--interval", "1s",
        "--min-requests", "20", "--mirror", "0.5", "--deadline", "60s", "--max-p99-ratio", "off",
    )  # fmt: skip
    a_dir, b_dir = tmp_path / "a", tmp_path / "b"
    a_dir.mkdir()
    b_dir.mkdir()
    a, a_log, a_url = _serve(db_url, a_dir, artifacts)
    try:
        b, b_log, b_url = _serve(db_url, b_dir, artifacts)
        try:
            with Load(a_url) as load_a, Load(b_url) as load_b:
                end = time.monotonic() + 40
                same_weight_seen = False
                while time.monotonic() < end:
                    status = json.loads(cli("rollout", "status", "scorer", "--json"))
                    if status["status"] != "running":
                        break
                    weights = {_weight(a_url), _weight(b_url)}
                    same_weight_seen |= len(weights) == 1 and weights != {None}
                    time.sleep(0.1)
            assert not load_a.problems and not load_b.problems, (load_a.problems[:3], load_b.problems[:3])
        finally:
            b.terminate()
            b.wait(30)
    finally:
        a.terminate()
        a.wait(30)
    assert status["status"] == "promoted", (status, a_log.read_text()[-2000:], b_log.read_text()[-2000:])
    assert same_weight_seen
    verdicts = status["verdicts"]
    times = [datetime.fromisoformat(v["at"]) for v in verdicts]
    gaps = [(t2 - t1).total_seconds() for t1, t2 in itertools.pairwise(times)]
    assert all(g >= 1.0 for g in gaps), gaps  # never two decisions in one interval
    assert [v["weight"] for v in verdicts if v["verdict"] == "pass"] == [25, 50, 100]
    with open_registry(db_url, artifacts=artifacts) as reg:
        assert reg.aliases("scorer")["production"] == 2
        assert len(reg.audit_log(action="rollout.promote")) == 1
