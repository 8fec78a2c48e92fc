"""RQ: ``rq worker`` (fork per job) or ``rq worker -w rq.worker.SimpleWorker``, two processes.

Done: RQ's FinishedJobRegistry of the queue (a failed job aborts the run).
"""

from __future__ import annotations

import sys
from pathlib import Path

QUEUE = "bench"
CLASSES = {"fork": "rq.worker.Worker", "simple": "rq.worker.SimpleWorker"}


def noop() -> bool:
    return True


class RqPeer:
    system = "RQ"

    def __init__(self, url: str, variant: str) -> None:
        import redis
        import rq
        from rq.registry import FailedJobRegistry, FinishedJobRegistry

        self.url, self.worker_class = url, CLASSES[variant]
        self.version = rq.__version__
        self.settings = {"worker class": self.worker_class, "result_ttl": "default (500 s)",
                         "workers": "2 x rq worker"}  # fmt: skip
        self.conn = redis.Redis.from_url(url)
        self.queue = rq.Queue(QUEUE, connection=self.conn)
        self.finished = FinishedJobRegistry(queue=self.queue)
        self.failed = FailedJobRegistry(queue=self.queue)
        self.base = 0

    def worker_commands(self) -> list[list[str]]:
        rq_bin = str(Path(sys.executable).parent / "rq")
        return [[rq_bin, "worker", "--url", self.url, "--quiet", "-w", self.worker_class, QUEUE]
                for _ in range(2)]  # fmt: skip

    def produce(self, n: int, tag: str) -> None:
        for _ in range(n):
            self.queue.enqueue("peers.rq_peer.noop")

    def begin(self, tag: str) -> None:
        self.base = self.finished.get_job_count(cleanup=False)

    def done(self, n: int) -> bool:
        if self.failed.get_job_count(cleanup=False):
            raise RuntimeError("a job failed (RQ FailedJobRegistry)")
        return self.finished.get_job_count(cleanup=False) - self.base >= n

    def close(self) -> None:
        self.conn.close()


PEER = RqPeer
