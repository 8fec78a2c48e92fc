"""RQ mode against a real redis-server and stock ``rq worker`` processes.

Every test checks the books (the handled set in Redis, RQ's registries), not logs;
worker output is only used as the *event* to wait for. Each test has a queue
name of its own on the session's shared server.
"""

from __future__ import annotations

import inspect
import json
import os
import re
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from fixtures_redis import RedisServer
from hostile import Bomb
from rq import Callback, Queue, Retry
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq_helpers import FAST_REAP, FAST_REAP_ENV, RQ, Worker, worker_argv, worker_env

from pcq.core.console import Console
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import encode
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.rq_jobs.jobs import HANDLER, LEGACY_HANDLERS, AllowlistJob
from pcq.core.rq_jobs.producer import (
    RqOptions,
    enqueue,
    job_ids,
    open_queue,
    produce_rq,
    read_tally,
)
from pcq.core.transport import Item

NAMES = ["Master Shake", "Meatwad", "Frylock", "Carl", "Rick", "Morty", "Jerry", "Summer"]
pytestmark = pytest.mark.timeout(120)


@pytest.fixture()
def settings(redis_server: RedisServer) -> RedisSettings:
    """Settings with a queue of this test's own; 3 deliveries = Retry(max=2)."""
    return redis_server.settings(queue="rq-" + uuid.uuid4().hex[:10], max_deliveries=3)


@pytest.fixture()
def conn(redis_server: RedisServer) -> Iterator[redis.Redis]:
    client = redis_server.client()
    yield client
    client.close()


@pytest.fixture()
def workers() -> Iterator[list[Worker]]:
    started: list[Worker] = []
    yield started
    for worker in started:
        worker.close()


def make_items(run: str, n: int, first: str | None = None) -> list[Item]:
    now = time.time()
    bodies = [NAMES[k % len(NAMES)] for k in range(n)]
    if first is not None:
        bodies[0] = first
    return [Item(f"{run}:{k}", body, now) for k, body in enumerate(bodies)]


def start(
    workers: list[Worker],
    settings: RedisSettings,
    name: str,
    *,
    burst: bool = False,
    fast: bool = False,
    **env: str,
) -> Worker:
    extra = FAST_REAP if fast else []
    if fast:
        env = {**FAST_REAP_ENV, **env}
    argv = worker_argv(settings.url, name=name, burst=burst, extra=extra, queue=settings.queue)
    worker = Worker(argv, worker_env(**env))
    workers.append(worker)
    return worker


def run_id(settings: RedisSettings, what: str) -> str:
    """A run id unique to this test: RQ job ids are global, not per queue."""
    return f"{what}-{settings.queue}"


def handled_ids(conn: redis.Redis, settings: RedisSettings, run: str) -> set[str]:
    return {m.decode() for m in conn.smembers(Keys(settings.queue).rq_handled(run))}


def test_stock_burst_worker_runs_every_job_once(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    items = make_items(run_id(settings, "burst1"), 24)
    queue = open_queue(conn, settings.queue)
    assert enqueue(queue, settings, run_id(settings, "burst1"), items, RqOptions()) == items
    worker = start(workers, settings, "w-burst", burst=True)
    assert worker.wait(60) == 0, worker.output

    tally = read_tally(conn, queue, run_id(settings, "burst1"), items, retries=2)
    assert tally["produced"] == tally["consumed"] == 24
    assert (tally["lost"], tally["duplicates"], tally["dead_letters"]) == (0, 0, 0)
    assert tally["per_consumer"] == {"w-burst": 24}
    assert tally["rq"]["finished"] == 24
    assert handled_ids(conn, settings, run_id(settings, "burst1")) == {item.id for item in items}
    # The worker printed the seed's line for every item, prefixed with the host.
    got = [line for line in worker.lines if re.match(r"^\[.+\] \d+ got ", line)]
    assert sorted(line.split(" got ", 1)[1] for line in got) == sorted(i.body for i in items)


def test_jobs_queued_under_the_old_handler_path_still_run(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    """Jobs enqueued before the `pcq` namespace name `consumer.rq_jobs.handle`: still handled."""
    run = run_id(settings, "legacy")
    items = make_items(run, 3)
    queue = open_queue(conn, settings.queue)
    assert LEGACY_HANDLERS == {"consumer.rq_jobs.handle"}
    for item in items:
        payload = encode(item, run, settings.max_payload_bytes).decode()
        number = item.id.rpartition(":")[2]
        queue.enqueue("consumer.rq_jobs.handle", payload, job_id=f"{settings.queue}-legacy-{number}")
    worker = start(workers, settings, "w-legacy", burst=True)
    assert worker.wait(60) == 0, worker.output
    assert handled_ids(conn, settings, run) == {item.id for item in items}
    assert FailedJobRegistry(queue=queue).get_job_ids() == []


def test_rq_info_lists_the_queue(conn: redis.Redis, settings: RedisSettings) -> None:
    enqueue(
        open_queue(conn, settings.queue),
        settings,
        run_id(settings, "info1"),
        make_items(run_id(settings, "info1"), 7),
        RqOptions(),
    )
    out = subprocess.run(
        [
            RQ,
            "info",
            "--url",
            settings.url,
            "--serializer",
            "json",
            "--only-queues",
            settings.queue,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=worker_env(),
    ).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith(settings.queue))
    assert re.search(r"\b7, 0 executing, 0 finished, 0 failed", line), out


def test_produce_rq_waits_and_tallies_across_two_workers(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    for name in ("w1", "w2"):
        start(workers, settings, name, PCQ_MAX_DELAY="0.02")
    tally = produce_rq(
        conn,
        settings,
        make_items(run_id(settings, "two"), 40),
        Console(),
        run_id(settings, "two"),
        RqOptions(wait_timeout=60),
    )
    assert tally["complete"] is True
    assert (tally["produced"], tally["consumed"], tally["lost"]) == (40, 40, 0)
    assert sum(tally["per_consumer"].values()) == 40 + tally["duplicates"]
    assert set(tally["per_consumer"]) <= {"w1", "w2"}


def test_sigkilled_worker_job_runs_again_elsewhere(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    queue = open_queue(conn, settings.queue)
    doomed = start(workers, settings, "doomed", fast=True, PCQ_MIN_DELAY="600", PCQ_MAX_DELAY="600")
    items = enqueue(
        queue,
        settings,
        run_id(settings, "kill1"),
        make_items(run_id(settings, "kill1"), 1),
        RqOptions(),
    )
    doomed.wait_for(r" got Master Shake$", 30)  # it is inside the handler now
    killed_at = time.monotonic()
    doomed.kill_hard()

    rescuer = start(workers, settings, "rescuer", fast=True)
    rescuer.wait_for(r" got Master Shake$", 45)
    noticed = time.monotonic() - killed_at
    assert noticed < 45, noticed
    print(f"job running again on another worker {noticed:.1f}s after the SIGKILL")

    tally = produce_rq_wait(conn, queue, settings, run_id(settings, "kill1"), items)
    assert (tally["consumed"], tally["lost"], tally["duplicates"]) == (1, 0, 0)
    assert tally["per_consumer"] == {"rescuer": 1}
    assert tally["redelivered"] == 1  # one of the two retries was used


def produce_rq_wait(
    conn: redis.Redis, queue: Queue, settings: RedisSettings, run: str, items: list[Item]
) -> dict[str, Any]:
    """Wait for a run like the producer does (handled set or failed registry), then tally."""
    from pcq.core.redis_common.connection import Retrier
    from pcq.core.rq_jobs.producer import wait

    assert wait(conn, queue, run, items, RqOptions(wait_timeout=30), retrier=Retrier(settings))
    return read_tally(conn, queue, run, items, retries=settings.max_deliveries - 1)


def test_poison_job_fails_for_good_after_its_retries(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    queue = open_queue(conn, settings.queue)
    items = make_items(run_id(settings, "fail1"), 4, first="poison pill")
    enqueue(queue, settings, run_id(settings, "fail1"), items, RqOptions())
    worker = start(workers, settings, "w-fail", burst=True)
    assert worker.wait(60) == 0, worker.output

    poison_job = job_ids(run_id(settings, "fail1"), 1)[0]
    assert poison_job in FailedJobRegistry(queue=queue).get_job_ids()
    job = AllowlistJob.fetch(poison_job, connection=conn, serializer=queue.serializer)
    assert job.retries_left == 0  # Retry(max=2): ran 3 times
    assert sum(line.endswith(" got poison pill") for line in worker.lines) == 3
    tally = read_tally(conn, queue, run_id(settings, "fail1"), items, retries=2)
    assert (tally["consumed"], tally["dead_letters"], tally["lost"]) == (3, 1, 0)
    assert tally["redelivered"] == 2
    assert "PoisonPill" in tally["dead_letter_reasons"][f"{run_id(settings, 'fail1')}:0"]

    # RQ's own tools work on our queue: `rq requeue` puts it back, it fails again.
    subprocess.run(
        [
            RQ,
            "requeue",
            "--url",
            settings.url,
            "--serializer",
            "json",
            "--queue",
            settings.queue,
            "--all",
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
        env=worker_env(),
    )
    assert FailedJobRegistry(queue=queue).get_job_ids() == []
    again = start(workers, settings, "w-again", burst=True)
    assert again.wait(60) == 0, again.output
    assert sum(line.endswith(" got poison pill") for line in again.lines) == 1
    assert poison_job in FailedJobRegistry(queue=queue).get_job_ids()


def test_malformed_payload_fails_at_once(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    queue = open_queue(conn, settings.queue)
    bad = {"v": 1, "id": "x", "body": 3}
    queue.enqueue(
        HANDLER, json.dumps(bad), job_id=f"{settings.queue}-malformed", retry=Retry(max=4)
    )
    queue.enqueue(
        HANDLER,
        "x" * (settings.max_payload_bytes + 1),
        job_id=f"{settings.queue}-oversize",
        retry=Retry(max=4),
    )
    worker = start(workers, settings, "w-bad", burst=True)
    assert worker.wait(60) == 0, worker.output

    for kind, reason in (("malformed", "wrong schema"), ("oversize", "oversize")):
        job_id = f"{settings.queue}-{kind}"
        job = AllowlistJob.fetch(job_id, connection=conn, serializer=queue.serializer)
        assert job.get_status() == "failed"
        assert len(job.results()) == 1  # retrying cannot fix a payload: it ran once
        result = job.latest_result()
        assert result is not None and reason in (result.exc_string or ""), job_id
    assert " got " not in worker.output



@pytest.mark.parametrize("flags", ["documented", "worker-class only"])
def test_jobs_outside_the_allowed_handler_are_refused(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker], tmp_path: Path, flags: str
) -> None:
    markers = [tmp_path / f"marker{k}" for k in range(3)]
    queue = open_queue(conn, settings.queue)
    queue.enqueue(
        "os.system", f"touch {markers[0]}", job_id=f"{settings.queue}-evil-func", retry=Retry(max=3)
    )
    queue.enqueue(
        HANDLER,
        json.dumps({"v": 1}),
        job_id=f"{settings.queue}-evil-callback",
        on_failure=Callback(os.system),
    )
    queue.enqueue(
        "subprocess.run", ["touch", str(markers[2])], job_id=f"{settings.queue}-evil-subprocess"
    )
    # A pickled job: a worker that unpickled it would already be owned.
    Queue(settings.queue, connection=conn).enqueue(
        HANDLER, Bomb(markers[1]), job_id=f"{settings.queue}-evil-pickle"
    )
    enqueue(
        queue,
        settings,
        run_id(settings, "after"),
        make_items(run_id(settings, "after"), 1),
        RqOptions(),
    )  # it keeps going

    if flags == "documented":
        worker = start(workers, settings, "w-guard", burst=True)
    else:  # PcqWorker forces its job class and JSON even if the flags are forgotten
        argv = [
            RQ,
            "worker",
            "--url",
            settings.url,
            "--worker-class",
            "pcq.core.rq_jobs.workers.PcqWorker",
            "--burst",
            "--name",
            "w-guard",
            settings.queue,
        ]
        worker = Worker(argv, worker_env())
        workers.append(worker)
    assert worker.wait(60) == 0, worker.output

    assert not any(m.exists() for m in markers)
    evil = {
        f"{settings.queue}-evil-{kind}" for kind in ("func", "callback", "subprocess", "pickle")
    }
    assert evil <= set(FailedJobRegistry(queue=queue).get_job_ids())
    for job_id in evil:
        job = AllowlistJob.fetch(job_id, connection=conn, serializer=queue.serializer)
        result = job.latest_result()
        assert result is not None and "RefusedJob" in (result.exc_string or ""), job_id
        assert len(job.results()) == 1  # a refusal is final: evil-func's Retry is dropped
    assert FinishedJobRegistry(queue=queue).get_job_ids() == job_ids(run_id(settings, "after"), 1)
    assert handled_ids(conn, settings, run_id(settings, "after")) == {f"{run_id(settings, 'after')}:0"}


def test_healthcheck_sees_only_this_hosts_workers(
    conn: redis.Redis, settings: RedisSettings, workers: list[Worker]
) -> None:
    def check(host: str) -> subprocess.CompletedProcess[str]:
        code = f"import sys, pcq.core.rq_jobs.workers as m; sys.exit(m.check(host={host!r}))"
        return subprocess.run(
            [sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            env=worker_env(RQ_REDIS_URL=settings.url),
            check=False,
        )

    assert check("nosuchhost").returncode == 1
    worker = start(workers, settings, "")  # default name: <hostname>.<pid>.<hex>
    line = worker.wait_for(r"Worker \S+: started with PID", 30)
    host = line.split("Worker ", 1)[1].split(":", 1)[0].rsplit(".", 1)[0]
    done = check(host)
    assert done.returncode == 0, done.stdout
    assert done.stdout.startswith("healthy: ")


def test_pcq_produce_via_rq_prints_the_list_modes_tally(
    settings: RedisSettings, workers: list[Worker], tmp_path: Path
) -> None:
    for name in ("cli-w1", "cli-w2"):
        start(workers, settings, name, PCQ_MAX_DELAY="0.01")
    env = worker_env(REDIS_URL=settings.url, PCQ_QUEUE=settings.queue, PCQ_MAX_DELIVERIES="3")
    pcq = str(Path(sys.executable).with_name("pcq"))
    done = subprocess.run(
        [pcq, "produce", "--via", "rq", "--items", "30", "--json", "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    tally = json.loads(done.stdout)
    for key in (
        "produced",
        "consumed",
        "lost",
        "duplicates",
        "redelivered",
        "dead_letters",
        "per_consumer",
        "seconds",
        "items_per_second",
        "run",
        "queue",
        "complete",
    ):
        assert key in tally, key
    assert (tally["produced"], tally["consumed"], tally["lost"], tally["dead_letters"]) == (
        30,
        30,
        0,
        0,
    )
    assert set(tally["per_consumer"]) <= {"cli-w1", "cli-w2"}
    assert "Starting producer =>" in done.stderr  # demo lines go to stderr with --json
    # The table form: a poison item is a dead letter after its 3 deliveries, nothing lost.
    names = tmp_path / "names.txt"
    names.write_text("Rick\npoison pill\nMorty\n")
    table = subprocess.run(
        [pcq, "produce", "--via", "rq", "--names-file", str(names), "--timeout", "60"],
        capture_output=True,
        text=True,
        timeout=90,
        env=env,
        check=False,
    )
    assert table.returncode == 0, table.stderr
    rows = dict(re.findall(r"│\s*([a-z ]+?)\s*│\s*(\d+)\s*│", table.stdout))
    assert rows["consumed"] == "2" and rows["dead letters"] == "1", table.stdout
    assert rows["lost"] == "0" and rows["redelivered"] == "2", table.stdout


def test_pcq_workers_heartbeat_ttl_takes_rq_3s_working_time(redis_server: RedisServer) -> None:
    """RQ 3 asks for the TTL with how long the job has run; the grace still replaces RQ's 60 s."""
    from rq.job import Job
    from rq.worker import SimpleWorker

    from pcq.core.rq_jobs.workers import RQ_HEARTBEAT_GRACE, PcqSimpleWorker

    with redis_server.client() as conn:
        worker = PcqSimpleWorker(["pcq-ttl"], connection=conn)
        job = Job.create("pcq.core.rq_jobs.jobs.handle", connection=conn, timeout=300)
        os.environ["PCQ_RQ_HEARTBEAT_GRACE"] = "7"
        try:
            ours = worker.get_heartbeat_ttl(job)
            # RQ 3 passes how long the job has run (RQ 2 has no such parameter).
            takes_time = "working_time" in inspect.signature(SimpleWorker.get_heartbeat_ttl).parameters
            later = worker.get_heartbeat_ttl(job, working_time=1.0) if takes_time else ours
            stock = SimpleWorker.get_heartbeat_ttl(worker, job)
        finally:
            del os.environ["PCQ_RQ_HEARTBEAT_GRACE"]
    assert ours == stock - RQ_HEARTBEAT_GRACE + 7
    assert later <= ours
