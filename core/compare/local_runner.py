"""The local transport under a comparison workload.

This is ``pcq local`` (its :class:`~pcq.core.local.supervisor.Supervisor`,
:class:`~pcq.core.local.channel.Channel`, :class:`~pcq.core.local.shared_state.SharedState`
and role objects, unchanged) with two differences: the producer makes the
workload's padded bodies, and the consumer runs the workload's handler and
stamps, in shared memory, when each item was handled, which gives the latencies.

Children start through ``forkserver``: the comparison's parent runs threads
(Rich's progress refresh, the RSS sampler), and forking a multi-threaded
process can leave a lock held forever in the child. The fork server is a clean
single-threaded process, preloaded with this module so a child starts in
milliseconds.
"""

from __future__ import annotations

import multiprocessing as mp
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from pcq.core.compare.metrics import RssSampler, RunMetrics, Ticker
from pcq.core.compare.workload import Workload, make_body, make_work
from pcq.core.console import Console, QuietConsole
from pcq.core.local.channel import Channel
from pcq.core.local.children import ignore_sigint
from pcq.core.local.consumer import LocalConsumer
from pcq.core.local.plan import Plan
from pcq.core.local.producer import LocalProducer
from pcq.core.local.run import Launcher, LocalConfig
from pcq.core.local.shared_state import SharedState
from pcq.core.local.supervisor import Supervisor
from pcq.core.pattern import consume_batches, produce
from pcq.core.transport import Item

__all__ = ["compare_context", "run_local_compare"]

Progress = Callable[[int], None]


def compare_context() -> BaseContext:
    """The multiprocessing context every comparison child starts from (see module doc)."""
    if "forkserver" not in mp.get_all_start_methods():  # pragma: no cover - not Linux
        return mp.get_context("spawn")
    ctx = mp.get_context("forkserver")
    ctx.set_forkserver_preload(["pcq.core.compare.local_runner", "pcq.core.compare.redis_runner"])
    return ctx


@dataclass(frozen=True)
class WorkPlan(Plan):
    """A plan whose bodies are the workload's padded ones (the supervisor re-sends from it)."""

    payload_bytes: int = 16

    def bodies(self, start: int, count: int) -> list[str]:
        return [make_body(i, self.payload_bytes) for i in range(start, start + count)]


READY_TIMEOUT = 30.0


def _wait_ready(ready_raw: Any, consumers: int, state: SharedState) -> None:
    """Hold the first item back until every consumer is up, as the Redis runners do.

    Otherwise the items wait for consumers to start and the run measures
    process start-up, not the queue.
    """
    ready = memoryview(ready_raw).cast("B").cast("q")
    deadline = time.monotonic() + READY_TIMEOUT
    while sum(ready.tolist()) < consumers and not state.stopping():
        if time.monotonic() > deadline:
            break  # measure anyway; a consumer that never starts shows in the figures
        time.sleep(0.001)


def producer_main(
    channel: Channel, index: int, span: tuple[int, int], size: int, console: Console, batch: int,
    ready: Any = None, consumers: int = 0,
) -> None:
    """A producer process: put the workload's items ``span[0] .. span[1] - 1``."""
    ignore_sigint()
    producer = LocalProducer(channel, index)
    try:
        if ready is not None:
            _wait_ready(ready, consumers, channel.state)
        now = time.time
        items = (Item(str(i), make_body(i, size), now()) for i in range(*span))
        produce(producer, items, console, batch=batch, stop=channel.state.stopping)
    finally:
        channel.close()


def consumer_main(
    channel: Channel, slot: int, serial: int, console: Console, spec: str, stamps_raw: Any,
    counts_raw: Any, ready_raw: Any,
) -> None:
    """A consumer process: run the workload's handler, stamp ``handled_at`` per item."""
    ignore_sigint()
    consumer = LocalConsumer(channel, slot, serial)
    memoryview(ready_raw).cast("B").cast("q")[serial] = 1
    work = make_work(spec)
    stamps = memoryview(stamps_raw).cast("B").cast("d")
    counts = memoryview(counts_raw).cast("B").cast("q")
    clock = time.time

    def handle(item: Item) -> None:
        work(item)
        stamps[int(item.id)] = clock()
        counts[serial] += 1

    try:
        # Batches are acknowledged whole (AckMode.BATCH), as a quiet `pcq local --ack batch`.
        consume_batches(consumer, handle, console, stop=channel.state.stopping, poll=0.1)
    finally:
        consumer.close()


class CompareLauncher(Launcher):
    """Starts :func:`producer_main` / :func:`consumer_main` instead of the demo's."""

    def __init__(
        self, ctx: BaseContext, channel: Channel, plan: WorkPlan, console: Console,
        workload: Workload, stamps: Any, counts: Any, consumers: int,
    ) -> None:
        super().__init__(ctx, channel, plan, console, LocalConfig(batch=workload.batch))
        self.workload, self.stamps, self.counts = workload, stamps, counts
        self.ready, self.consumers = ctx.RawArray("q", len(counts)), consumers  # type: ignore[attr-defined]
        self.started: list[int] = []

    def producer(self, index: int) -> BaseProcess:
        span = self.plan.ranges[index]
        w = self.workload
        args = (self.channel, index, span, w.payload_bytes, self.console, w.batch, self.ready, self.consumers)
        return self._start(producer_main, args, f"pcq-cmp-producer-{index}")

    def consumer(self, slot: int, serial: int) -> BaseProcess:
        spec = str(self.workload.work)
        args = (self.channel, slot, serial, self.console, spec, self.stamps, self.counts, self.ready)
        proc = self._start(consumer_main, args, f"pcq-cmp-consumer-{serial}")
        self.started.append(proc.pid or 0)
        return proc


def run_local_compare(
    workload: Workload, consumers: int, repeat: int, progress: Progress, ctx: BaseContext
) -> RunMetrics:
    """Run ``workload`` through the local transport with ``consumers`` processes."""
    total = workload.items
    plan = WorkPlan(ranges=((0, total),), names=None, payload_bytes=workload.payload_bytes)
    max_restarts = 10 + 2 * consumers
    state = SharedState(ctx, total, consumers, consumers + max_restarts + 1, 1)
    channel = Channel(ctx, state)
    stamps, counts = ctx.RawArray("d", total), ctx.RawArray("q", consumers + max_restarts + 1)
    console = QuietConsole(ctx.Lock(), sys.stderr, quiet=True)
    launcher = CompareLauncher(ctx, channel, plan, console, workload, stamps, counts, consumers)
    sup = Supervisor(
        channel, plan, launcher, console,
        consumers=consumers, max_restarts=max_restarts, grace=5.0 + workload.work.ms / 1000,
    )
    done = memoryview(counts).cast("B").cast("q")
    with RssSampler(lambda: launcher.started) as rss, Ticker(lambda: progress(sum(done.tolist()))):
        started = time.perf_counter()
        try:
            result = sup.run()
        finally:
            channel.close()
        wall = time.perf_counter() - started
    produced_at = state.produced_at
    handled = memoryview(stamps).cast("B").cast("d")
    pairs = [(produced_at[i], handled[i]) for i in range(total) if handled[i] > 0]
    notes = [result.failure] if result.failure else []
    return RunMetrics.build(
        transport="local", consumers=consumers, repeat=repeat, items=total, stamps=pairs,
        per_consumer={str(pid): n for pid, n in result.per_consumer.items()},
        wall_seconds=wall, peak_rss=rss.peak, lost=result.lost + result.not_produced,
        duplicates=result.duplicates, redelivered=result.redelivered,
        dead_letters=len(result.dead_letters), notes=notes,
    )

