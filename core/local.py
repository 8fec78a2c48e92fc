"""`pcq local`: the seed's multiprocessing producer/consumer demo, corrected.

The seed started daemon consumers that were killed at exit with items still
queued, never put anything on its queue and joined only the producers. Here:

* consumers stop through end-of-stream sentinels, sent once every item is
  recorded as handled in a shared ledger -- never by being killed as daemons;
* a consumer that dies (even ``kill -9``) has its in-flight items put back and
  is replaced (the stdlib's ProcessPoolExecutor breaks the whole pool instead);
* Ctrl-C stops producing, lets consumers finish the item in hand, reports what
  was never consumed and reaps every child before exiting with 130.

This module holds the run's configuration, the item plan and the code each
child process runs; :mod:`core.supervisor` is the parent's loop.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import random
import signal
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any, TextIO

from core.console import Console
from core.mpqueue import ItemRun, Ledger, LocalQueue, make_item
from core.pattern import consume, produce, produce_batches
from core.report import LocalResult
from core.supervisor import Supervisor
from core.transport import Item

__all__ = [
    "SEED_NAMES", "DemoConsole", "LocalConfig", "Plan", "default_start_method", "discard_stream",
    "run_local", "stop_helpers",
]

# The seed article's three lists, one producer each.
SEED_NAMES: tuple[tuple[str, ...], ...] = (
    ("Master Shake", "Meatwad", "Frylock", "Carl"),
    ("Early", "Rusty", "Sheriff", "Granny", "Lil"),
    ("Rick", "Morty", "Jerry", "Summer", "Beth"),
)
_FLAT = tuple(name for names in SEED_NAMES for name in names)


def default_start_method() -> str:
    """``fork`` where available (Linux), else the platform default.

    fork starts children in about a millisecond and is what the seed article
    assumed; Python 3.14 made ``forkserver`` the Linux default because forking
    a *multi-threaded* parent can deadlock -- our parent starts no threads.
    """
    return "fork" if "fork" in mp.get_all_start_methods() else mp.get_start_method()


def generated_name(index: int) -> str:
    """Name of generated item ``index`` (``--items N``): a seed name plus a number."""
    return f"{_FLAT[index % len(_FLAT)]} #{index}"


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
    kill_consumer_after: int | None = None  # test hook: consumer #0 SIGKILLs itself
    fail_on: str | None = None  # test hook: the handler raises on bodies containing this
    poll: float = 0.1  # how often an idle consumer looks at the stop flag


@dataclass(frozen=True)
class Plan:
    """Which items exist and which producer makes which: ``ranges[p] = (start, end)``."""

    ranges: tuple[tuple[int, int], ...]
    names: tuple[str, ...] | None  # None: generated names

    @property
    def total(self) -> int:
        """How many items the run is meant to produce."""
        return self.ranges[-1][1] if self.ranges else 0

    def bodies(self, start: int, count: int) -> list[str]:
        """Bodies of items ``start .. start + count - 1``."""
        if self.names is not None:
            return list(self.names[start : start + count])
        return [generated_name(i) for i in range(start, start + count)]

    @classmethod
    def build(cls, cfg: LocalConfig) -> Plan:
        """Split the items of ``cfg`` across its producers (contiguous ranges)."""
        if cfg.items is None and cfg.names is None and cfg.producers in (None, len(SEED_NAMES)):
            sizes = [len(names) for names in SEED_NAMES]
            return cls(_ranges(sizes), _FLAT)
        total = cfg.items if cfg.items is not None else len(cfg.names or _FLAT)
        producers = cfg.producers or len(SEED_NAMES)
        sizes = [total // producers + (p < total % producers) for p in range(producers)]
        names = None if cfg.items is not None else (cfg.names or _FLAT)
        return cls(_ranges(sizes), names)


def _ranges(sizes: list[int]) -> tuple[tuple[int, int], ...]:
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return tuple(out)


class DemoConsole(Console):
    """The demo's console: a reader that went away (``pcq local | head``) silences
    the lines instead of killing, one by one, every process that prints."""

    def line(self, text: str) -> None:
        """Write like :meth:`Console.line`; on a closed pipe, discard from now on."""
        try:
            super().line(text)
        except BrokenPipeError:
            discard_stream(self.stream or sys.stdout)


def discard_stream(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at /dev/null (this process only), so that
    neither later writes nor the flush at exit fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)


# --------------------------------------------------------------- the children
def _child_signals() -> None:
    # The terminal sends Ctrl-C to the whole process group; only the parent
    # decides what it means. SIGINT was blocked while we were started, so set
    # "ignore" first, then unblock (a pending SIGINT is dropped, not raised).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


def producer_main(
    queue: LocalQueue,
    index: int,
    span: tuple[int, int],
    bodies: list[str] | None,
    console: Console,
    batch: int,
) -> None:
    """A producer process: put items ``start .. end - 1`` on the queue."""
    _child_signals()
    queue.attach_producer(index)
    try:
        if batch == 1:  # one message per item anyway: per-item Items cost no more
            start, end = span
            names = bodies if bodies is not None else map(generated_name, range(start, end))
            now = time.time
            items = (make_item(str(i), name, now(), 0) for i, name in zip(range(start, end), names))
            produce(queue, items, console, stop=queue.stop_check())
        else:
            produce_batches(queue, _runs(span, bodies, batch), console, stop=queue.stop_check())
    finally:
        queue.close()


def _runs(span: tuple[int, int], bodies: list[str] | None, batch: int) -> Iterator[ItemRun]:
    """The producer's items, ``batch`` at a time, each batch stamped when it is made.

    An :class:`ItemRun` carries ids, bodies and one time; the local queue sends
    it without ever building the :class:`Item` objects.
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
    queue: LocalQueue, slot: int, serial: int, console: Console, cfg: LocalConfig
) -> None:
    """A consumer process: handle items until a sentinel (or the stop flag)."""
    _child_signals()
    queue.attach_consumer(slot, serial)
    try:
        handle = make_handler(cfg, serial)
        consume(queue, handle, console, stop=queue.stop_check(), poll=cfg.poll)
    finally:
        queue.close()


# ----------------------------------------------------------------- the parent
@contextmanager
def _sigint_blocked() -> Iterator[None]:
    """Block SIGINT while a child starts: it inherits the mask and ignores the signal
    before unblocking, so a Ctrl-C cannot hit it half-started; the parent gets the
    signal when the block lifts."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


class Launcher:
    """Starts the child processes of one run (the supervisor calls it)."""

    def __init__(
        self, ctx: BaseContext, queue: LocalQueue, plan: Plan, console: Console, cfg: LocalConfig
    ) -> None:
        self.ctx, self.queue, self.plan, self.console, self.cfg = ctx, queue, plan, console, cfg

    def producer(self, index: int) -> BaseProcess:
        """Start producer ``index``."""
        start, end = self.plan.ranges[index]
        bodies = None if self.plan.names is None else self.plan.bodies(start, end - start)
        args = (self.queue, index, (start, end), bodies, self.console, self.cfg.batch)
        return self._start(producer_main, args, f"pcq-producer-{index}")

    def consumer(self, slot: int, serial: int) -> BaseProcess:
        """Start a consumer in ``slot`` (``serial`` numbers every consumer ever started)."""
        args = (self.queue, slot, serial, self.console, self.cfg)
        return self._start(consumer_main, args, f"pcq-consumer-{serial}")

    def _start(self, target: Callable[..., None], args: tuple, name: str) -> BaseProcess:
        proc = self.ctx.Process(target=target, args=args, name=name)  # type: ignore[attr-defined]
        with _sigint_blocked():
            proc.start()
        return proc


def run_local(cfg: LocalConfig, launcher: type[Launcher] | None = None) -> LocalResult:
    """Run one local producer/consumer session and return its ledger-based result.

    ``launcher`` lets tests start misbehaving children (default: :class:`Launcher`).
    """
    plan = Plan.build(cfg)
    producers = len(plan.ranges)
    consumers = cfg.consumers or 2 * producers
    max_restarts = 100 + 10 * consumers  # a crash loop is a failure, not a retry policy
    ctx = mp.get_context(cfg.start_method)
    ledger = Ledger(ctx, plan.total, consumers, consumers + max_restarts + 1, producers)
    queue = LocalQueue(ctx, ledger, queue_size=cfg.queue_size, max_deliveries=cfg.max_deliveries)
    console = DemoConsole(ctx.Lock(), sys.stderr if cfg.json else sys.stdout, quiet=cfg.quiet)
    sup = Supervisor(
        queue, plan, (launcher or Launcher)(ctx, queue, plan, console, cfg), console,
        consumers=consumers, max_restarts=max_restarts, grace=cfg.max_delay + 5.0,
    )
    previous = _install_stop_handlers(sup.interrupt)
    try:
        result = sup.run()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        queue.close()
    console.parent_exiting()
    return result.finish(start_method=cfg.start_method, batch=cfg.batch, queue_size=cfg.queue_size)


def _install_stop_handlers(callback: Callable[[int], None]) -> dict[int, Any]:
    """Ctrl-C and SIGTERM (``kill PID``) both mean: stop cleanly. Returns the old handlers."""
    import threading

    if threading.current_thread() is not threading.main_thread():
        return {}  # signal handlers can only be set from the main thread

    def on_signal(signum: int, frame: object) -> None:
        callback(signum)

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}


def stop_helpers() -> None:
    """Stop multiprocessing's forkserver and resource-tracker processes, if any.

    They outlive the run and exit on their own when this process exits, but
    then nobody waits for them: where PID 1 does not reap orphans (some
    containers) they linger as zombies. Call this just before exiting.
    """
    import gc
    from multiprocessing import forkserver, resource_tracker

    gc.collect()  # semaphores unregister from the tracker when collected
    helpers: list[Any] = [forkserver._forkserver, resource_tracker._resource_tracker]
    for helper in helpers:
        try:
            helper._stop()
        except (OSError, AttributeError, ChildProcessError):
            pass
