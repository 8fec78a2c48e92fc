"""Benchmark: RQ jobs/s (forking Worker, SimpleWorker) next to the Redis list, same run.

Usage::

    .venv/bin/python benchmarks/bench_rq.py [--fork-jobs 300] [--simple-jobs 1000]
                                            [--list-items 40000] [--json]

Starts its own ``redis-server`` on a free port. Every figure is measured in
this run, on this machine; nothing is hard-coded. The handler does no work
(no sleep, no console line) but still writes pcq's ledger, as in real runs.

* RQ, forking ``Worker``: one ``fork()`` per job, plus several Redis round trips
  per job for RQ's bookkeeping (registries, execution, heartbeat, result).
* RQ, ``SimpleWorker``: the same bookkeeping, no fork.
* pcq list mode (``pcq.core.redis_list.consumer``), batch 1 and batch 100: one Lua call per
  batch acknowledges the last batch and claims the next.
* raw list: ``RPUSH`` 100 items / ``LPOP key 100``, no reliability at all.

Producer and consumer run one after the other (enqueue everything, then time
one consumer draining it), so each figure is the consumer side alone; the
enqueue rate is shown beside it. Every run is checked against its ledger: one
that lost an item aborts the benchmark.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from redis import Redis

from pcq.consumer.run import run_consumer
from pcq.core.compare.redis_server import ThrowawayRedis, find_redis_server
from pcq.core.console import Console
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.rq_jobs.producer import RqOptions, enqueue, open_queue, read_tally
from pcq.core.rq_jobs.workers import PcqSimpleWorker, PcqWorker
from pcq.core.transport import Item
from pcq.core.work import noop
from pcq.producer.run import run_producer


@contextmanager
def redis_server() -> Iterator[tuple[Redis, str]]:
    """A throw-away redis-server (no persistence) on a free port: a client and its URL."""
    server = ThrowawayRedis(find_redis_server() or "redis-server")
    with server, Redis.from_url(server.url) as conn:
        yield conn, server.url


def make_items(run: str, n: int) -> list[Item]:
    now = time.time()
    return [Item(f"{run}:{k}", f"item-{k}", now) for k in range(n)]


def bench_rq(
    conn: Redis, settings: RedisSettings, worker_class: type, n: int, run: str
) -> dict[str, Any]:
    """Enqueue ``n`` jobs, then time one in-process burst worker draining them."""
    conn.flushdb()
    queue = open_queue(conn, settings.queue)
    items = make_items(run, n)
    t0 = time.perf_counter()
    enqueue(queue, settings, run, items, RqOptions())
    enqueue_s = time.perf_counter() - t0
    worker = worker_class([queue], connection=conn, name=f"bench-{run}")
    t0 = time.perf_counter()
    worker.work(burst=True, logging_level="WARNING")
    work_s = time.perf_counter() - t0
    tally = read_tally(conn, queue, run, items, retries=settings.max_deliveries - 1)
    if tally["consumed"] != n or tally["lost"]:
        raise SystemExit(f"bench {run}: consumed {tally['consumed']} of {n}, lost {tally['lost']}")
    return {"n": n, "enqueue_per_s": round(n / enqueue_s), "per_s": round(n / work_s, 1)}


def bench_list_mode(conn: Redis, settings: RedisSettings, n: int, batch: int) -> dict[str, Any]:
    """pcq's reliable list (pcq.core.redis_list.consumer): push ``n`` items, then one consumer drains them."""
    conn.flushdb()
    settings = settings.with_overrides(batch=batch)
    quiet = Console(quiet=True, stream=io.StringIO())
    t0 = time.perf_counter()
    run_producer(settings, (f"item-{k}" for k in range(n)), quiet, timeout=0)
    push_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    stats = run_consumer(settings, quiet, drain=True, handler=noop, poll=0.05)
    work_s = time.perf_counter() - t0
    if stats.handled != n:
        raise SystemExit(f"list mode batch {batch}: handled {stats.handled} of {n}")
    return {"n": n, "enqueue_per_s": round(n / push_s), "per_s": round(n / work_s, 1)}


def bench_raw_list(conn: Redis, n: int, batch: int = 100) -> dict[str, Any]:
    """RPUSH ``batch`` items / LPOP ``batch``: the floor under any Redis-list design."""
    conn.flushdb()
    payload = [b'{"v":1,"id":"raw:0","body":"x"}'] * batch
    t0 = time.perf_counter()
    for _ in range(n // batch):
        conn.rpush("raw", *payload)
    push_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    got = 0
    while got < n:
        got += len(conn.lpop("raw", batch) or [])
    pop_s = time.perf_counter() - t0
    return {"n": n, "enqueue_per_s": round(n / push_s), "per_s": round(n / pop_s, 1)}


ROWS = (
    ("rq_fork", "RQ, forking Worker (jobs)"),
    ("rq_simple", "RQ, SimpleWorker (jobs)"),
    ("list_unbatched", "pcq list, batch 1 (items)"),
    ("list_batched", "pcq list, batch 100 (items)"),
    ("raw_list", "raw RPUSH/LPOP x100 (items)"),
)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--fork-jobs", type=int, default=300)
    parser.add_argument("--simple-jobs", type=int, default=1000)
    parser.add_argument("--list-items", type=int, default=40000)
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)
    os.environ.update({"PCQ_QUIET": "1", "PCQ_MAX_DELAY": "0", "PCQ_MIN_DELAY": "0"})
    logging.getLogger("rq").setLevel(logging.WARNING)

    results: dict[str, Any] = {}
    with redis_server() as (conn, url):
        settings = RedisSettings(
            url=url, queue="bench", max_delay=0, high_water=0
        )  # enqueue everything first, then drain
        results["rq_fork"] = bench_rq(conn, settings, PcqWorker, args.fork_jobs, "fork")
        results["rq_simple"] = bench_rq(conn, settings, PcqSimpleWorker, args.simple_jobs, "simple")
        results["list_unbatched"] = bench_list_mode(conn, settings, args.list_items // 4, 1)
        results["list_batched"] = bench_list_mode(conn, settings, args.list_items, 100)
        results["raw_list"] = bench_raw_list(conn, args.list_items * 5)

    if args.json:
        print(json.dumps(results))
        return 0
    print(f"{'consumer side of':<32}{'n':>8}{'drained/s':>14}{'enqueued/s':>14}")
    for key, label in ROWS:
        row = results[key]
        print(f"{label:<32}{row['n']:>8}{row['per_s']:>14,.0f}{row['enqueue_per_s']:>14,}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
