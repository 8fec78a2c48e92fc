"""Celery with the Redis broker: ``celery worker --concurrency 2`` (prefork: two child processes).

Variants: ``default`` (acknowledged when a worker takes the task, before it runs)
and ``acks_late`` (``task_acks_late=True``: acknowledged after it ran). Done: the
Redis result backend (database 1 of the same server) holds one result key per
finished task, counted with DBSIZE. The producer sends through an app without a
result backend, so it does not subscribe to every task's result.
"""

from __future__ import annotations

import os

import celery
import redis
from celery import Celery

from peers.drive import bin_path, other_db

URL = os.environ["BENCH_REDIS_URL"]
app = Celery("bench", broker=URL, backend=other_db(URL))
app.conf.task_acks_late = os.environ.get("BENCH_VARIANT") == "acks_late"
app.conf.worker_hijack_root_logger = False


@app.task(name="bench.noop")
def noop() -> bool:
    return True


class CeleryPeer:
    system = "Celery"

    def __init__(self, url: str, variant: str) -> None:
        self.version = celery.__version__
        self.settings = {"broker": "redis", "result backend": "redis (db 1)", "pool": "prefork",
                         "concurrency": 2, "task_acks_late": app.conf.task_acks_late,
                         "worker_prefetch_multiplier": app.conf.worker_prefetch_multiplier}  # fmt: skip
        self.sender = Celery("bench-producer", broker=url)  # no backend: no result subscriptions
        self.results = redis.Redis.from_url(other_db(url))
        self.base = 0

    def worker_commands(self) -> list[list[str]]:
        return [[bin_path("celery"), "-A", "peers.celery_peer", "worker", "--pool", "prefork",
                 "--concurrency", "2", "--loglevel", "WARNING"]]  # fmt: skip

    def produce(self, n: int, tag: str) -> None:
        for _ in range(n):
            self.sender.send_task("bench.noop")

    def begin(self, tag: str) -> None:
        self.base = self.results.dbsize()

    def done(self, n: int) -> bool:
        return self.results.dbsize() - self.base >= n

    def close(self) -> None:
        self.results.close()
        self.sender.close()


PEER = CeleryPeer
