"""``pcq compare --docker``: consumer containers scaled by compose (needs Docker)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fixtures_docker import docker_unavailable

from pcq.core.compare.docker_runner import docker_problem
from pcq.core.compare.schema import validate_results

REPO = Path(__file__).resolve().parents[1]

pytestmark = pytest.mark.docker


def test_docker_transport_scales_consumer_containers(tmp_path: Path) -> None:
    problem = docker_problem()
    if problem is not None:
        docker_unavailable(problem)
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    out = tmp_path / "rep"
    proc = subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-m", "pcq.core", "compare", "--docker",
         "--transports", "local", "--consumers", "2", "--items", "24", "--work", "sleep:5",
         "--out", str(out), "--json"],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=1200, check=False,
    )
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert validate_results(data) == []
    assert data["transports"] == ["local", "docker"]
    (run,) = [r for r in data["runs"] if r["transport"] == "docker"]
    assert run["consumed"] == 24 and run["lost"] == 0 and run["duplicates"] == 0
    assert len(run["per_consumer"]) == 2  # both containers took items (5 ms each, 24 items)
    assert sum(run["per_consumer"].values()) == 24
    # Every project it made is gone: no container, network or volume left behind.
    for what in (["ps", "-a"], ["network", "ls"], ["volume", "ls"]):
        left = subprocess.run(["docker", *what, "-q", "--filter", "name=pcq-cmp-"],
                              capture_output=True, text=True, timeout=60, check=False)
        assert left.stdout.strip() == "", what
