"""Dramatiq with its Redis broker: ``dramatiq --processes 2`` (default threads per process).

Done: the broker's own queue size (``RedisBroker.do_qsize``: messages queued plus
delivered and not yet acknowledged) is back to zero after the last enqueue.
"""

from __future__ import annotations

import os

import dramatiq
from dramatiq.brokers.redis import RedisBroker

from peers.drive import bin_path

broker = RedisBroker(url=os.environ["BENCH_REDIS_URL"])
dramatiq.set_broker(broker)
THREADS = 8  # dramatiq's default worker threads per process, stated here so it is printed


@dramatiq.actor(queue_name="bench")
def noop() -> None:
    pass


class DramatiqPeer:
    system = "Dramatiq"

    def __init__(self, url: str, variant: str) -> None:
        self.version = dramatiq.__version__
        self.settings = {"broker": "RedisBroker", "processes": 2, "threads": THREADS,
                         "middleware": ",".join(type(m).__name__ for m in broker.middleware)}  # fmt: skip

    def worker_commands(self) -> list[list[str]]:
        return [[bin_path("dramatiq"), "peers.dramatiq_peer", "--processes", "2",
                 "--threads", str(THREADS)]]  # fmt: skip

    def produce(self, n: int, tag: str) -> None:
        for _ in range(n):
            noop.send()

    def begin(self, tag: str) -> None:
        pass

    def done(self, n: int) -> bool:
        return broker.do_qsize("bench") == 0

    def close(self) -> None:
        broker.close()


PEER = DramatiqPeer
