"""Huey: ``RedisHuey`` (blocking pops), ``huey_consumer -k process -w 2``.

Done: Huey's result store (the ``huey.results.<name>`` hash; the task returns
True so Huey keeps a result) holds one result per finished task.
"""

from __future__ import annotations

import os

import huey as huey_lib
import redis
from huey import RedisHuey

from peers.drive import bin_path

huey = RedisHuey("bench", url=os.environ["BENCH_REDIS_URL"])


@huey.task()
def noop() -> bool:
    return True


class HueyPeer:
    system = "Huey"

    def __init__(self, url: str, variant: str) -> None:
        self.version = huey_lib.__version__
        self.settings = {"storage": "RedisHuey (blocking)", "worker type": "process", "workers": 2}
        self.conn = redis.Redis.from_url(url)
        self.key = huey.storage.result_key
        self.base = 0

    def worker_commands(self) -> list[list[str]]:
        return [[bin_path("huey_consumer"), "peers.huey_peer.huey", "-k", "process", "-w", "2",
                 "-q"]]  # fmt: skip

    def produce(self, n: int, tag: str) -> None:
        for _ in range(n):
            noop()

    def begin(self, tag: str) -> None:
        self.base = self.conn.hlen(self.key)

    def done(self, n: int) -> bool:
        return self.conn.hlen(self.key) - self.base >= n

    def close(self) -> None:
        self.conn.close()


PEER = HueyPeer
