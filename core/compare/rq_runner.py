"""The RQ transport under a comparison workload: stock ``rq worker`` processes on this host.

Each item becomes one RQ job calling :func:`rq_handle` with JSON arguments
(the schema-v1 payload of :mod:`pcq.core.redis_common.payload` and the work spec). Workers are
the stock ``rq worker`` command -- forking (``rq.worker.Worker``, RQ's default:
one fork per job) or ``rq.worker.SimpleWorker`` (jobs run in the worker) --
with :class:`CompareJob`, which runs :func:`rq_handle` and nothing else.

The handler stamps, per item, when it returned, in a hash next to the list
transport's keys: ``pcq:{<rq queue>}:compare:<run>:handled`` (item id ->
``"produced_at handled_at"``) and ``...:by`` (worker name -> jobs). Every key
of the comparison (its RQ queue, registries, jobs and results, and these
hashes) carries a random tag and is deleted afterwards.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import redis
from rq import Queue, Worker, get_current_job
from rq.job import Job
from rq.registry import FailedJobRegistry
from rq.serializers import JSONSerializer

from pcq.core.compare.metrics import RssSampler, RunMetrics
from pcq.core.compare.workload import Workload, make_body, make_work
from pcq.core.errors import PcqError
from pcq.core.redis_common.connection import connect, text
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import decode, encode, run_of
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.transport import Item

__all__ = ["COMPARE_HANDLER", "WORKER_CLASSES", "CompareJob", "rq_handle", "run_rq_compare"]

COMPARE_HANDLER = "pcq.core.compare.rq_runner.rq_handle"
WORKER_CLASSES = {"fork": "rq.worker.Worker", "simple": "rq.worker.SimpleWorker"}
READY_TIMEOUT = 30.0
_CHUNK = 500
Progress = Callable[[int], None]


class CompareJob(Job):
    """An RQ job that only ever runs :func:`rq_handle` (and no callbacks).

    An RQ job names the function to import by its dotted path: a worker that
    would run anything is a remote-code-execution hole on a shared Redis.
    """

    @property
    def func(self) -> Any:
        if self.func_name != COMPARE_HANDLER or self.instance is not None:
            raise PermissionError(f"job names {self.func_name!r}; only {COMPARE_HANDLER!r} may run")
        return rq_handle

    @property
    def success_callback(self) -> None:
        return None

    @property
    def failure_callback(self) -> None:
        return None

    @property
    def stopped_callback(self) -> None:
        return None


def stamp_keys(queue: str, run: str) -> tuple[str, str]:
    """The comparison's per-run hashes: ``(handled, by worker)``."""
    base = f"{Keys(queue).prefix}:compare:{run}"
    return f"{base}:handled", f"{base}:by"


def rq_handle(payload: str, work: str) -> None:
    """An RQ job: decode the item, do the work, stamp when it was handled."""
    job = get_current_job()
    if job is None:
        raise RuntimeError(f"{COMPARE_HANDLER} must run inside an RQ worker")
    item = decode(payload.encode("utf-8"), 64 * 1024)
    make_work(work)(item)
    handled_at = time.time()
    handled, by = stamp_keys(job.origin, run_of(item.id))
    with job.connection.pipeline(transaction=False) as pipe:
        pipe.hsetnx(handled, item.id, f"{item.produced_at!r} {handled_at!r}")
        pipe.hincrby(by, job.worker_name or "?", 1)
        pipe.execute()


def _rq_command() -> list[str]:
    script = Path(sys.executable).with_name("rq")
    if script.exists():
        return [str(script)]
    found = shutil.which("rq")
    if found is None:
        raise PcqError("the rq command was not found (pip install rq)")
    return [found]


class _Workers:
    """``n`` stock ``rq worker`` subprocesses on ``queue``, output in a temp log."""

    def __init__(self, url: str, queue: str, n: int, kind: str, tag: str) -> None:
        self._log = tempfile.TemporaryFile()  # noqa: SIM115 - closed in stop()
        env = dict(os.environ, RQ_REDIS_URL=url, PYTHONUNBUFFERED="1")  # URL not in argv (ps)
        env.pop("PYTHONWARNINGS", None)  # -W error is for pcq, not for RQ's internals
        base = [
            *_rq_command(), "worker", "--serializer", "json", "--quiet",
            "--job-class", "pcq.core.compare.rq_runner.CompareJob", "--worker-class", WORKER_CLASSES[kind],
        ]  # fmt: skip
        self.procs = [
            subprocess.Popen(
                [*base, "--name", f"cmp-{tag}-{i}", queue], env=env, stdin=subprocess.DEVNULL,
                stdout=self._log, stderr=subprocess.STDOUT, start_new_session=True,
            )
            for i in range(n)
        ]

    def pids(self) -> list[int]:
        return [p.pid for p in self.procs]

    def tail(self) -> str:
        self._log.seek(0)
        lines = self._log.read().decode("utf-8", "replace").strip().splitlines()
        return lines[-1] if lines else "no output"

    def wait_ready(self, client: redis.Redis, queue: Queue) -> None:
        deadline = time.monotonic() + READY_TIMEOUT
        while Worker.count(connection=client, queue=queue) < len(self.procs):
            if any(p.poll() is not None for p in self.procs):
                raise PcqError(f"an rq worker exited at start: {self.tail()}")
            if time.monotonic() > deadline:
                raise PcqError(f"rq workers did not register within {READY_TIMEOUT:g}s")
            time.sleep(0.05)

    def stop(self) -> None:
        """Warm shutdown (SIGTERM), then SIGKILL whatever is left."""
        for proc in self.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in self.procs:
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait(10)
        self._log.close()


def _enqueue(queue: Queue, workload: Workload, run: str, job_timeout: int) -> None:
    spec, size, datas = str(workload.work), workload.payload_bytes, []
    for n in range(workload.items):
        item = Item(f"{run}:{n}", make_body(n, size), time.time())
        payload = encode(item, run, 64 * 1024).decode("utf-8")
        datas.append(Queue.prepare_data(
            COMPARE_HANDLER, kwargs={"payload": payload, "work": spec}, job_id=f"cmp-{run}-{n}",
            timeout=job_timeout, result_ttl=600, failure_ttl=600,
        ))
        if len(datas) >= _CHUNK or n == workload.items - 1:
            with queue.connection.pipeline() as pipe:
                queue.enqueue_many(datas, pipeline=pipe)
                pipe.execute()
            datas = []


def delete_tagged(client: redis.Redis, tag: str, queue: str) -> None:
    """Delete every key whose name carries ``tag`` (queue, registries, jobs, hashes)."""
    keys = list(client.scan_iter(match=f"*{tag}*", count=1000))
    for start in range(0, len(keys), 500):
        client.delete(*keys[start : start + 500])
    client.srem("rq:queues", f"rq:queue:{queue}")


def run_rq_compare(
    workload: Workload, consumers: int, repeat: int, progress: Progress,
    base: RedisSettings, timeout: float, worker: str = "fork",
) -> RunMetrics:
    """Run ``workload`` as RQ jobs through ``consumers`` stock RQ workers."""
    tag = uuid.uuid4().hex[:12]
    qname = f"pcq-cmp-{tag}"
    client = connect(base)
    queue = Queue(qname, connection=client, serializer=JSONSerializer, job_class=CompareJob)
    handled_key, by_key = stamp_keys(qname, tag)
    workers: _Workers | None = None
    try:
        workers = _Workers(base.url, qname, consumers, worker, tag)
        workers.wait_ready(client, queue)
        failed = FailedJobRegistry(qname, connection=client).key
        with RssSampler(workers.pids, every=0.1, children=True) as rss:
            t0 = time.perf_counter()
            _enqueue(queue, workload, tag, int(max(60, workload.work.ms / 1000 * 10)))
            complete = _follow(client, handled_key, failed, workload.items, progress, timeout,
                               lambda: all(p.poll() is not None for p in workers.procs))
            wall = time.perf_counter() - t0
        workers.stop()
        raw = client.hgetall(handled_key)
        by = {text(k): int(v) for k, v in client.hgetall(by_key).items()}
        dead = int(client.zcard(failed))
    finally:
        if workers is not None and any(p.poll() is None for p in workers.procs):
            workers.stop()
        delete_tagged(client, tag, qname)
        client.close()
    stamps = [_pair(text(v)) for v in raw.values()]
    notes = [] if complete else ["timed out before every job was handled"]
    return RunMetrics.build(
        transport="rq", consumers=consumers, repeat=repeat, items=workload.items,
        stamps=stamps,
        per_consumer=by, wall_seconds=wall, peak_rss=rss.peak,
        lost=workload.items - len(stamps) - dead, duplicates=max(0, sum(by.values()) - len(stamps)),
        dead_letters=dead, notes=notes,
    )


def _pair(text: str) -> tuple[float, float]:
    produced_at, handled_at = text.split()
    return float(produced_at), float(handled_at)


def _follow(
    client: redis.Redis, handled: str, failed: str, items: int, progress: Progress, timeout: float,
    all_gone: Callable[[], bool],
) -> bool:
    """Poll until every job is handled or failed; False on timeout or once no worker is left."""
    deadline = time.monotonic() + timeout
    while True:
        gone = all_gone()  # before the count: see redis_runner._follow
        with client.pipeline(transaction=False) as pipe:
            pipe.hlen(handled)
            pipe.zcard(failed)
            done, dead = pipe.execute()
        progress(int(done))
        if done + dead >= items:
            return True
        if gone or time.monotonic() > deadline:
            return False
        time.sleep(0.05)
