"""SAQ: ``saq peers.saq_peer.settings --workers 2`` (default concurrency 10 per process).

Done: SAQ's own ``Queue.count("incomplete")`` (jobs queued or active) is back to
zero after the last enqueue.
"""

from __future__ import annotations

import asyncio
import os
from importlib.metadata import version
from typing import Any

from saq import Queue

from peers.drive import bin_path


async def noop(ctx: dict[str, Any]) -> bool:
    return True


settings = {"queue": Queue.from_url(os.environ["BENCH_REDIS_URL"], name="bench"),
            "functions": [noop]}  # fmt: skip


class SaqPeer:
    system = "SAQ"

    def __init__(self, url: str, variant: str) -> None:
        self.version = version("saq")
        self.settings = {"queue": "redis", "workers": 2, "concurrency": "default (10)"}
        self.loop = asyncio.new_event_loop()
        self.queue = Queue.from_url(url, name="bench")
        self.loop.run_until_complete(self.queue.connect())

    def worker_commands(self) -> list[list[str]]:
        return [[bin_path("saq"), "peers.saq_peer.settings", "--workers", "2"]]

    def produce(self, n: int, tag: str) -> None:
        async def go() -> None:
            for _ in range(n):
                await self.queue.enqueue("noop")

        self.loop.run_until_complete(go())

    def begin(self, tag: str) -> None:
        pass

    def done(self, n: int) -> bool:
        return self.loop.run_until_complete(self.queue.count("incomplete")) == 0

    def close(self) -> None:
        self.loop.run_until_complete(self.queue.disconnect())
        self.loop.close()


PEER = SaqPeer
