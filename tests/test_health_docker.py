"""The consumer container's health state follows its heartbeat in Redis (issue 14).

The healthcheck is a shell test of the health file (core/redis_list/health.py;
the file logic itself is tests/test_health.py's, on the host). Here, in a
compose project of its own (``pcq-test-<hex>``): the consumer turns healthy,
its check fails once Redis is unreachable (``docker pause`` of the Redis
container: the heartbeat's write hangs, the file goes stale), the container is
reported unhealthy, and healthy again once Redis is back.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import pytest
from fixtures_docker import open_project

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

TTL = 2  # PCQ_HEARTBEAT_TTL here: the file is stale 2 s after the last acknowledged beat
INTERVAL = 2  # PCQ_HEALTH_INTERVAL here (default 10 s): a shorter test


def health(container: Any) -> dict[str, Any]:
    """``State.Health`` of a container, fresh from the engine."""
    container.reload()
    state: dict[str, Any] = container.attrs["State"]["Health"]
    return state


def wait_for(what: str, predicate: Callable[[], bool], timeout: float) -> float:
    """Poll until ``predicate()``; return the seconds it took."""
    started = time.monotonic()
    while not predicate():
        if time.monotonic() - started > timeout:
            raise AssertionError(f"not {what} after {timeout}s")
        time.sleep(0.5)  # polling the engine, bounded by the timeout
    return time.monotonic() - started


def checks_since(container: Any, since: str) -> list[int]:
    """Exit codes of the healthchecks that started after ``since`` (engine timestamps)."""
    return [entry["ExitCode"] for entry in health(container)["Log"] if entry["Start"] > since]


def test_consumer_health_follows_its_heartbeat_in_redis(docker_client: Any, docker_image: str) -> None:
    with open_project(docker_client, PCQ_HEARTBEAT_TTL=str(TTL),
                      PCQ_HEALTH_INTERVAL=f"{INTERVAL}s") as project:
        (consumer,) = project.up(1)  # `up --wait`: healthy, or it fails
        assert health(consumer)["Status"] == "healthy"
        config = consumer.attrs["Config"]["Healthcheck"]
        assert config["Test"][0] == "CMD-SHELL" and config["Interval"] == INTERVAL * 10**9
        (redis,) = project.containers("redis")

        redis.pause()  # Redis unreachable: the heartbeat's write hangs, nothing is acknowledged
        try:
            paused_at = health(consumer)["Log"][-1]["Start"]
            # The next check after the file went stale fails: within TTL + one interval.
            took = wait_for("a failed check", lambda: 1 in checks_since(consumer, paused_at),
                            TTL + 2 * INTERVAL + 10)  # fmt: skip
            # retries: 3 consecutive failures make the container unhealthy.
            wait_for("unhealthy", lambda: health(consumer)["Status"] == "unhealthy", 4 * INTERVAL + 20)
        finally:
            redis.unpause()
        print(f"first failed check {took:.1f}s after docker pause redis")
        resumed_at = health(consumer)["Log"][-1]["Start"]
        wait_for("healthy again", lambda: health(consumer)["Status"] == "healthy", 2 * INTERVAL + 30)
        assert 0 in checks_since(consumer, resumed_at)
