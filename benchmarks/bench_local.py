"""Benchmark: pcq's local pipeline vs a raw multiprocessing.Queue loop (not a test).

Both sides move the same number of generated names from one producer process
to 1 or 4 consumer processes with a no-op handler, in the same run, and the
clock covers the whole thing (process start to last join) on both sides.

* raw, unbatched: ``q.put(name)`` / ``q.get()`` per item, one ``None`` per consumer;
* raw, batched: the same with lists of ``--batch`` names per put;
* pcq: :func:`pcq.core.local.run.run_local` (``--quiet``, ``--max-delay 0``), which also
  keeps the exactly-once ledger, records claims and survives ``kill -9``.

Usage: ``python benchmarks/bench_local.py [--items N] [--batched-items N] [--pairs P]
[--only batched|unbatched]``. The table gives, per shape, the median ratio of
the pairs and its range (least - greatest pair).
"""

from __future__ import annotations

import argparse
import io
import multiprocessing as mp
import os
import resource
import statistics
import sys
import time
from collections.abc import Callable
from contextlib import redirect_stderr
from dataclasses import dataclass
from typing import Any

from rich.console import Console
from rich.table import Table

from pcq.core.local.run import LocalConfig, run_local
from pcq.core.names import generated_name
from pcq.core.transport import AckMode

CTX = mp.get_context("fork")


RawQueue = Any  # multiprocessing.Queue (its type is not subscriptable at runtime)


def _raw_producer(q: RawQueue, n: int, batch: int, consumers: int) -> None:
    if batch == 1:
        for i in range(n):
            q.put(generated_name(i))
    else:
        for start in range(0, n, batch):
            q.put([generated_name(i) for i in range(start, min(n, start + batch))])
    for _ in range(consumers):
        q.put(None)


def _raw_consumer(q: RawQueue, batch: int) -> None:
    got = q.get
    if batch == 1:
        while got() is not None:
            pass
    else:
        while (names := got()) is not None:
            for _ in names:  # touch every item, as a handler loop would
                pass


def raw_run(n: int, consumers: int, batch: int) -> float:
    """Seconds for a raw mp.Queue put/get loop of ``n`` items."""
    q: RawQueue = CTX.Queue()
    start = time.perf_counter()
    procs = [CTX.Process(target=_raw_producer, args=(q, n, batch, consumers))]
    procs += [CTX.Process(target=_raw_consumer, args=(q, batch)) for _ in range(consumers)]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    seconds = time.perf_counter() - start
    q.close()
    q.join_thread()
    return seconds


def pcq_run(n: int, consumers: int, batch: int) -> float:
    """Seconds for ``run_local`` with the same shape (checks nothing was lost)."""
    cfg = LocalConfig(
        producers=1, consumers=consumers, items=n, batch=batch, max_delay=0, quiet=True, ack=AckMode.BATCH,
        json=True,
    )
    start = time.perf_counter()
    with redirect_stderr(io.StringIO()):  # the few start/exit lines
        result = run_local(cfg)
    seconds = time.perf_counter() - start
    if result.consumed != n or result.lost or result.duplicates:
        raise SystemExit(f"pcq run lost or duplicated items: {result}")
    return seconds


@dataclass
class Row:
    label: str
    items: int
    raw: float  # median items/s
    pcq: float  # median items/s
    ratio: float  # median of the per-pair ratios pcq/raw
    spread: tuple[float, float]  # least and greatest per-pair ratio
    raw_cpu: float  # least CPU microseconds per item, every process counted
    pcq_cpu: float
    target: float  # minimum pcq/raw ratio


def _cpu_seconds() -> float:
    """CPU seconds used so far by this process and its reaped children."""
    total = 0.0
    for who in (resource.RUSAGE_SELF, resource.RUSAGE_CHILDREN):
        usage = resource.getrusage(who)
        total += usage.ru_utime + usage.ru_stime
    return total


def _timed(
    fn: Callable[[int, int, int], float], n: int, consumers: int, batch: int
) -> tuple[float, float]:
    """Items/s of one run, and CPU microseconds per item of every process."""
    cpu = _cpu_seconds()
    rate = n / fn(n, consumers, batch)
    return rate, (_cpu_seconds() - cpu) * 1e6 / n


def measure(n: int, consumers: int, batch: int, pairs: int, target: float) -> Row:
    """Run raw and pcq back to back ``pairs`` times, alternating which goes first.

    The machine is shared and its load drifts: a ratio taken within one pair
    (seconds apart) is far steadier than two bests taken minutes apart.
    """
    raws, ours, ratios, raw_cpu, pcq_cpu = [], [], [], [], []
    for k in range(pairs):
        order = (raw_run, pcq_run) if k % 2 == 0 else (pcq_run, raw_run)
        got = {fn: _timed(fn, n, consumers, batch) for fn in order}
        (r, rc), (p, pc) = got[raw_run], got[pcq_run]
        raws.append(r)
        ours.append(p)
        ratios.append(p / r)
        raw_cpu.append(rc)
        pcq_cpu.append(pc)
    label = f"1 -> {consumers}, batch {batch}"
    return Row(
        label, n, statistics.median(raws), statistics.median(ours), statistics.median(ratios),
        (min(ratios), max(ratios)), min(raw_cpu), min(pcq_cpu), target,
    )


def main(argv: list[str] | None = None) -> int:
    """Run every shape on both sides and print the table."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--items", type=int, default=300_000, help="items, unbatched runs")
    parser.add_argument("--batched-items", type=int, default=3_000_000, help="items, batched")
    parser.add_argument("--batch", type=int, default=100)
    parser.add_argument("--pairs", type=int, default=5, help="raw/pcq run pairs per shape")
    parser.add_argument("--only", choices=("batched", "unbatched"), help="run only these shapes")
    args = parser.parse_args(argv)
    shapes = [(1, args.items, 1.0), (args.batch, args.batched_items, 0.7)]
    if args.only:
        shapes = shapes[1:] if args.only == "batched" else shapes[:1]
    rows = []
    for consumers in (1, 4):
        for batch, n, target in shapes:
            row = measure(n, consumers, batch, args.pairs, target)
            rows.append(row)
            print(f"{row.label}: raw {row.raw:,.0f}/s, pcq {row.pcq:,.0f}/s", file=sys.stderr)
    table = Table(title=f"pcq local vs raw multiprocessing.Queue (medians of {args.pairs} pairs)")
    columns = (
        "producer -> consumers", "items", "raw items/s", "pcq items/s", "pcq / raw",
        "min - max", "target", "met", "raw CPU us/item", "pcq CPU us/item",
    )
    for col in columns:
        table.add_column(col, justify="left" if col == columns[0] else "right")
    for r in rows:
        table.add_row(
            r.label, f"{r.items:,}", f"{r.raw:,.0f}", f"{r.pcq:,.0f}", f"{r.ratio:.2f}x",
            f"{r.spread[0]:.2f} - {r.spread[1]:.2f}", f">= {r.target:.1f}x", "yes" if r.ratio >= r.target else "NO",
            f"{r.raw_cpu:.2f}", f"{r.pcq_cpu:.2f}",
        )
    Console(width=160).print(table)
    load = os.getloadavg()
    print(f"load average at the end: {load[0]:.2f} (5 min: {load[1]:.2f}) on {os.cpu_count()} CPUs")
    return 0


if __name__ == "__main__":
    sys.exit(main())
