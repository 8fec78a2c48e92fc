"""Faults survived in containers: consumer containers SIGKILLed at random, Redis paused.

Each test brings up its own compose project (the repository's compose file,
``tests/fixtures_docker.py``) and damages it through the Docker SDK. The ledger
is kept by the containers themselves, outside Redis: ``tests/compose-ledger.yml``
bind-mounts a host directory and turns on pcq's ``--ledger`` (core/ledger.py), so
the producer records each id Redis accepted and every consumer records
``id, consumer, delivery`` for each item it handled, before acknowledging it.
Dead letters come from Redis (read with ``redis-admin`` inside the Redis
container: its port is not reachable from the host).
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

import pytest
from audit import HANDLED, Audit
from chaos import chaos_rng
from fixtures_docker import ComposeProject, open_project
from redis_procs import wait_until

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

CONSUMERS = 3
# ~120 items/s with three consumers at PCQ_MAX_DELAY 0.05: the run outlasts 10 kills
# (at most 30 s of 1-3 s intervals) with a margin.
DOCKER_ITEMS = int(os.environ.get("PCQ_DOCKER_CHAOS_ITEMS", "5000"))
DOCKER_KILLS = int(os.environ.get("PCQ_CHAOS_KILLS", "10"))
QUEUE = "pcqtest"
PREFIX = f"pcq:{{{QUEUE}}}"
LEDGER_OVERRIDE = Path(__file__).with_name("compose-ledger.yml")


def redis_cli(project: ComposeProject, *args: str) -> list[str]:
    """Run ``redis-cli ARGS`` in the project's Redis container; its output lines."""
    (redis,) = project.containers("redis")
    result = redis.exec_run(["redis-admin", *args])
    assert result.exit_code == 0, result.output[-500:]
    return result.output.decode().splitlines()


def acked_count(project: ComposeProject, bits: str) -> int:
    """A run's acknowledged items, by its acked bitmap's key: bits set plus the acked set's
    members (pcq.core.redis_list.acked.acked_count, through redis-cli)."""
    try:
        return (int(redis_cli(project, "BITCOUNT", bits)[0])
                + int(redis_cli(project, "SCARD", bits.removesuffix(":bits") + ":acked")[0]))
    except (AssertionError, ValueError, IndexError):
        return -1  # Redis paused or restarting: no answer yet


def ledger_of(project: ComposeProject, run: str) -> Audit:
    """The containers' own ledger, plus the run's dead letters from Redis."""
    ledger = Audit(Path(project.env["PCQ_TEST_LEDGER"]))
    for dead in redis_cli(project, "SMEMBERS", f"{PREFIX}:run:{run}:dead"):
        if dead:
            ledger.dead_letter(dead, "dead-lettered")
    return ledger


def in_flight(project: ComposeProject) -> dict[str, int]:
    """Processing lists that still hold items."""
    keys = [k for k in redis_cli(project, "--scan", "--pattern", f"{PREFIX}:proc:*") if k]
    return {k: int(redis_cli(project, "LLEN", k)[0]) for k in keys
            if int(redis_cli(project, "LLEN", k)[0])}


@pytest.fixture
def project(docker_client: Any, docker_image: str, tmp_path: Path) -> Any:
    """A compose project of this test's own (it gets damaged), torn down after."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    ledger.chmod(0o777)  # the containers write as uid 10001
    with open_project(docker_client, (LEDGER_OVERRIDE,), PCQ_TEST_LEDGER=str(ledger),
                      PCQ_QUEUE=QUEUE, PCQ_BATCH="5", PCQ_MAX_DELAY="0.05",
                      PCQ_HEARTBEAT_TTL="3", PCQ_HIGH_WATER="1000") as proj:
        yield proj


def test_sigkill_random_consumer_containers(project: ComposeProject) -> None:
    consumers = project.up(CONSUMERS)
    producer = project.start_producer("--items", str(DOCKER_ITEMS), "--batch", "50",
                                      "--timeout", "300")
    rng = chaos_rng()
    kills: list[tuple[str, float]] = []
    started = time.monotonic()
    while len(kills) < DOCKER_KILLS:
        time.sleep(rng.uniform(1.0, 3.0))  # the chaos interval, not a synchronisation
        producer.reload()
        assert producer.status == "running", (
            f"the run ended after {len(kills)} kills:\n{producer.logs(tail=30).decode()}")
        victim = rng.choice(consumers)
        victim.kill()  # SIGKILL, like a crashed host process
        kills.append((victim.name, round(time.monotonic() - started, 1)))
        victim.start()  # what a restart policy does: same container, same hostname
    run = project.finish_producer(producer, timeout=300)

    tally = run.tally
    print(f"{len(kills)} kills {kills}; tally {tally}")
    assert run.exit_code == 0, run.stderr[-3000:]
    assert tally["produced"] == DOCKER_ITEMS and tally["lost"] == 0, tally
    report = ledger_of(project, tally["run"]).report()
    print(report.summary())
    assert report.produced == DOCKER_ITEMS
    report.assert_sound(duplicates_allowed=tally["redelivered"])
    assert report.dead == 0
    assert tally["redelivered"] >= 1, "no killed consumer held an item: the test proved nothing"
    assert in_flight(project) == {}
    assert redis_cli(project, "LLEN", f"{PREFIX}:queue") == ["0"]


def test_docker_pause_redis_15_s(project: ComposeProject) -> None:
    project.up(CONSUMERS)
    (redis,) = project.containers("redis")
    items = 1500
    producer = project.start_producer("--items", str(items), "--batch", "20", "--timeout", "300")
    acked = f"{PREFIX}:run:*"
    deadline = time.monotonic() + 60
    while not any(k.endswith(":bits") for k in redis_cli(project, "--scan", "--pattern", acked)):
        assert time.monotonic() < deadline, "nothing acknowledged within 60 s"
        time.sleep(0.2)
    (key,) = [k for k in redis_cli(project, "--scan", "--pattern", acked) if k.endswith(":bits")]
    before = acked_count(project, key)
    redis.pause()
    time.sleep(15)  # the outage being tested
    redis.unpause()
    back_from = time.monotonic()
    while acked_count(project, key) <= before:
        assert time.monotonic() - back_from < 30, "no progress 30 s after unpause"
        time.sleep(0.1)
    back = time.monotonic() - back_from
    run = project.finish_producer(producer, timeout=300)

    tally = run.tally
    print(f"progress {back:.1f}s after unpause; tally {tally}")
    assert back < 10.0, f"clients took {back:.1f}s to come back"
    assert run.exit_code == 0, run.stderr[-3000:]
    assert tally["produced"] == items and tally["lost"] == 0, tally
    report = ledger_of(project, tally["run"]).report()
    print(report.summary())
    assert report.produced == items
    report.assert_sound(duplicates_allowed=tally["redelivered"])
    assert in_flight(project) == {}
    for consumer in project.containers("consumer"):
        assert consumer.status == "running", consumer.logs(tail=20)


@pytest.fixture
def slow_project(docker_client: Any, docker_image: str, tmp_path: Path) -> Any:
    """Like ``project``, with the demo's work at 0-300 ms per item."""
    ledger = tmp_path / "ledger"
    ledger.mkdir()
    ledger.chmod(0o777)
    with open_project(docker_client, (LEDGER_OVERRIDE,), PCQ_TEST_LEDGER=str(ledger),
                      PCQ_QUEUE=QUEUE, PCQ_BATCH="5", PCQ_MAX_DELAY="0.3",
                      PCQ_HEARTBEAT_TTL="3", PCQ_HIGH_WATER="1000") as proj:
        yield proj


def test_docker_pause_a_consumer_past_its_heartbeat(slow_project: ComposeProject) -> None:
    # Fencing (core/redis_list/lease.py): the paused consumer's batch is reaped and
    # handled by the others; once unpaused it handles none of it, at most the
    # item that was in hand when the pause began.
    project = slow_project
    victim, *_ = project.up(CONSUMERS)
    producer = project.start_producer("--items", "300", "--batch", "20", "--timeout", "300")
    ledger = Audit(Path(project.env["PCQ_TEST_LEDGER"]))

    def rows() -> list[list[str]]:
        return ledger.rows(HANDLED)

    wait_until(lambda: sum(r[1].startswith(victim.id[:12]) for r in rows()) >= 3, 60,
               "the victim under way")
    victim.pause()
    paused = time.monotonic()
    try:
        wait_until(
            lambda: int((redis_cli(project, "HGET", f"{PREFIX}:stats", "reaped") or ["0"])[0] or 0) >= 1,
            60, "the paused consumer reaped")
        wait_until(lambda: any(r[2] != "1" for r in rows()), 60, "its items handled elsewhere")
    finally:
        victim.unpause()
    pause = time.monotonic() - paused
    run = project.finish_producer(producer, timeout=300)

    tally = run.tally
    report = ledger_of(project, tally["run"]).report()
    print(f"paused {pause:.1f}s; {report.summary()}; tally {tally}")
    assert run.exit_code == 0, run.stderr[-3000:]
    assert tally["produced"] == 300 and tally["lost"] == 0 and tally["redelivered"] >= 1, tally
    report.assert_sound(duplicates_allowed=1)  # at most the item in hand
    assert b"lost its lease" in victim.logs(), victim.logs(tail=20)
