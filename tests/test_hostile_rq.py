"""Hostile jobs in RQ mode: one long-running stock ``rq worker`` survives them all.

``tests/test_rq.py`` checks each refusal with a burst worker. Here one
*serving* worker (the way compose runs it) meets every kind of hostile job in
a row -- a job naming ``os.system``, a pickled job, job data of 10 MB, job data
nested 30,000 deep, payloads that are not JSON, of the wrong schema, with a
lone surrogate -- and then a run of good items. Each hostile job must end in
the failed registry with a reason, nothing it names may run (no marker file),
the worker must keep the same pid, and the good run must be complete by the
ledger (``lost == 0``, ``unexpected == 0``).
"""

from __future__ import annotations

import json
import pickle
import time
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
import redis
from audit import HANDLED, Audit
from hostile import DEEP_JSON, TEN_MB, Bomb
from rq import Queue, Retry
from rq.registry import FailedJobRegistry
from rq_helpers import Worker, worker_argv, worker_env

from pcq.core.redis_common.keys import Keys
from pcq.core.rq_jobs.jobs import HANDLER, AllowlistJob
from pcq.core.rq_jobs.producer import RqOptions, enqueue, open_queue
from pcq.core.transport import Item

if TYPE_CHECKING:
    from fixtures_redis import RedisServer

pytestmark = pytest.mark.timeout(180)



def plant(conn: redis.Redis, queue: Queue, job_id: str, data: bytes) -> None:
    """Enqueue a job whose stored ``data`` is ``data`` (what a hostile writer can do)."""
    with conn.pipeline() as pipe:
        queue.enqueue_many([Queue.prepare_data(HANDLER, args=["x"], job_id=job_id)], pipeline=pipe)
        pipe.hset(AllowlistJob.key_for(job_id), "data", data)
        pipe.execute()


def test_one_serving_worker_refuses_every_hostile_job(
    redis_server: RedisServer, tmp_path: Path,
) -> None:
    marker = tmp_path / "pwned"
    settings = redis_server.settings(max_deliveries=3)
    conn = redis_server.client()
    queue = open_queue(conn, settings.queue)
    retry = Retry(max=2)
    hostile = {  # job id -> what the failure must mention
        "os-system": "RefusedJob", "pickled": "RefusedJob", "ten-mb": "RefusedJob",
        "nested": "RefusedJob", "not-json": "not JSON", "schema": "wrong schema",
        "surrogate": "invalid UTF-8",
    }
    worker = Worker(worker_argv(settings.url, name="guard", queue=settings.queue), worker_env())
    try:
        pid = worker.proc.pid
        queue.enqueue("os.system", f"touch {marker}", job_id="os-system", retry=retry)
        Queue(settings.queue, connection=conn).enqueue(HANDLER, Bomb(marker), job_id="pickled")
        plant(conn, queue, "ten-mb", json.dumps([HANDLER, None, ["A" * TEN_MB], {}]).encode())
        plant(conn, queue, "nested", DEEP_JSON)
        queue.enqueue(HANDLER, "Meatwad, not JSON", job_id="not-json", retry=retry)
        queue.enqueue(HANDLER, json.dumps({"v": 1, "id": "r:1"}), job_id="schema", retry=retry)
        queue.enqueue(HANDLER, '{"v": 1, "body": "\udcff"}', job_id="surrogate", retry=retry)

        run, n = "goodrun", 30
        items = [Item(f"{run}:{k}", f"name {k}", time.time()) for k in range(n)]
        enqueue(queue, settings, run, items, RqOptions())
        ledger = Audit(tmp_path / "ledger")
        ledger.produce(item.id for item in items)
        handled_key = Keys(settings.queue).rq_handled(run)
        failed = FailedJobRegistry(queue=queue)
        deadline = time.monotonic() + 90
        while conn.scard(handled_key) < n or not set(hostile) <= set(failed.get_job_ids()):
            assert time.monotonic() < deadline, (conn.scard(handled_key), failed.get_job_ids(),
                                                 worker.output[-3000:])
            assert worker.proc.poll() is None, worker.output[-3000:]
            time.sleep(0.1)
        assert worker.proc.poll() is None and worker.proc.pid == pid, "the worker died"
        started = [line for line in worker.lines if "Worker" in line and "started" in line]
        assert len(started) <= 1, started  # never restarted
    finally:
        worker.close()

    assert not marker.exists(), "a hostile job ran"
    reasons = {}
    for job_id, why in hostile.items():
        job = AllowlistJob.fetch(job_id, connection=conn, serializer=queue.serializer)
        result = job.latest_result()
        text = (result.exc_string or "") if result is not None else ""
        reasons[job_id] = text.strip().splitlines()[-1][:100] if text.strip() else "?"
        assert why in text, (job_id, text[-500:])
        if why not in ("RefusedJob", ""):  # a bad payload fails at once, never retried
            assert len(job.results()) == 1, job_id
    out = ledger.writer(HANDLED)
    out.add_many((m.decode(), "rq", 1) for m in conn.smembers(handled_key))
    out.close()
    conn.close()
    report = ledger.report()
    print(report.summary(), reasons)
    report.assert_sound()
    assert report.handled == n
    assert pickle.dumps(Bomb(marker))  # the bomb was real (see test_hostile_redis's control)
