"""taskiq with taskiq-redis's ``RedisStreamBroker``: ``taskiq worker --workers 2``.

The consumer group starts from the stream's beginning (``consumer_id="0"``) so
nothing sent before the group exists is skipped. Acknowledgement: taskiq's
default (``when_saved``, after the result is stored). Done: the Redis result
backend (database 1 of the same server) holds one key per finished task,
counted with DBSIZE.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version

import redis
from taskiq_redis import RedisAsyncResultBackend, RedisStreamBroker

from peers.drive import bin_path, other_db

URL = os.environ["BENCH_REDIS_URL"]
broker = RedisStreamBroker(url=URL, queue_name="bench", consumer_id="0").with_result_backend(
    RedisAsyncResultBackend(redis_url=other_db(URL))
)


@broker.task(task_name="bench.noop")
async def noop() -> bool:
    return True


class TaskiqPeer:
    system = "taskiq"

    def __init__(self, url: str, variant: str) -> None:
        self.version = f"{version('taskiq')} (taskiq-redis {version('taskiq-redis')})"
        self.settings = {"broker": "RedisStreamBroker", "result backend": "redis (db 1)",
                         "workers": 2, "ack": "default (when_saved)"}  # fmt: skip
        self.loop = asyncio.new_event_loop()
        self.loop.run_until_complete(broker.startup())
        self.results = redis.Redis.from_url(other_db(url))
        self.base = 0

    def worker_commands(self) -> list[list[str]]:
        return [[bin_path("taskiq"), "worker", "peers.taskiq_peer:broker", "--workers", "2"]]

    def produce(self, n: int, tag: str) -> None:
        async def go() -> None:
            for _ in range(n):
                await noop.kiq()

        self.loop.run_until_complete(go())

    def begin(self, tag: str) -> None:
        self.base = self.results.dbsize()

    def done(self, n: int) -> bool:
        return self.results.dbsize() - self.base >= n

    def close(self) -> None:
        self.results.close()
        self.loop.run_until_complete(broker.shutdown())
        self.loop.close()


PEER = TaskiqPeer
