"""Benchmark: pcq's Redis list vs a raw redis-py loop, in the same run (not a test).

One producer process and one consumer process, no-op handler, a throwaway
``redis-server`` (no password, no persistence, on a free port) started by this
script. The clock runs from the moment both processes are told to go until the
consumer holds (raw) or has handled (pcq) the last item.

* raw, batched: ``RPUSH`` of 100 names per call / ``LPOP key 100``;
* raw, unbatched: ``RPUSH`` one name / ``BLPOP`` one;
* pcq, batched / unbatched: :mod:`pcq.core.redis_list` (producer and consumer roles) with ``batch=100`` / ``batch=1``
  through :func:`pcq.core.pattern.produce` and :func:`pcq.core.pattern.consume` -- JSON
  payloads with a schema, claim into a processing list, acknowledged into the
  run's acked bitmap, heartbeat thread running, backpressure check on every push.

Targets (issue 3): pcq batched >= 0.5x raw batched, pcq unbatched >= 0.8x raw
unbatched. Each figure is the median of ``--repeat`` runs. Next to items/s the
table shows CPU time per item (producer + consumer + redis-server): the machine
is shared, so throughput moves with the load, while CPU per item says where the
time goes.

Usage: ``python benchmarks/bench_redis.py [--items N] [--unbatched-items N] [--repeat R]``.
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import shutil
import subprocess
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import redis
from rich.console import Console as RichConsole
from rich.table import Table

from pcq.core.compare.redis_server import free_port
from pcq.core.console import Console
from pcq.core.names import generated_name
from pcq.core.pattern import consume, produce
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.acked import acked_count
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.redis_list.producer import ListProducer
from pcq.core.transport import Item

CTX = mp.get_context("fork")


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
def raw_push(r: redis.Redis, names: list[str], batch: int) -> None:
    """The raw producer loop: ``RPUSH`` one name, or ``batch`` names, per call."""
    if batch == 1:
        for name in names:
            r.rpush("raw", name)
    else:
        for i in range(0, len(names), batch):
            r.rpush("raw", *names[i : i + batch])


def raw_pop(r: redis.Redis, n: int, batch: int) -> None:
    """The raw consumer loop: ``BLPOP`` one, or ``LPOP`` up to ``batch``, until ``n`` came."""
    got = 0
    while got < n:
        if batch == 1:
            got += r.blpop(["raw"], timeout=1) is not None
            continue
        chunk = r.lpop("raw", batch)
        if chunk:
            got += len(chunk)
        elif r.blpop(["raw"], timeout=1) is not None:
            got += 1


def raw_producer(port: int, n: int, batch: int, go: Any, done: Any) -> None:
    r = redis.Redis(port=port)
    names = [generated_name(i) for i in range(n)]
    go.wait()
    cpu = time.process_time()
    raw_push(r, names, batch)
    done.put(("producer", time.process_time() - cpu))
    r.close()


def raw_consumer(port: int, n: int, batch: int, go: Any, done: Any) -> None:
    r = redis.Redis(port=port)
    go.wait()
    cpu = time.process_time()
    raw_pop(r, n, batch)
    done.put(("consumer", time.process_time() - cpu, time.monotonic()))
    r.close()


# pcq ---------------------------------------------------------------------------
def _settings(port: int, batch: int, queue: str) -> RedisSettings:
    return RedisSettings(url=f"redis://127.0.0.1:{port}/0", queue=queue, batch=batch,
                         high_water=max(10_000, batch))  # fmt: skip


def pcq_producer(port: int, n: int, batch: int, queue: str, go: Any, done: Any) -> None:
    settings = _settings(port, batch, queue)
    client = connect(settings)
    q = ListProducer(client, settings)
    run = q.open_run()
    names = [generated_name(i) for i in range(n)]
    quiet = Console(stream=io.StringIO(), quiet=True)
    go.wait()
    cpu = time.process_time()
    produce(q, (Item(f"{run}:{i}", name, time.time()) for i, name in enumerate(names)), quiet,
            batch=batch)  # fmt: skip
    q.close()
    done.put(("producer", time.process_time() - cpu))
    client.close()


def pcq_consumer(port: int, n: int, batch: int, queue: str, go: Any, done: Any) -> None:
    settings = _settings(port, batch, queue)
    client = connect(settings)
    q = ListConsumer(client, settings, consumer=f"bench:{queue}")
    handled = 0
    finished = 0.0

    def noop(item: Item) -> None:
        nonlocal handled, finished
        handled += 1
        if handled == n:
            finished = time.monotonic()

    quiet = Console(stream=io.StringIO(), quiet=True)
    go.wait()
    cpu = time.process_time()
    consume(q, noop, quiet, stop=lambda: handled >= n, poll=0.05)
    q.close()  # flushes the last acks into the acked bitmap
    done.put(("consumer", time.process_time() - cpu, finished))
    client.close()


@dataclass
class Sample:
    """One run: throughput and CPU seconds per item (producer, consumer, Redis)."""

    items_per_second: float
    cpu_us: dict[str, float]

    @property
    def cpu_total(self) -> float:
        return sum(self.cpu_us.values())

    def cpu_text(self) -> str:
        parts = "+".join(f"{self.cpu_us[k]:.1f}" for k in ("producer", "consumer", "redis"))
        return f"{self.cpu_total:.1f} ({parts})"


def redis_cpu(port: int) -> float:
    with redis.Redis(port=port) as r:
        info = r.info("cpu")
    return float(info["used_cpu_user"]) + float(info["used_cpu_sys"])


def measure(prod: Callable[..., None], cons: Callable[..., None], args: tuple[Any, ...], n: int) -> Sample:
    """Run one producer and one consumer process; return throughput and CPU per item."""
    go, done = CTX.Event(), CTX.Queue()
    procs = [CTX.Process(target=prod, args=(*args, go, done)),
             CTX.Process(target=cons, args=(*args, go, done))]  # fmt: skip
    for p in procs:
        p.start()
    time.sleep(0.3)  # let both connect and prepare their items before the clock starts
    server_cpu = redis_cpu(args[0])
    start = time.monotonic()
    go.set()
    reports = {}
    for _ in procs:
        report = done.get(timeout=600)
        reports[report[0]] = report
    for p in procs:
        p.join(timeout=60)
    done.close()
    cpu = {"producer": reports["producer"][1], "consumer": reports["consumer"][1],
           "redis": redis_cpu(args[0]) - server_cpu}  # fmt: skip
    return Sample(n / (reports["consumer"][2] - start), {k: v / n * 1e6 for k, v in cpu.items()})


def all_acked(port: int, queue: str, n: int) -> bool:
    """The pcq run really acknowledged every item (so the figure is honest)."""
    with redis.Redis(port=port) as r:
        runs = r.zrange(f"pcq:{{{queue}}}:runs", 0, -1)
        return len(runs) == 1 and acked_count(r, Keys(queue), runs[0].decode()) == n


def bench(port: int, n: int, batch: int, repeat: int) -> tuple[Sample, Sample]:
    """Median (by throughput) raw and pcq samples of ``repeat`` alternating runs."""
    raws, pcqs = [], []
    for i in range(repeat):
        with redis.Redis(port=port) as r:
            r.flushall()
        raws.append(measure(raw_producer, raw_consumer, (port, n, batch), n))
        queue = f"bench{batch}-{i}"
        pcqs.append(measure(pcq_producer, pcq_consumer, (port, n, batch, queue), n))
        assert all_acked(port, queue, n), "pcq lost items: figure not valid"

    def median(samples: list[Sample]) -> Sample:
        return sorted(samples, key=lambda s: s.items_per_second)[len(samples) // 2]

    return median(raws), median(pcqs)


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
    for col in ("mode", "items", "raw items/s", "pcq items/s", "ratio", "target",
                "raw CPU us/item (prod+cons+redis)", "pcq CPU us/item (prod+cons+redis)"):  # fmt: skip
        table.add_column(col, justify="right")
    for mode, n, raw, pcq, target in rows:
        ratio = pcq.items_per_second / raw.items_per_second
        verdict = "met" if ratio >= target else "MISSED"
        table.add_row(mode, f"{n:,}", f"{raw.items_per_second:,.0f}", f"{pcq.items_per_second:,.0f}",
                      f"{ratio:.2f}x", f">= {target}x {verdict}", raw.cpu_text(), pcq.cpu_text())  # fmt: skip
    RichConsole(width=160).print(table)
    print(f"load average at the end: {os.getloadavg()[0]:.1f} on {os.cpu_count()} CPU(s)")


if __name__ == "__main__":
    main()
