"""The consumer's health file and the container healthcheck's shell test (issue 14), on the host.

Healthy means "this consumer's heartbeat is alive in Redis": the heartbeat
thread sets the file's mtime to the expiry of each heartbeat Redis
acknowledged (core/redis_list/health.py), and the compose healthcheck is one
``sh -c 'test -n "$(find FILE -newermt now)"'``. These tests run that exact
command (read from docker-compose.yml) against real consumer processes and a
real redis-server; the container's own health state is tests/test_docker.py's.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import time
from pathlib import Path

from fixtures_redis import RedisServer
from redis_procs import env_for, processes, wait_until

from pcq.core.redis_common.settings import DEFAULT_HEALTH_FILE
from pcq.core.redis_list.health import HEALTHCHECK_SHELL, HealthFile, read_health

REPO = Path(__file__).resolve().parent.parent
TTL = 2.0  # heartbeat TTL of the consumer processes here: beats every 0.4 s


def compose_healthcheck() -> list[str]:
    """The consumer service's healthcheck ``test`` as written in docker-compose.yml (``$$`` unescaped)."""
    text = (REPO / "docker-compose.yml").read_text()
    consumer = text[text.index("\n  consumer:\n"):text.index("\n  producer:\n")]
    match = re.search(r"^      test: (\[.*\])$", consumer, re.MULTILINE)
    assert match, "no one-line healthcheck test in the consumer service"
    test: list[str] = [arg.replace("$$", "$") for arg in json.loads(match.group(1))]
    return test


def shell_check(path: Path, tmp_path: Path) -> tuple[int, list[str]]:
    """Run the compose healthcheck as Docker does (``/bin/sh -c``); (exit code, interpreters started).

    ``python``, ``python3`` and ``pcq`` earlier on PATH are stand-ins that
    record being started (and fail), so a check that needs Python shows.
    """
    kind, command = compose_healthcheck()
    assert kind == "CMD-SHELL"
    shims, started = tmp_path / "shims", tmp_path / "started"
    shims.mkdir(exist_ok=True)
    for name in ("python", "python3", "pcq"):
        shim = shims / name
        shim.write_text(f"#!/bin/sh\necho {name} >> {started}\nexit 3\n")
        shim.chmod(0o755)
    env = {"PATH": f"{shims}:/usr/bin:/bin", "PCQ_HEALTH_FILE": str(path)}
    proc = subprocess.run(["/bin/sh", "-c", command], env=env, capture_output=True, timeout=30,
                          check=False)  # fmt: skip
    return proc.returncode, started.read_text().split() if started.exists() else []


def test_compose_healthcheck_is_the_documented_shell_test() -> None:
    assert compose_healthcheck() == ["CMD-SHELL", HEALTHCHECK_SHELL]
    assert DEFAULT_HEALTH_FILE.startswith("/tmp/") and DEFAULT_HEALTH_FILE in HEALTHCHECK_SHELL


def test_check_starts_no_python_and_follows_the_files_expiry(tmp_path: Path) -> None:
    path = tmp_path / "alive"
    assert shell_check(path, tmp_path) == (1, [])  # no file: nobody vouches
    health = HealthFile(str(path), ttl=5.0)
    health.acknowledged(time.time())
    assert shell_check(path, tmp_path) == (0, [])
    assert read_health(str(path))[0]
    health.acknowledged(time.time() - 5.5)  # the last acknowledged beat has expired
    assert shell_check(path, tmp_path) == (1, [])
    healthy, why = read_health(str(path))
    assert not healthy and why.startswith("unhealthy: last heartbeat expired")
    health.acknowledged(time.time())
    health.stopped()  # SIGTERM / Redis given up: stale at once
    assert shell_check(path, tmp_path) == (1, [])
    assert health.errors == 0


def test_a_health_file_that_cannot_be_written_counts_and_never_raises(tmp_path: Path) -> None:
    health = HealthFile(str(tmp_path / "missing-dir" / "alive"), ttl=5.0)
    health.acknowledged(time.time())
    health.stopped()
    assert health.errors == 2
    assert not read_health(str(tmp_path / "missing-dir" / "alive"))[0]


def test_healthy_while_the_heartbeat_lives_unhealthy_when_it_stops_or_redis_goes(
    tmp_path: Path, fresh_redis_server: RedisServer
) -> None:
    path = tmp_path / "alive"
    settings = fresh_redis_server.settings(heartbeat_ttl=TTL)
    env = env_for(settings, PCQ_HEALTH_FILE=str(path), PCQ_REDIS_RETRIES="30")

    def check() -> int:
        code, started = shell_check(path, tmp_path)
        assert started == []
        return code

    with processes(tmp_path) as start:
        before = start("consumer", "healthcheck", env=env)  # python -m pcq.consumer healthcheck
        assert before.wait(30) == 1 and "unhealthy: no heartbeat recorded" in before.stderr
        service = start("consumer", "--quiet", env=env)
        wait_until(lambda: check() == 0, 30, "healthy")
        human = start("consumer", "--check", env=env)
        assert human.wait(30) == 0 and "healthy: heartbeat acknowledged by Redis" in human.stdout

        service.signal(signal.SIGSTOP)  # the heartbeat stops (a pause, a stuck process)
        try:
            stopped_at = time.monotonic()
            wait_until(lambda: check() == 1, TTL + 5, "unhealthy while paused")
            assert time.monotonic() - stopped_at <= TTL + 5
        finally:
            service.signal(signal.SIGCONT)
        wait_until(lambda: check() == 0, 30, "healthy again after SIGCONT")

        fresh_redis_server.kill()  # Redis unreachable: beats fail, the file is left to expire
        try:
            wait_until(lambda: check() == 1, TTL + 5, "unhealthy without Redis")
            after = start("consumer", "--check", env=env)
            assert after.wait(30) == 1 and "unhealthy" in after.stderr
        finally:
            fresh_redis_server.restart()
        wait_until(lambda: check() == 0, 60, "healthy once Redis is back")

        service.signal(signal.SIGTERM)  # orderly exit: stale at once, not after a TTL
        assert service.wait(30) == 0, service.stderr
        assert check() == 1


def test_check_needs_a_health_file(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PCQ_", "REDIS_"))}
    env["PCQ_HEALTH_FILE"] = "relative/alive"
    with processes(tmp_path) as start:
        proc = start("consumer", "--check", env=env)
        assert proc.wait(30) == 2
    assert "health file must be an absolute path" in proc.stderr and "Traceback" not in proc.stderr
