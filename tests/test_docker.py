"""The distributed demo in real containers: docker-compose.yml as users run it.

One compose project per session (see ``tests/fixtures_docker.py``): Redis and
three consumers stay up; each test runs its own producer (its own run id, so
its tally counts its own items only). Tests that kill or stop a consumer bring
the set back to three before they return.
"""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import time
from typing import Any

import pytest
from fixtures_docker import (
    COMPOSE_FILE,
    CONSUMERS,
    REPO,
    STOP_GRACE,
    UP_TIMEOUT,
    ComposeProject,
    docker_unavailable,
    log_count,
    open_project,
    wait_for_log,
)

pytestmark = [pytest.mark.docker, pytest.mark.timeout(600)]

HARDENED_SERVICES = ("producer", "consumer", "redis")


def assert_exact(tally: dict[str, Any], items: int) -> None:
    """Every item produced was consumed exactly once: nothing lost, nothing extra."""
    assert tally["produced"] == items, tally
    assert tally["consumed"] == items, tally
    assert tally["lost"] == 0, tally
    assert tally["dead_letters"] == 0, tally
    assert sum(tally["per_consumer"].values()) == items + tally["duplicates"], tally


def consumer_of(tally: dict[str, Any], container: Any) -> int:
    """Items the tally credits to ``container`` (consumer ids carry the hostname)."""
    host = container.attrs["Config"]["Hostname"]
    return sum(n for who, n in tally["per_consumer"].items() if host in who)


def redis_answers(host: str, port: int, password: str, timeout: float = 2.0) -> bytes:
    """What a Redis at ``host:port`` says to ``AUTH password`` (b"" if nothing)."""
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.sendall(f"AUTH {password}\r\n".encode())
            return sock.recv(64)
    except OSError:  # refused, unreachable or timed out: nothing answered
        return b""


def test_readme_command_spreads_items_and_ends_with_the_tally(
    docker_client: Any, docker_image: str,
) -> None:
    """`docker compose up --build --scale consumer=3 --exit-code-from producer`, as in README.

    (Without `--build`: the session's image is already built.) The run must end
    by itself, with the producer's exit code and its human-readable tally.
    """
    items = 30
    with open_project(docker_client, PCQ_ITEMS=str(items)) as project:
        run = project.compose(
            "up", "--no-build", "--no-color", "--scale", f"consumer={CONSUMERS}",
            "--exit-code-from", "producer", timeout=UP_TIMEOUT + 120,
        )
    out = run.stdout
    got = re.findall(r"^consumer-(\d+)\s*\|\s*\[\w+\] \d+ got ", out, re.MULTILINE)
    assert len(got) == items, out
    assert sorted(set(got)) == [str(n) for n in range(1, CONSUMERS + 1)], out

    def row(label: str) -> int:
        found = re.search(rf"^producer-1\s*\|\s*\W\s*{label}\s*\W\s*(\d+)\s*\W", out, re.MULTILINE)
        assert found, f"no {label!r} row in the tally:\n{out}"
        return int(found.group(1))

    assert (row("produced"), row("consumed"), row("lost")) == (items, items, 0), out
    assert run.returncode == 0 and "producer-1 exited with code 0" in out, out


def test_scale_three_consumers_spreads_items_and_tally_is_exact(
    compose_project: ComposeProject,
) -> None:
    consumers = compose_project.up(CONSUMERS)
    run = compose_project.produce("--items", "60")

    assert run.exit_code == 0, run.stderr
    assert_exact(run.tally, 60)
    shares = {c.name: consumer_of(run.tally, c) for c in consumers}
    assert all(n > 0 for n in shares.values()), (shares, run.tally)
    assert sum(shares.values()) == 60 + run.tally["duplicates"], (shares, run.tally)


def test_docker_kill_consumer_mid_run_loses_nothing(compose_project: ComposeProject) -> None:
    consumers = compose_project.up(CONSUMERS)
    victim = consumers[0]
    items = 90
    before = log_count(victim, " got ")
    producer = compose_project.start_producer("--items", str(items))
    # The victim is busy with this run (two items of it handled, more in hand).
    wait_for_log(victim, " got ", timeout=60, more_than=before + 1)
    victim.kill()  # SIGKILL: no chance to hand anything back
    killed_at = time.monotonic()

    run = compose_project.finish_producer(producer)
    recovered_in = time.monotonic() - killed_at

    assert run.exit_code == 0, run.stderr
    assert_exact(run.tally, items)
    # It held items when it died; the reaper put them back for the others.
    assert run.tally["redelivered"] >= 1, run.tally
    victim.reload()
    assert victim.status == "exited"
    print(f"producer done {recovered_in:.1f}s after the kill; tally {run.tally}")
    compose_project.up(CONSUMERS)


def test_docker_stop_consumer_exits_zero_within_grace(compose_project: ComposeProject) -> None:
    consumers = compose_project.up(CONSUMERS)
    victim = consumers[-1]
    grace = STOP_GRACE
    items = 60
    before = log_count(victim, " got ")
    producer = compose_project.start_producer("--items", str(items))
    wait_for_log(victim, " got ", timeout=60, more_than=before + 1)
    started = time.monotonic()
    victim.stop(timeout=grace)  # SIGTERM, then SIGKILL after the grace period
    took = time.monotonic() - started

    state = victim.wait(timeout=30)
    run = compose_project.finish_producer(producer)

    assert state["StatusCode"] == 0, victim.logs(tail=20)
    assert took < grace, f"stop took {took:.1f}s, grace is {grace}s"
    assert run.exit_code == 0, run.stderr
    assert_exact(run.tally, items)
    print(f"docker stop took {took:.2f}s; tally {run.tally}")
    compose_project.up(CONSUMERS)


def test_redis_port_is_not_reachable_from_the_host(compose_project: ComposeProject) -> None:
    compose_project.up(CONSUMERS)
    (redis,) = compose_project.containers("redis")
    assert not redis.attrs["HostConfig"]["PortBindings"], "redis publishes a port"
    addresses = [n["IPAddress"] for n in redis.attrs["NetworkSettings"]["Networks"].values()]
    assert addresses and all(addresses), addresses

    # Positive control: from a consumer on the same network the probe works.
    (consumer, *_) = compose_project.containers("consumer")
    probe = (
        "import socket; s = socket.create_connection(('redis', 6379), 5); "
        f"s.sendall(b'AUTH admin {compose_project.password}\\r\\n'); print(s.recv(64))"
    )
    inside = consumer.exec_run(["python", "-c", probe])
    assert b"+OK" in inside.output, inside.output

    # From the host: neither the loopback port nor the container's own address.
    assert not redis_answers("127.0.0.1", 6379, compose_project.password).startswith(b"+OK")
    for address in addresses:
        reply = redis_answers(address, 6379, compose_project.password)
        # Something else on the route (a proxy) may answer; Redis (RESP) must not.
        assert not reply.startswith((b"+", b"-")), (address, reply)


@pytest.mark.parametrize("service", HARDENED_SERVICES)
def test_containers_run_hardened(compose_project: ComposeProject, service: str) -> None:
    compose_project.up(CONSUMERS)
    if service == "producer":
        container = compose_project.start_producer("--items", "1")
        try:
            container.reload()
            attrs = container.attrs
        finally:
            run = compose_project.finish_producer(container)
        assert_exact(run.tally, 1)
    else:
        container = compose_project.containers(service)[0]
        attrs = container.attrs
        uid = b"999" if service == "redis" else b"10001"
        # Live checks: the process really runs unprivileged on a read-only root.
        assert container.exec_run(["id", "-u"]).output.strip() == uid
        assert container.exec_run(["touch", "/x"]).exit_code != 0
        writable = "/data/probe" if service == "redis" else "/tmp/probe"
        assert container.exec_run(["touch", writable]).exit_code == 0
        container.exec_run(["rm", "-f", writable])
        # Every process of the container (init, the service, exec'd ones): not root.
        table = container.top(ps_args="-o pid,uid,comm")
        column = table["Titles"].index("UID")
        uids = {row[column] for row in table["Processes"]}
        assert uids == {uid.decode()}, table

    host = attrs["HostConfig"]
    assert attrs["Config"]["User"] not in ("", "0", "root") and not attrs["Config"][
        "User"].startswith(("0:", "root")), attrs["Config"]["User"]
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in (host["SecurityOpt"] or [])
    assert host["Init"] is True
    assert not host["PortBindings"]


# Static checks of the compose file: they need only the `docker compose` CLI,
# not a running engine, and catch a knob dropped by a later edit.


def compose_config() -> dict[str, Any]:
    """``docker compose config`` of the repository's file, all profiles, as JSON.

    With the defaults only: no ``.env`` file, no ``PCQ_*`` from the caller.
    """
    env = {k: v for k, v in os.environ.items() if k in ("PATH", "HOME", "DOCKER_HOST",
                                                          "DOCKER_CONFIG")}
    try:
        proc = subprocess.run(
            ["docker", "compose", "-f", str(COMPOSE_FILE), "--env-file", os.devnull,
             "--profile", "*", "config", "--format", "json"],
            cwd=COMPOSE_FILE.parent, env=env, capture_output=True, text=True, timeout=60,
            check=False,
        )
    except FileNotFoundError:
        docker_unavailable("the `docker` command is not on PATH")
    if proc.returncode != 0:
        docker_unavailable(f"`docker compose config` failed: {proc.stderr.strip()[-300:]}")
    config: dict[str, Any] = json.loads(proc.stdout)
    return config


def test_env_example_documents_every_compose_variable() -> None:
    used = set(re.findall(r"\$\{([A-Z_][A-Z0-9_]*)", COMPOSE_FILE.read_text()))
    documented = set(re.findall(r"^([A-Z_][A-Z0-9_]*)=", (REPO / ".env.example").read_text(),
                                re.MULTILINE))
    assert used, "no ${VAR} in docker-compose.yml?"
    assert sorted(used - documented) == [], "add them to .env.example"
    assert sorted(documented - used) == [], "stale in .env.example"
    assert not re.search(r"^version\s*:", COMPOSE_FILE.read_text(), re.MULTILINE)


def test_compose_file_keeps_its_guarantees() -> None:
    config = compose_config()
    services = config["services"]
    assert "version" not in config
    backend = config["networks"]["backend"]
    assert backend.get("internal") is True
    assert backend["driver_opts"]["com.docker.network.bridge.inhibit_ipv4"] == "true"
    assert not services["redis"].get("ports"), "Redis must not publish its port"
    assert services["redis"]["networks"].keys() == {"backend"}
    consumer = services["consumer"]
    # Scalable: nothing that two replicas could not share.
    assert not consumer.get("container_name") and not consumer.get("ports")
    # The health file's shell test, no Python (tests/test_health.py runs it).
    assert consumer["healthcheck"]["test"][0] == "CMD-SHELL"
    assert "python" not in consumer["healthcheck"]["test"][1]
    assert consumer["environment"]["PCQ_HEALTH_FILE"].startswith("/tmp/")
    assert consumer["scale"] == 3
    for name in ("producer", "consumer", "redis"):
        service = services[name]
        assert service["init"] is True and service["read_only"] is True, name
        assert service["cap_drop"] == ["ALL"], name
        assert "no-new-privileges:true" in service["security_opt"], name
        assert service["user"] not in ("", "0", "root") and not service["user"].startswith("0:")
    assert services["producer"]["depends_on"]["consumer"]["condition"] == "service_healthy"
    # Consumers retry until Redis answers; they need not wait for its first check.
    assert consumer["depends_on"]["redis"]["condition"] == "service_started"
    # The grace period covers one batch of the slowest handler, with a margin.
    grace = float(consumer["stop_grace_period"].rstrip("s"))
    env = consumer["environment"]
    assert grace > 2 * int(env["PCQ_BATCH"]) * float(env["PCQ_MAX_DELAY"])


def _seconds(duration: str) -> float:
    """A compose duration as `docker compose config` prints it (``15s``, ``1m30s``)."""
    parts = re.fullmatch(r"(?:(\d+)m)?(?:(\d+(?:\.\d+)?)s)?", duration)
    assert parts and duration, duration
    return 60 * float(parts[1] or 0) + float(parts[2] or 0)


def test_idle_stack_healthchecks_fit_the_idle_budget() -> None:
    # Every healthcheck is a `docker exec`, ~70 ms of CPU machine-wide whatever
    # the command, over an idle base of ~0.02 cores (docs/benchmarks.md, "Lean
    # consumers"): eight idle consumers plus Redis may start at most 0.45 a
    # second, or the stack goes over issue 14's budget of 0.05 cores.
    services = compose_config()["services"]
    rate = 8 / _seconds(services["consumer"]["healthcheck"]["interval"])
    rate += 1 / _seconds(services["redis"]["healthcheck"]["interval"])
    assert rate <= 0.45, f"{rate:.2f} healthcheck execs/s with 8 consumers"
