"""``pcq compare``: report folder, schema, embedded Redis, one-line usage errors."""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import psutil
import pytest
from fixtures_redis import RedisServer

from pcq.core.compare.schema import validate_results

REPO = Path(__file__).resolve().parents[1]
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
TIMEOUT = 120


def pcq(*args: str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess[str]:
    """Run ``python -X dev -W error -m pcq.core ARGS`` (the suite's own strictness)."""
    full_env = dict(os.environ if env is None else env)
    full_env.pop("REDIS_URL", None) if env is None else None
    return subprocess.run(
        [sys.executable, "-X", "dev", "-W", "error", "-m", "pcq.core", *args],
        cwd=REPO, env=full_env, capture_output=True, text=True, check=False, timeout=TIMEOUT,
    )


def check_report(out: Path) -> dict:
    """The four files exist; results.json passes the schema; the PNGs are real PNGs."""
    data = json.loads((out / "results.json").read_text())
    assert validate_results(data) == []
    for name in ("throughput.png", "latency.png"):
        blob = (out / name).read_bytes()
        assert blob[:8] == PNG_SIGNATURE, name
        assert len(blob) > 5_000, f"{name} is suspiciously small ({len(blob)} bytes)"
    assert "| transport |" in (out / "report.md").read_text()
    return data


def check_ledgers(data: dict) -> None:
    """Every run accounted for every item, spread over the consumers it had."""
    for run in data["runs"]:
        where = f"{run['transport']} x{run['consumers']}"
        assert run["consumed"] == run["items"], where
        assert run["lost"] == 0 and run["duplicates"] == 0, where
        assert sum(run["per_consumer"].values()) == run["items"], where
        assert len(run["per_consumer"]) <= run["consumers"], where
        assert run["items_per_second"] > 0, where
        assert run["latency_ms"]["p50"] <= run["latency_ms"]["p99"] <= run["latency_ms"]["max"]


def test_local_only_tiny_workload(tmp_path: Path) -> None:
    out = tmp_path / "rep"
    proc = pcq("compare", "--items", "30", "--consumers", "1,2", "--transports", "local",
               "--work", "sleep:1", "--payload-bytes", "100", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = check_report(out)
    check_ledgers(data)
    assert [(r["transport"], r["consumers"]) for r in data["summary"]] == [("local", 1), ("local", 2)]
    assert data["workload"] == {"items": 30, "payload_bytes": 100, "work": "sleep:1", "batch": 1}
    assert "local" in proc.stdout and "items/s" in proc.stdout  # the Rich table


def test_all_transports_on_given_redis(tmp_path: Path, redis_server: RedisServer) -> None:
    out = tmp_path / "rep"
    proc = pcq("compare", "--items", "12", "--consumers", "1,2", "--batch", "3", "--repeat", "2",
               "--redis-url", redis_server.url, "--rq-worker", "simple", "--json", "--out", str(out))
    assert proc.returncode == 0, proc.stderr
    data = check_report(out)
    assert json.loads(proc.stdout) == data  # --json: the same object on stdout
    check_ledgers(data)
    assert data["transports"] == ["local", "redis", "rq"]
    assert len(data["runs"]) == 3 * 2 * 2 and data["redis"]["source"] == "REDIS_URL"
    with redis_server.client() as client:  # a comparison cleans up after itself
        assert list(client.scan_iter(match="*cmp-*")) == []


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def test_embedded_redis_started_and_stopped(tmp_path: Path) -> None:
    if not os.access("/usr/bin/redis-server", os.X_OK):
        pytest.skip("/usr/bin/redis-server not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PCQ_REDIS_SERVER")}
    proc = pcq("compare", "--items", "8", "--consumers", "1", "--transports", "local,redis",
               "--out", str(tmp_path / "rep"), env=env)
    assert proc.returncode == 0, proc.stderr
    match = re.search(r"throwaway redis-server on 127\.0\.0\.1:(\d+)", proc.stderr)
    assert match, proc.stderr
    assert not _port_open(int(match.group(1))), "the throwaway redis-server is still running"
    data = check_report(tmp_path / "rep")
    assert data["redis"]["source"] == "embedded" and data["transports"] == ["local", "redis"]


def test_without_redis_runs_local_only(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if k != "REDIS_URL"}
    env["PCQ_REDIS_SERVER"] = ""  # as if redis-server were not installed
    proc = pcq("compare", "--items", "8", "--consumers", "1", "--out", str(tmp_path / "rep"), env=env)
    assert proc.returncode == 0, proc.stderr
    hint = [line for line in proc.stderr.splitlines() if "REDIS_URL" in line]
    assert len(hint) == 1 and "redis-server" in hint[0]
    data = check_report(tmp_path / "rep")
    assert data["transports"] == ["local"]
    assert {s["transport"] for s in data["skipped"]} == {"redis", "rq"}


def test_unusable_out_dir_one_line_exit_2(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("x")
    proc = pcq("compare", "--transports", "local", "--out", str(blocker / "sub"))
    assert proc.returncode == 2, proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1 and "--out" in proc.stderr


def test_without_matplotlib_one_line_before_measuring(tmp_path: Path) -> None:
    # As if installed without the `compare` extra (the container image is).
    code = ("import sys; sys.modules['matplotlib'] = None; from pcq.core.cli import main; "
            "sys.argv = ['pcq', 'compare', '--transports', 'local', '--out', sys.argv[1]]; main()")
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path / "out")],
                          capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    expected = ("pcq: error: pcq compare draws its plots with matplotlib, which is not installed: "
                "pip install 'pcq[compare]' (in a clone: pip install -e '.[compare]')")
    assert proc.stderr.strip().splitlines() == [expected]
    assert not (tmp_path / "out" / "results.json").exists()  # nothing measured


@pytest.mark.parametrize(
    "args",
    [
        ["--work", "sleep:-1"],
        ["--work", "think:5"],
        ["--consumers", "0"],
        ["--consumers", "1,two"],
        ["--transports", "local,kafka"],
        ["--payload-bytes", "0"],
        ["--repeat", "0"],
        ["--items", "0"],
    ],
)
def test_invalid_knobs_one_line_exit_2(args: list[str], tmp_path: Path) -> None:
    proc = pcq("compare", *args, "--out", str(tmp_path / "never"))
    assert proc.returncode == 2, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("pcq: error:"), proc.stderr
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "never").exists()


def _read_until(stream: IO[str], needle: str, timeout: float) -> str:
    """Lines of ``stream`` up to the first containing ``needle`` (bounded wait)."""
    seen, deadline = "", time.monotonic() + timeout
    with selectors.DefaultSelector() as sel:
        sel.register(stream, selectors.EVENT_READ)
        while needle not in seen:
            left = deadline - time.monotonic()
            if left <= 0 or not sel.select(left):
                raise AssertionError(f"no {needle!r} within {timeout}s:\n{seen}")
            line = stream.readline()
            if not line:
                raise AssertionError(f"stream ended before {needle!r}:\n{seen}")
            seen += line
    return seen


def _wait_children(pid: int, count: int, timeout: float) -> list[psutil.Process]:
    """Poll until ``pid`` has at least ``count`` descendants (bounded)."""
    deadline = time.monotonic() + timeout
    while True:
        children = psutil.Process(pid).children(recursive=True)
        if len(children) >= count or time.monotonic() > deadline:
            assert len(children) >= count, children
            return children
        time.sleep(0.05)


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    if not os.access("/usr/bin/redis-server", os.X_OK):
        pytest.skip("/usr/bin/redis-server not installed")
    env = {k: v for k, v in os.environ.items() if k not in ("REDIS_URL", "PCQ_REDIS_SERVER")}
    proc = subprocess.Popen(
        [sys.executable, "-X", "dev", "-W", "error", "-m", "pcq.core", "compare", "--transports",
         "redis", "--consumers", "2", "--items", "2000", "--work", "sleep:20",
         "--out", str(tmp_path / "rep")],
        cwd=REPO, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    try:
        assert proc.stderr is not None
        seen = _read_until(proc.stderr, "throwaway redis-server", 60)
        port = int(re.search(r"127\.0\.0\.1:(\d+)", seen).group(1))  # type: ignore[union-attr]
        children = _wait_children(proc.pid, 4, 60)  # redis-server, fork server, 2 consumers
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()
    assert proc.returncode == 130, err
    assert "pcq: interrupted" in err and "Traceback" not in err, err
    assert not _port_open(port), "the throwaway redis-server survived Ctrl-C"
    _gone, alive = psutil.wait_procs(children, timeout=10)
    assert alive == [], f"left behind: {alive}"
    assert not (tmp_path / "rep" / "results.json").exists()
