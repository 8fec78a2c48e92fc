"""Benchmark: the producer's window of pushes in flight, for several sizes (not a test).

What ``WINDOW`` in :mod:`pcq.core.redis_list.pushes` is chosen from. The
producer alone (no consumer, no high-water mark: nothing but pushes), as
``pcq produce`` runs it (:class:`ListRunProducer`, bodies in), into a
throwaway ``redis-server``; one queue per window size per round, the sizes
interleaved within each round so load changes hit them alike. Per push:
the producer's own CPU (``time.process_time``, its heartbeat thread
included), its wall time, and redis-server's CPU (``INFO cpu``).

Usage: ``python benchmarks/bench_pushes.py [--items N] [--batch B] [--rounds R]
[--windows 1,2,4,8,16]``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time

import redis
from bench_redis import start_server

from pcq.core.names import generated_name
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list import pushes
from pcq.core.redis_list.producer import BodyRun, ListProducer, ListRunProducer


def server_cpu(client: redis.Redis) -> float:
    info = client.info("cpu")
    return float(info["used_cpu_sys"]) + float(info["used_cpu_user"])


def one(port: int, window: int, names: list[str], batch: int, queue: str) -> tuple[float, ...]:
    """Push ``names`` with ``window`` pushes in flight; return CPU, wall, server CPU per push (us)."""
    pushes.WINDOW = window  # read at every send
    settings = RedisSettings(url=f"redis://127.0.0.1:{port}/0", queue=queue, batch=batch,
                             high_water=0)  # fmt: skip
    client = connect(settings)
    admin = redis.Redis(port=port)
    producer = ListProducer(client, settings)
    run = producer.open_run()
    fast = ListRunProducer(producer)
    chunks = [names[i : i + batch] for i in range(0, len(names), batch)]
    server0, cpu0, wall0 = server_cpu(admin), time.process_time(), time.perf_counter()
    first = 0
    for chunk in chunks:
        fast.put(BodyRun(run, first, chunk, 0.0))
        first += len(chunk)
    producer.flush()
    wall, cpu = time.perf_counter() - wall0, time.process_time() - cpu0
    server = server_cpu(admin) - server0
    producer.end_stream()
    producer.close()
    assert admin.llen(f"pcq:{{{queue}}}:queue") == len(chunks)
    admin.flushall()
    admin.close()
    client.close()
    n = len(chunks)
    return cpu / n * 1e6, wall / n * 1e6, server / n * 1e6


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--items", type=int, default=20000)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--windows", default="1,2,4,8,16")
    args = ap.parse_args()
    windows = [int(w) for w in args.windows.split(",")]
    names = [generated_name(i) for i in range(args.items)]
    results: dict[int, list[tuple[float, ...]]] = {w: [] for w in windows}
    with tempfile.TemporaryDirectory() as workdir:
        proc, port = start_server(workdir)
        try:
            for r in range(args.rounds):
                print(f"round {r + 1}, load average {os.getloadavg()[0]:.2f}")
                for w in windows:
                    got = one(port, w, names, args.batch, f"bench-{r}-{w}")
                    results[w].append(got)
                    print(f"  window {w:>3}: producer CPU {got[0]:6.1f} us/push, wall "
                          f"{got[1]:6.1f} us/push, redis-server CPU {got[2]:5.1f} us/push")  # fmt: skip
        finally:
            proc.terminate()
            proc.wait(10)
    print(f"medians ({args.items} items, batch {args.batch}, {args.rounds} rounds):")
    for w in windows:
        cpu, wall, server = (statistics.median(x[i] for x in results[w]) for i in range(3))
        print(f"  window {w:>3}: producer CPU {cpu:6.1f}, wall {wall:6.1f}, "
              f"redis-server CPU {server:5.1f} us/push")  # fmt: skip


if __name__ == "__main__":
    main()
