"""docker-stack.yml on a one-node swarm (this engine): deploy, scale, a consumer task killed.

The engine is a swarm manager only while this module runs (``swarm-nodes up 0``,
then ``down``). Judged by the consumers' own ledger files (tests/stack-ledger.yml,
tests/audit.py), as the compose chaos tests are. Also checks, on a running stack,
that no container shows a password in ``docker inspect`` or ``ps``, and runs the
producer once as the swarm job of docker-stack.producer.yml.
"""

from __future__ import annotations

import re
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_docker import REPO
from fixtures_swarm import STACK_FILES, Stack, sh, swarm
from no_secrets import exposed, passwords

pytestmark = [pytest.mark.docker, pytest.mark.timeout(400)]

ITEMS = 1200


@pytest.fixture(scope="module")
def stack(docker_client: Any, docker_image: str) -> Iterator[Stack]:
    with swarm(0) as nodes:
        deployed = Stack(docker_client, nodes, PCQ_CONSUMERS="3")
        try:
            took = deployed.deploy()
            print(f"deploy -> 3 consumers healthy: {took:.1f}s")
            yield deployed
        finally:
            deployed.remove()


def test_scale_up_and_down(stack: Stack) -> None:
    up = stack.scale(5)
    since = int(time.time())
    sh("docker", "service", "scale", "--detach", f"{stack.name}_consumer=2")
    started = time.monotonic()
    while len(stack.containers("consumer")) != 2:  # the scaled-away containers have exited
        assert time.monotonic() - started < 60, stack.tasks()
        time.sleep(0.2)
    down = time.monotonic() - started
    print(f"scale 3->5: {up:.1f}s (running, healthy), 5->2: {down:.1f}s (containers exited)")
    # Consumers scaled away exited on SIGTERM (0), not killed at the grace period.
    exits = sh("docker", "events", "--since", str(since), "--until", str(int(time.time()) + 1),
               "--filter", f"label=com.docker.swarm.service.name={stack.name}_consumer",
               "--filter", "event=die", "--format", "{{.Actor.Attributes.exitCode}}").split()
    assert exits == ["0", "0", "0"], exits
    stack.scale(3)


def test_consumer_task_killed_mid_run_lost_0(stack: Stack) -> None:
    producer = stack.start_producer("--items", str(ITEMS), "--batch", "20", "--timeout", "240")
    stack.wait_progress(200)
    victim = stack.containers("consumer")[0]
    stack.note_containers()
    victim.kill()  # SIGKILL: swarm's restart policy starts a new task
    run = stack.finish_producer(producer, timeout=240)
    tally = run.tally
    print(f"tally {tally}")
    assert run.exit_code == 0, run.stderr[-3000:]
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (ITEMS, ITEMS, 0), tally
    assert sum(tally["per_consumer"].values()) == ITEMS + tally["duplicates"], tally
    assert tally["redelivered"] >= 1, "the killed consumer held nothing: the test proved nothing"
    report = stack.audit(tally["run"]).report()
    print(report.summary())
    assert report.produced == ITEMS and report.dead == 0
    report.assert_sound(duplicates_allowed=tally["redelivered"])
    assert victim.id[:12] in {c.split(":")[0] for c in report.per_consumer}, report.per_consumer
    stack.wait_consumers(3, timeout=90)  # swarm replaced the killed task


def test_no_password_in_docker_inspect_or_ps(stack: Stack) -> None:
    secrets = passwords(stack.secrets)
    producer = stack.start_producer("--items", "100", "--timeout", "120")
    try:
        containers = [*stack.containers("redis"), *stack.containers("consumer"), producer]
        found = [where for c in containers for where in exposed(c, secrets)]
    finally:
        run = stack.finish_producer(producer)
    assert run.exit_code == 0 and run.tally["lost"] == 0, run.stderr[-2000:]
    assert len(containers) == 5, containers
    assert found == [], found


def test_producer_as_a_replicated_job(stack: Stack) -> None:
    """docker-stack.producer.yml: the producer runs once, to the end, as a swarm job."""
    files = [arg for path in (*STACK_FILES, REPO / "docker-stack.producer.yml")
             for arg in ("-c", str(path))]
    sh("docker", "stack", "deploy", "--resolve-image", "never", *files, stack.name,
       env=dict(stack.env, PCQ_ITEMS="60"), timeout=180)
    deadline = time.monotonic() + 180
    while True:
        states = [t["Status"]["State"] for t in stack.service("producer").tasks()]
        if "complete" in states:
            break
        assert not {"failed", "rejected"} & set(states), states
        assert time.monotonic() < deadline, f"the producer job did not complete: {states}"
        time.sleep(0.5)
    logs = sh("docker", "service", "logs", "--raw", f"{stack.name}_producer")
    print(logs[-600:])
    assert re.search(r"│ produced\s+│\s+60 │", logs), logs[-2000:]
    assert re.search(r"│ lost\s+│\s+0 │", logs), logs[-2000:]
