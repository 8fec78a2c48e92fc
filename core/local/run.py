"""`pcq local`: the seed's multiprocessing producer/consumer demo, corrected.

The seed started daemon consumers that were killed at exit with items still
queued, never put anything on its queue and joined only the producers. Here:

* consumers stop through end-of-stream sentinels, sent once every item is
  recorded as handled in the shared state -- never by being killed as daemons;
* a consumer that dies (even ``kill -9``) has its in-flight items put back and
  is replaced (the stdlib's ProcessPoolExecutor breaks the whole pool instead);
* Ctrl-C stops producing, lets consumers finish the item in hand, reports what
  was never consumed and reaps every child before exiting with 130.

This module holds the run's configuration and the code each child process
runs: the parent builds one :class:`~pcq.core.local.channel.Channel` and hands
it to every child, which builds its role object over it (a
:class:`~pcq.core.local.producer.LocalProducer` or
:class:`~pcq.core.local.producer.LocalRunProducer`, a
:class:`~pcq.core.local.consumer.LocalConsumer`);
:mod:`pcq.core.local.supervisor` is the parent's loop.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

from pcq.core.console import Console, DemoConsole
from pcq.core.local.channel import Channel
from pcq.core.local.children import ignore_sigint, sigint_blocked
from pcq.core.local.consumer import LocalConsumer
from pcq.core.local.items import ItemRun, make_item
from pcq.core.local.plan import Plan
from pcq.core.local.producer import LocalProducer, LocalRunProducer
from pcq.core.local.result import LocalResult
from pcq.core.local.shared_state import SharedState
from pcq.core.local.supervisor import Supervisor
from pcq.core.names import generated_name
from pcq.core.pattern import consume, consume_batches, produce, produce_batches
from pcq.core.transport import AckMode, Item

__all__ = ["Launcher", "LocalConfig", "default_start_method", "make_handler", "run_local"]

def default_start_method() -> str:
    """``fork`` where available (Linux), else the platform default.

    fork starts children in about a millisecond and is what the seed article
    assumed; Python 3.14 made ``forkserver`` the Linux default because forking
    a *multi-threaded* parent can deadlock -- our parent starts no threads.
    """
    return "fork" if "fork" in mp.get_all_start_methods() else mp.get_start_method()


@dataclass(frozen=True)
class LocalConfig:
    """Everything a local run needs, built once from the CLI options.

    ``producers``/``consumers`` of ``None`` mean: one producer per name list
    (three for the seed's lists), twice as many consumers as producers.
    """

    producers: int | None = None
    consumers: int | None = None
    items: int | None = None
    names: tuple[str, ...] | None = None  # e.g. the lines of --names-file
    max_delay: float = 0.5
    seed: int | None = None
    start_method: str = field(default_factory=default_start_method)
    queue_size: int | None = None
    batch: int = 1
    quiet: bool = False
    json: bool = False
    max_deliveries: int = 5
    ack: AckMode = AckMode.ITEM  # when consumers acknowledge (see AckMode)
    kill_consumer_after: int | None = None  # test hook: consumer #0 SIGKILLs itself
    fail_on: str | None = None  # test hook: the handler raises on bodies containing this
    poll: float = 0.1  # how often an idle consumer looks at the stop flag


# --------------------------------------------------------------- the children
def producer_main(
    channel: Channel,
    index: int,
    span: tuple[int, int],
    bodies: list[str] | None,
    console: Console,
    batch: int,
) -> None:
    """A producer process: put items ``start .. end - 1`` on the queue."""
    ignore_sigint()
    stop = channel.state.stop_check()
    try:
        if batch == 1:  # one message per item anyway: per-item Items cost no more
            start, end = span
            names = bodies if bodies is not None else map(generated_name, range(start, end))
            now = time.time
            items = (make_item(str(i), name, now(), 0) for i, name in zip(range(start, end), names))
            produce(LocalProducer(channel, index), items, console, stop=stop)
        else:
            batches = _runs(span, bodies, batch)
            produce_batches(LocalRunProducer(channel, index), batches, console, stop=stop)
    finally:
        channel.close()


def _runs(span: tuple[int, int], bodies: list[str] | None, batch: int) -> Iterator[ItemRun]:
    """The producer's items, ``batch`` at a time, each batch stamped when it is made.

    An :class:`ItemRun` carries ids, bodies and one time; a
    :class:`~pcq.core.local.producer.LocalRunProducer` sends it without ever
    building the :class:`Item` objects.
    """
    start, end = span
    now = time.time
    for first in range(start, end, batch):
        last = min(end, first + batch)
        if bodies is not None:
            names = bodies[first - start : last - start]
        else:
            names = list(map(generated_name, range(first, last)))
        yield ItemRun(first, names, now())


def _no_work(item: Item) -> None:
    """Handle an item instantly."""


def make_handler(cfg: LocalConfig, serial: int) -> Callable[[Item], None]:
    """The simulated work: sleep a random time in ``[0, max_delay]`` per item.

    Each consumer draws from its own RNG seeded from ``--seed`` and its serial
    number, so a run is reproducible per consumer.
    """
    seed, max_delay = cfg.seed, cfg.max_delay
    kill_after, fail_on = cfg.kill_consumer_after, cfg.fail_on
    if max_delay == 0 and kill_after is None and fail_on is None:
        return _no_work  # the benchmark's no-op handler: skip the bookkeeping
    rng = random.Random(None if seed is None else seed * 1_000_003 + serial)
    started = 0

    def handle(item: Item) -> None:
        nonlocal started
        started += 1
        if kill_after is not None and serial == 0 and started == kill_after:
            os.kill(os.getpid(), signal.SIGKILL)  # test hook: die mid-item
        if max_delay > 0:
            time.sleep(rng.uniform(0, max_delay))
        if fail_on is not None and fail_on in item.body:
            raise ValueError(f"refusing {item.body!r}")

    return handle


def consumer_main(
    channel: Channel, slot: int, serial: int, console: Console, cfg: LocalConfig
) -> None:
    """A consumer process: handle items until a sentinel (or the stop flag)."""
    ignore_sigint()
    consumer = LocalConsumer(channel, slot, serial)
    stop = channel.state.stop_check()
    try:
        handle = make_handler(cfg, serial)
        if cfg.ack is AckMode.BATCH:
            consume_batches(consumer, handle, console, stop=stop, poll=cfg.poll)
        else:
            consume(consumer, handle, console, stop=stop, poll=cfg.poll)
    finally:
        consumer.close()


# ----------------------------------------------------------------- the parent
class Launcher:
    """Starts the child processes of one run (the supervisor calls it); each gets the channel."""

    def __init__(
        self, ctx: BaseContext, channel: Channel, plan: Plan, console: Console, cfg: LocalConfig
    ) -> None:
        self.ctx, self.channel, self.plan, self.console, self.cfg = ctx, channel, plan, console, cfg

    def producer(self, index: int) -> BaseProcess:
        """Start producer ``index``."""
        start, end = self.plan.ranges[index]
        bodies = None if self.plan.names is None else self.plan.bodies(start, end - start)
        args = (self.channel, index, (start, end), bodies, self.console, self.cfg.batch)
        return self._start(producer_main, args, f"pcq-producer-{index}")

    def consumer(self, slot: int, serial: int) -> BaseProcess:
        """Start a consumer in ``slot`` (``serial`` numbers every consumer ever started)."""
        args = (self.channel, slot, serial, self.console, self.cfg)
        return self._start(consumer_main, args, f"pcq-consumer-{serial}")

    def _start(self, target: Callable[..., None], args: tuple, name: str) -> BaseProcess:
        proc = self.ctx.Process(target=target, args=args, name=name)  # type: ignore[attr-defined]
        with sigint_blocked():
            proc.start()
        return proc


def run_local(cfg: LocalConfig, launcher: type[Launcher] | None = None) -> LocalResult:
    """Run one local producer/consumer session and return its result (from the shared state).

    ``launcher`` lets tests start misbehaving children (default: :class:`Launcher`).
    """
    plan = Plan.build(producers=cfg.producers, items=cfg.items, names=cfg.names)
    producers = len(plan.ranges)
    consumers = cfg.consumers or 2 * producers
    max_restarts = 100 + 10 * consumers  # a crash loop is a failure, not a retry policy
    ctx = mp.get_context(cfg.start_method)
    state = SharedState(ctx, plan.total, consumers, consumers + max_restarts + 1, producers)
    channel = Channel(ctx, state, queue_size=cfg.queue_size, max_deliveries=cfg.max_deliveries)
    console = DemoConsole(ctx.Lock(), sys.stderr if cfg.json else sys.stdout, quiet=cfg.quiet)
    sup = Supervisor(
        channel, plan, (launcher or Launcher)(ctx, channel, plan, console, cfg), console,
        consumers=consumers, max_restarts=max_restarts, grace=cfg.max_delay + 5.0,
    )
    previous = _install_stop_handlers(sup.interrupt)
    try:
        result = sup.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        channel.close()
    console.parent_exiting()
    return result.finish(start_method=cfg.start_method, batch=cfg.batch, queue_size=cfg.queue_size)


def _install_stop_handlers(callback: Callable[[int], None]) -> dict[int, Any]:
    """Ctrl-C and SIGTERM (``kill PID``) both mean: stop cleanly. Returns the old handlers."""
    if threading.current_thread() is not threading.main_thread():
        return {}  # signal handlers can only be set from the main thread

    def on_signal(signum: int, frame: object) -> None:
        callback(signum)

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


