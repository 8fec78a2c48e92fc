"""pcq's Redis list: two ``pcq consume`` processes, batch 1 (``default``) or 100 (``batch100``).

Runs in the project's own virtualenv. The producer is pcq's in-process role
(:class:`ListProducer` through :func:`pcq.core.pattern.produce`, as
``pcq produce`` does), one new run per phase; the consumers are the real CLI:
``pcq consume --quiet --max-delay 0 --batch B`` (JSON payloads with a schema,
claim into a processing list, acknowledge after the handler returned,
heartbeats). Done: the run's acked bitmap (and set) in Redis hold every item id.
"""

from __future__ import annotations

import io
import os
import time
from importlib.metadata import version

from pcq.core.console import Console
from pcq.core.names import generated_name
from pcq.core.pattern import produce
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acked import acked_count
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item
from peers.drive import bin_path

BATCHES = {"default": 1, "batch100": 100}
QUEUE = "bench"


class PcqPeer:
    system = "pcq list"

    def __init__(self, url: str, variant: str) -> None:
        self.batch = BATCHES[variant]
        self.version = version("pcq")
        self.url = url
        self.settings = {"consumers": "2 x pcq consume", "batch": self.batch,
                         "max-delay": 0, "high-water": "default (10000)"}  # fmt: skip
        self.redis_settings = RedisSettings(url=url, queue=QUEUE, batch=self.batch)
        self.client = connect(self.redis_settings)
        self.keys = Keys(QUEUE)
        self.quiet = Console(stream=io.StringIO(), quiet=True)
        self.run = ""

    def worker_commands(self) -> list[list[str]]:
        os.environ["REDIS_URL"] = self.url  # the URL goes by environment, not argv
        cmd = [bin_path("pcq"), "consume", "--quiet", "--max-delay", "0",
               "--batch", str(self.batch), "--queue", QUEUE]  # fmt: skip
        return [cmd, cmd]

    def begin(self, tag: str) -> None:
        self.producer = ListProducer(self.client, self.redis_settings)
        self.run = self.producer.open_run()

    def produce(self, n: int, tag: str) -> None:
        now = time.time
        items = (Item(f"{self.run}:{i}", generated_name(i), now()) for i in range(n))
        produce(self.producer, items, self.quiet, batch=self.batch)
        self.producer.close()

    def done(self, n: int) -> bool:
        return acked_count(self.client, self.keys, self.run) >= n

    def close(self) -> None:
        self.client.close()


PEER = PcqPeer
