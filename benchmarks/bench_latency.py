"""Benchmark: latency from produce to handled on the Redis list, at a steady offered rate (not a test).

One producer process offers items at a fixed rate (``--rate`` items/s, pushed
in batches of ``--batch`` on a fixed schedule, never catching up in bursts),
one consumer process handles them with a no-op handler and records, per item,
the time from the producer's ``produced_at`` to the end of its handler. Both
run on this machine, so their clocks agree. Prints p50, p90, p99 and max.

Runs whatever ``pcq`` the interpreter imports, so two checkouts compare by
running this file with each one's Python, interleaved.

Usage: ``python benchmarks/bench_latency.py [--rate 2000] [--seconds 10] [--batch 1]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import statistics
import tempfile
import time
from typing import Any

from bench_redis import start_server

from pcq.core.console import Console
from pcq.core.pattern import consume
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item

CTX = mp.get_context("fork")


def producer(settings: RedisSettings, rate: float, seconds: float, batch: int, go: Any) -> None:
    client = connect(settings)
    q = ListProducer(client, settings)
    run = q.open_run()
    total, every = int(rate * seconds), batch / rate
    go.wait()
    start = time.monotonic()
    for first in range(0, total, batch):
        due = start + (first // batch) * every
        pause = due - time.monotonic()
        if pause > 0:
            time.sleep(pause)
        q.put([Item(f"{run}:{n}", f"n{n}", time.time()) for n in range(first, min(first + batch, total))])
    q.end_stream()
    q.close()
    client.close()


def consumer(settings: RedisSettings, out: Any, go: Any) -> None:
    client = connect(settings)
    q = ListConsumer(client, settings, consumer="lat", drain=True)
    waits: list[float] = []

    def handle(item: Item) -> None:
        waits.append(time.time() - item.produced_at)

    go.wait()
    consume(q, handle, Console(stream=io.StringIO(), quiet=True), poll=0.05)
    q.close()
    client.close()
    out.put(waits)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rate", type=float, default=2000.0, help="items offered per second")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--batch", type=int, default=1, help="producer and consumer batch")
    opts = parser.parse_args()
    load = os.getloadavg()[0]
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(tmp)
        try:
            settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", queue="lat", batch=opts.batch)
            go, out = CTX.Event(), CTX.Queue()
            procs = [CTX.Process(target=consumer, args=(settings, out, go)),
                     CTX.Process(target=producer, args=(settings, opts.rate, opts.seconds, opts.batch, go))]  # fmt: skip
            for p in procs:
                p.start()
            time.sleep(0.5)  # both connected before the clock starts
            go.set()
            waits = out.get(timeout=opts.seconds * 10 + 60)
            for p in procs:
                p.join(timeout=30)
        finally:
            server.terminate()
            server.wait(timeout=10)
    ms = sorted(w * 1000 for w in waits)

    def pct(p: float) -> float:
        return ms[min(len(ms) - 1, int(p / 100 * len(ms)))]

    print(f"batch {opts.batch}, {opts.rate:g} items/s offered for {opts.seconds:g} s: {len(ms)} items; "
          f"latency ms p50 {pct(50):.2f} p90 {pct(90):.2f} p99 {pct(99):.2f} max {ms[-1]:.2f} "
          f"(mean {statistics.fmean(ms):.2f}); load {load:.1f} -> {os.getloadavg()[0]:.1f}")  # fmt: skip


if __name__ == "__main__":
    main()
