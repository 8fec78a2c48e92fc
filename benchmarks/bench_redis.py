"""Benchmark: pcq's Redis list vs a raw redis-py loop, in the same run (not a test).

One producer process and one consumer process, no-op handler, a throwaway
``redis-server`` (no password, no persistence, on a free port) started by this
script. The clock runs from the moment both processes are told to go until the
consumer holds (raw) or has handled (pcq) the last item.

* raw, batched: ``RPUSH`` of 100 names per call / ``LPOP key 100``;
* raw, unbatched: ``RPUSH`` one name / ``BLPOP`` one;
* pcq, batched / unbatched: :mod:`core.redisq` with ``batch=100`` / ``batch=1``
  through :func:`core.pattern.produce` and :func:`core.pattern.consume` -- JSON
  payloads with a schema, claim into a processing list, acknowledged into the
  run's ledger, heartbeat thread running, backpressure check on every push.

Targets (issue 3): pcq batched >= 0.5x raw batched, pcq unbatched >= 0.8x raw
unbatched. Each figure is the median of ``--repeat`` runs.

Usage: ``python benchmarks/bench_redis.py [--items N] [--unbatched-items N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import shutil
import socket
import statistics
import subprocess
import tempfile
import time
from collections.abc import Callable
from typing import Any

import redis
from rich.console import Console as RichConsole
from rich.table import Table

from core.config import RedisSettings
from core.console import Console
from core.local import generated_name
from core.pattern import consume, produce
from core.redisconn import connect
from core.redisq import RedisQueue
from core.transport import Item

CTX = mp.get_context("fork")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def start_server(workdir: str) -> tuple[subprocess.Popen[bytes], int]:
    port = free_port()
    binary = shutil.which("redis-server") or "/usr/bin/redis-server"
    args = [binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "",
            "--appendonly", "no", "--dir", workdir, "--loglevel", "warning"]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    with redis.Redis(port=port) as probe:
        while True:
            try:
                probe.ping()
                return proc, port
            except redis.ConnectionError:
                if time.monotonic() > deadline:
                    proc.kill()
                    raise
                time.sleep(0.05)


# Raw redis-py loops ------------------------------------------------------------
def raw_producer(port: int, n: int, batch: int, go: Any) -> None:
    r = redis.Redis(port=port)
    names = [generated_name(i) for i in range(n)]
    go.wait()
    if batch == 1:
        for name in names:
            r.rpush("raw", name)
    else:
        for i in range(0, n, batch):
            r.rpush("raw", *names[i : i + batch])
    r.close()


def raw_consumer(port: int, n: int, batch: int, go: Any, done: Any) -> None:
    r = redis.Redis(port=port)
    got = 0
    go.wait()
    while got < n:
        if batch == 1:
            got += r.blpop(["raw"], timeout=1) is not None
            continue
        chunk = r.lpop("raw", batch)
        if chunk:
            got += len(chunk)
        elif r.blpop(["raw"], timeout=1) is not None:
            got += 1
    done.put(time.monotonic())
    r.close()


# pcq ---------------------------------------------------------------------------
def _settings(port: int, batch: int, queue: str) -> RedisSettings:
    return RedisSettings(url=f"redis://127.0.0.1:{port}/0", queue=queue, batch=batch,
                         high_water=max(10_000, batch))  # fmt: skip


def pcq_producer(port: int, n: int, batch: int, queue: str, go: Any) -> None:
    settings = _settings(port, batch, queue)
    client = connect(settings)
    q = RedisQueue(client, settings)
    run = q.open_run()
    names = [generated_name(i) for i in range(n)]
    quiet = Console(stream=io.StringIO(), quiet=True)
    go.wait()
    produce(q, (Item(f"{run}:{i}", name, time.time()) for i, name in enumerate(names)), quiet,
            batch=batch)  # fmt: skip
    client.close()


def pcq_consumer(port: int, n: int, batch: int, queue: str, go: Any, done: Any) -> None:
    settings = _settings(port, batch, queue)
    client = connect(settings)
    q = RedisQueue(client, settings, consumer=f"bench:{queue}")
    handled = 0
    finished = 0.0

    def noop(item: Item) -> None:
        nonlocal handled, finished
        handled += 1
        if handled == n:
            finished = time.monotonic()

    quiet = Console(stream=io.StringIO(), quiet=True)
    go.wait()
    consume(q, noop, quiet, stop=lambda: handled >= n, poll=0.05)
    q.close()  # flushes the last acks into the ledger
    done.put(finished)
    client.close()


def measure(prod: Callable[..., None], cons: Callable[..., None], args: tuple[Any, ...], n: int) -> float:
    """Run one producer and one consumer process; return items per second."""
    go, done = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=prod, args=(*args, go)), CTX.Process(target=cons, args=(*args, go, done))]
    for p in procs:
        p.start()
    time.sleep(0.3)  # let both connect and prepare their items before the clock starts
    start = time.monotonic()
    go.set()
    end = done.get(timeout=600)
    for p in procs:
        p.join(timeout=60)
    done.close()
    return n / (end - start)


def ledger_ok(port: int, queue: str, n: int) -> bool:
    """The pcq run really acknowledged every item (so the figure is honest)."""
    with redis.Redis(port=port) as r:
        runs = r.zrange(f"pcq:{{{queue}}}:runs", 0, -1)
        return len(runs) == 1 and r.scard(f"pcq:{{{queue}}}:run:{runs[0].decode()}:acked") == n


def bench(port: int, n: int, batch: int, repeat: int) -> tuple[float, float]:
    raws, pcqs = [], []
    for i in range(repeat):
        with redis.Redis(port=port) as r:
            r.flushall()
        raws.append(measure(raw_producer, raw_consumer, (port, n, batch), n))
        queue = f"bench{batch}-{i}"
        pcqs.append(measure(pcq_producer, pcq_consumer, (port, n, batch, queue), n))
        assert ledger_ok(port, queue, n), "pcq lost items: figure not valid"
    return statistics.median(raws), statistics.median(pcqs)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000, help="items, batched runs")
    parser.add_argument("--unbatched-items", type=int, default=30_000, help="items, unbatched runs")
    parser.add_argument("--repeat", type=int, default=3)
    opts = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        server, port = start_server(tmp)
        try:
            rows = [
                ("batch 100", opts.items, *bench(port, opts.items, 100, opts.repeat), 0.5),
                ("unbatched", opts.unbatched_items, *bench(port, opts.unbatched_items, 1, opts.repeat), 0.8),
            ]
        finally:
            server.terminate()
            server.wait(timeout=10)
    table = Table(title=f"Redis list, 1 producer / 1 consumer, no-op handler (median of {opts.repeat})")
    for col in ("mode", "items", "raw items/s", "pcq items/s", "ratio", "target"):
        table.add_column(col, justify="right")
    for mode, n, raw, pcq, target in rows:
        verdict = "met" if pcq / raw >= target else "MISSED"
        table.add_row(mode, f"{n:,}", f"{raw:,.0f}", f"{pcq:,.0f}", f"{pcq / raw:.2f}x",
                      f">= {target}x {verdict}")  # fmt: skip
    RichConsole().print(table)


if __name__ == "__main__":
    main()
