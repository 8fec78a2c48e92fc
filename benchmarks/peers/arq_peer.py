"""arq: two ``arq peers.arq_peer.WorkerSettings`` processes (default max_jobs 10 each).

Done: arq's queue (a sorted set) keeps a job until the job has finished, so
``ZCARD arq:queue`` back at zero after the last enqueue means every job ran.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from typing import Any, ClassVar

from arq import create_pool
from arq.connections import RedisSettings
from arq.constants import default_queue_name

from peers.drive import bin_path


async def noop(ctx: dict[str, Any]) -> bool:
    return True


class WorkerSettings:
    functions: ClassVar = [noop]
    redis_settings = RedisSettings.from_dsn(os.environ["BENCH_REDIS_URL"])


class ArqPeer:
    system = "arq"

    def __init__(self, url: str, variant: str) -> None:
        self.version = version("arq")
        self.settings = {"workers": "2 x arq worker", "max_jobs": "default (10)"}
        self.loop = asyncio.new_event_loop()
        self.pool = self.loop.run_until_complete(create_pool(RedisSettings.from_dsn(url)))

    def worker_commands(self) -> list[list[str]]:
        return [[bin_path("arq"), "peers.arq_peer.WorkerSettings"] for _ in range(2)]

    def produce(self, n: int, tag: str) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.pool.enqueue_job("noop")

        self.loop.run_until_complete(go())

    def begin(self, tag: str) -> None:
        pass

    def done(self, n: int) -> bool:
        return self.loop.run_until_complete(self.pool.zcard(default_queue_name)) == 0

    def close(self) -> None:
        self.loop.run_until_complete(self.pool.aclose())
        self.loop.close()


PEER = ArqPeer
