"""benchmarks/bench_peers.py at a tiny size, pcq only (its peers' virtualenvs need PyPI).

The figures are meaningless at this size; what is checked is that the script
runs pcq's consumers end to end, reads "done" back from Redis, and reports every
round as JSON, and that a wrong ``--only`` is one usage line with exit 2.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

SCRIPT = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_peers.py"

pytestmark = [
    pytest.mark.timeout(120),
    pytest.mark.skipif(
        shutil.which("redis-server") is None and not Path("/usr/bin/redis-server").exists(),
        reason="needs redis-server",
    ),
]


def test_smoke_pcq_only() -> None:
    args = [sys.executable, str(SCRIPT), "--only", "pcq", "--items", "40", "--rounds", "1", "--json"]
    proc = subprocess.run(args, capture_output=True, text=True, timeout=110, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    doc = json.loads(proc.stdout)
    assert [s["name"] for s in doc["systems"]] == ["pcq-b1", "pcq-b100"]
    for system in doc["systems"]:
        assert system["errors"] == [] and len(system["items_per_second"]) == 1, system
        assert system["items_per_second"][0] > 0
    assert len(doc["load_start"]) == 3


def test_unknown_system_is_a_usage_error() -> None:
    proc = subprocess.run([sys.executable, str(SCRIPT), "--only", "nosuch"],
                          capture_output=True, text=True, timeout=60, check=False)  # fmt: skip
    assert proc.returncode == 2 and "unknown system" in proc.stderr
    assert "Traceback" not in proc.stderr
