"""RQ mode in real containers: ``docker compose --profile rq`` as users run it.

A compose project of its own (``pcq-rqtest-<hex>``): Redis and two stock
``rq worker`` containers (``--scale rq-worker=2``); each test runs its own
``pcq produce --via rq --json`` in a one-off ``rq-producer`` container and
checks the tally it reads back from RQ's registries and the ledger. The
rq-dashboard profile is checked for its loopback-only port. Skips without a Docker
engine unless ``PCQ_REQUIRE_DOCKER=1``.
"""

from __future__ import annotations

import json
import secrets
import time
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from fixtures_docker import (
    BUILD_TIMEOUT,
    UP_AND_WAIT,
    UP_TIMEOUT,
    ComposeProject,
    Produced,
    admin_password,
    log_count,
    project_env,
    wait_for_log,
)
from fixtures_redis import free_port

pytestmark = [pytest.mark.docker, pytest.mark.timeout(900)]

WORKERS = 2
PRODUCE_TIMEOUT = 240.0


class RqProject(ComposeProject):
    """The compose project with the ``rq`` (and ``rq-dashboard``) profiles on."""

    def rq(self, *args: str, timeout: float = 120.0, check: bool = True) -> Any:
        return self.compose(
            "--profile", "rq", "--profile", "rq-dashboard", *args, timeout=timeout, check=check
        )

    def up_workers(self, workers: int = WORKERS) -> list[Any]:
        self.rq(*UP_AND_WAIT, "--scale", f"rq-worker={workers}", "redis", "rq-worker",
                timeout=UP_TIMEOUT + 30)
        running = self.containers("rq-worker")
        assert len(running) == workers, running
        return running

    def start_rq_producer(self, *args: str) -> Any:
        self._runs += 1
        name = f"{self.name}-rq-producer-run{self._runs}"
        self.rq(
            "run",
            "--detach",
            "--no-deps",
            "--name",
            name,
            "rq-producer",
            "pcq",
            "produce",
            "--via",
            "rq",
            "--json",
            "--timeout",
            "200",
            *args,
        )
        return self.client.containers.get(name)


@pytest.fixture(scope="module")
def rq_project(docker_client: Any, docker_image: str) -> Iterator[RqProject]:
    """Redis and two RQ workers on the session's image (plus the dashboard's own image)."""
    env = project_env(
        PCQ_QUEUE="pcqrq",
        PCQ_BATCH="1",
        # Each job spends 0.3 to 0.5 s in the handler, so a kill sent once its
        # "got" line shows lands mid-job (with no floor, a job drawn short could
        # finish before the kill, and nothing would be redelivered).
        PCQ_MIN_DELAY="0.3",
        PCQ_MAX_DELAY="0.5",
        PCQ_MAX_DELIVERIES="3",
        PCQ_RQ_DASHBOARD_PORT=str(free_port()),
    )
    project = RqProject(
        f"pcq-rqtest-{secrets.token_hex(4)}", docker_client, admin_password(env), env
    )
    try:
        project.rq("build", "rq-dashboard", timeout=BUILD_TIMEOUT)
        project.up_workers()
        yield project
    finally:
        project.rq(
            "down", "--volumes", "--remove-orphans", "--timeout", "5", timeout=120, check=False
        )


def share_of(tally: dict[str, Any], container: Any) -> int:
    """Jobs the tally credits to ``container`` (RQ worker names are ``<hostname>.<pid>.<hex>``)."""
    host = container.attrs["Config"]["Hostname"]
    return sum(n for who, n in tally["per_consumer"].items() if who.startswith(f"{host}."))


def assert_exact(tally: dict[str, Any], items: int) -> None:
    assert tally["via"] == "rq" and tally["complete"] is True, tally
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (items, items, 0), tally
    assert tally["dead_letters"] == 0, tally
    assert sum(tally["per_consumer"].values()) == items + tally["duplicates"], tally


def test_scale_two_rq_workers_share_the_jobs(rq_project: RqProject) -> None:
    workers = rq_project.up_workers()
    run = rq_project.finish_producer(rq_project.start_rq_producer("--items", "30"), PRODUCE_TIMEOUT)
    assert run.exit_code == 0, run.stderr
    assert_exact(run.tally, 30)
    shares = {w.name: share_of(run.tally, w) for w in workers}
    assert all(n > 0 for n in shares.values()), (shares, run.tally)
    assert sum(shares.values()) == 30 + run.tally["duplicates"]
    # The demo lines show which container ran which job.
    assert all(" got " in w.logs().decode(errors="replace") for w in workers)


def test_docker_kill_rq_worker_mid_run_its_job_runs_again(rq_project: RqProject) -> None:
    victim, survivor = rq_project.up_workers()
    before = log_count(victim, " got ")
    producer = rq_project.start_rq_producer("--items", "30")
    wait_for_log(victim, " got ", timeout=60, more_than=before)
    victim.kill()  # SIGKILL, mid-job: RQ must notice through the heartbeat
    killed_at = time.monotonic()

    run: Produced = rq_project.finish_producer(producer, PRODUCE_TIMEOUT)
    took = time.monotonic() - killed_at
    assert run.exit_code == 0, run.stderr
    assert_exact(run.tally, 30)
    assert run.tally["redelivered"] >= 1, run.tally  # the killed job was retried
    assert share_of(run.tally, survivor) > 0
    print(f"RQ run done {took:.1f}s after the kill; tally {run.tally}")
    rq_project.up_workers()


def test_rq_info_lists_queue_and_workers(rq_project: RqProject) -> None:
    workers = rq_project.up_workers()
    out = workers[0].exec_run(["rq", "info", "--serializer", "json"])
    text = out.output.decode(errors="replace")
    assert out.exit_code == 0, text
    assert "pcqrq" in text
    for worker in workers:
        assert f"{worker.attrs['Config']['Hostname']}." in text, text


def test_rq_worker_runs_hardened(rq_project: RqProject) -> None:
    (worker, *_) = rq_project.up_workers()
    attrs, host = worker.attrs, worker.attrs["HostConfig"]
    assert worker.exec_run(["id", "-u"]).output.strip() == b"10001"
    assert worker.exec_run(["touch", "/app/x"]).exit_code != 0
    assert host["ReadonlyRootfs"] is True
    assert host["CapDrop"] == ["ALL"] and not host["CapAdd"]
    assert "no-new-privileges:true" in (host["SecurityOpt"] or [])
    assert host["Init"] is True and not host["PortBindings"]
    assert attrs["State"]["Health"]["Status"] == "healthy"


def test_dashboard_listens_on_loopback_only(rq_project: RqProject) -> None:
    rq_project.up_workers()
    rq_project.rq(*UP_AND_WAIT, "rq-dashboard", timeout=UP_TIMEOUT + 30)
    (dash,) = rq_project.containers("rq-dashboard")
    bindings = dash.attrs["HostConfig"]["PortBindings"]["9181/tcp"]
    assert [b["HostIp"] for b in bindings] == ["127.0.0.1"], bindings
    port = int(bindings[0]["HostPort"])
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/0/data/queues.json", timeout=10) as r:
        queues = json.load(r)["queues"]
    assert "pcqrq" in [q["name"] for q in queues], queues
    assert dash.exec_run(["id", "-u"]).output.strip() == b"10001"
    rq_project.rq("stop", "rq-dashboard", timeout=60)
