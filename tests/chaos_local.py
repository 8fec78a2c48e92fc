"""Run ``pcq local``'s machinery with ledger-keeping consumers (a test driver).

``python tests/chaos_local.py LEDGER_DIR --items N [...]`` runs one local
session exactly as ``pcq local`` does (same :class:`~pcq.core.local.channel.Channel`,
:class:`~pcq.core.local.supervisor.Supervisor`, producers, and consumers running
:class:`~pcq.core.local.consumer.LocalConsumer` through :func:`~pcq.core.pattern.consume`),
with one difference: each consumer's handler appends ``id, pid, delivery`` to
the ledger files (``pcq.core.ledger``, checked by ``tests/audit.py``) before the transport's ack. The
parent records every consumer and producer pid it starts in ``LEDGER_DIR/pids``
(``consumer PID`` / ``producer PID`` lines) so a test can kill them, and prints
the run's ``--json`` result on stdout.

Work per item is a sleep of ``--delay`` seconds while ``LEDGER_DIR/slow``
exists (the chaos phase), none after: a test removes the file once it has done
its kills, so the run's length does not decide how many kills fit in it.

``--sample SECONDS`` (soak runs) samples, from a thread of the parent started
once every consumer is up, the queue's depth in messages (``--queue-size``
minus the semaphore's value) and the consumers' RSS; the peaks go to
``LEDGER_DIR/samples.json``.

Test hooks: ``--die-holding-lock K`` makes the first consumer take the console
lock at its K-th item and SIGKILL itself while holding it.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import signal
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from audit import HANDLED, Audit

from pcq.core.console import Console
from pcq.core.local.channel import Channel
from pcq.core.local.children import ignore_sigint
from pcq.core.local.consumer import LocalConsumer
from pcq.core.local.plan import Plan
from pcq.core.local.run import Launcher, LocalConfig
from pcq.core.local.shared_state import SharedState
from pcq.core.local.supervisor import Supervisor
from pcq.core.pattern import consume
from pcq.core.transport import Item


def ledger_consumer_main(
    channel: Channel, slot: int, serial: int, console: Console, cfg: LocalConfig,
    ledger_dir: str, delay: float, die_holding_lock: int,
) -> None:
    """A consumer process whose handler writes the independent ledger."""
    ignore_sigint()
    consumer = LocalConsumer(channel, slot, serial)
    slow = Path(ledger_dir) / "slow"
    out = Audit(Path(ledger_dir)).writer(HANDLED)
    pid = os.getpid()
    seen = 0

    def handle(item: Item) -> None:
        nonlocal seen
        seen += 1
        if die_holding_lock and serial == 0 and seen == die_holding_lock:
            assert console.lock is not None
            console.lock.acquire()
            os.kill(pid, signal.SIGKILL)  # dies with the console lock held
        if delay and slow.exists():
            time.sleep(delay)
        out.add(item.id, pid, item.deliveries)

    try:
        consume(consumer, handle, console, stop=channel.state.stopping, poll=cfg.poll)
    finally:
        out.close()
        consumer.close()


class Sampler(threading.Thread):
    """Peak queue depth (messages) and consumer RSS, every ``period`` seconds."""

    def __init__(self, channel: Channel, pids: list[int], period: float, out: Path) -> None:
        super().__init__(name="pcq-sampler", daemon=True)
        self.channel, self.pids, self.period, self.out = channel, pids, period, out
        self.halt = threading.Event()
        self.peak = {"queue_messages": 0, "consumer_rss_mb": 0.0, "samples": 0}

    def run(self) -> None:
        import psutil

        size, sem = self.channel.queue_size or 0, self.channel.sem
        # Sample before the first wait too: a CI-size run can end within one period.
        while True:
            if sem is not None:
                depth = size - sem.get_value()  # type: ignore[attr-defined]
                self.peak["queue_messages"] = max(self.peak["queue_messages"], depth)
            for pid in self.pids:
                try:
                    rss = psutil.Process(pid).memory_info().rss / 2**20
                except psutil.NoSuchProcess:
                    continue
                self.peak["consumer_rss_mb"] = max(self.peak["consumer_rss_mb"], round(rss, 1))
            self.peak["samples"] += 1
            if self.halt.wait(self.period):
                return

    def finish(self) -> None:
        self.halt.set()
        self.join(5)
        self.out.write_text(json.dumps(self.peak))


class LedgerLauncher(Launcher):
    """:class:`pcq.core.local.run.Launcher` whose consumers keep the ledger; logs pids."""

    def __init__(self, *args: object, ledger_dir: Path, delay: float, die_holding_lock: int,
                 sample: float = 0.0, consumers: int = 0) -> None:
        super().__init__(*args)  # type: ignore[arg-type]
        self.ledger_dir, self.delay, self.die = ledger_dir, delay, die_holding_lock
        self.pids = (ledger_dir / "pids").open("a", encoding="utf-8", buffering=1)
        self.sample, self.n_consumers = sample, consumers
        self.consumer_pids: list[int] = []
        self.sampler: Sampler | None = None

    def producer(self, index: int):  # type: ignore[no-untyped-def]
        proc = super().producer(index)
        self.pids.write(f"producer {proc.pid}\n")
        return proc

    def consumer(self, slot: int, serial: int):  # type: ignore[no-untyped-def]
        args = (self.channel, slot, serial, self.console, self.cfg,
                str(self.ledger_dir), self.delay, self.die)
        proc = self._start(ledger_consumer_main, args, f"pcq-consumer-{serial}")
        self.pids.write(f"consumer {proc.pid}\n")
        self.consumer_pids.append(proc.pid or 0)
        if self.sample and self.sampler is None and len(self.consumer_pids) == self.n_consumers:
            # Every child is started (a soak kills nobody, so none is forked later):
            # a thread in the parent can no longer be copied into a child.
            self.sampler = Sampler(self.channel, self.consumer_pids, self.sample,
                                   self.ledger_dir / "samples.json")
            self.sampler.start()
        return proc


def main(argv: list[str] | None = None) -> int:
    """Run one session; print its result as JSON; exit 0 iff nothing is lost."""
    ap = argparse.ArgumentParser()
    ap.add_argument("ledger_dir", type=Path)
    ap.add_argument("--items", type=int, required=True)
    ap.add_argument("--producers", type=int, default=2)
    ap.add_argument("--consumers", type=int, default=4)
    ap.add_argument("--batch", type=int, default=1)
    ap.add_argument("--queue-size", type=int, default=None)
    ap.add_argument("--delay", type=float, default=0.0)
    ap.add_argument("--die-holding-lock", type=int, default=0)
    ap.add_argument("--verbose", action="store_true", help="per-item console lines")
    ap.add_argument("--sample", type=float, default=0.0, help="sampling period (soak)")
    args = ap.parse_args(argv)

    cfg = LocalConfig(producers=args.producers, consumers=args.consumers, items=args.items,
                      max_delay=0.0, batch=args.batch, queue_size=args.queue_size,
                      quiet=not args.verbose, json=True)
    plan = Plan.build(producers=cfg.producers, items=cfg.items, names=cfg.names)
    Audit(args.ledger_dir).produce(str(i) for i in range(plan.total))
    ctx = mp.get_context(cfg.start_method)
    consumers = args.consumers
    max_restarts = 100 + 10 * consumers
    state = SharedState(ctx, plan.total, consumers, consumers + max_restarts + 1, len(plan.ranges))
    channel = Channel(ctx, state, queue_size=cfg.queue_size, max_deliveries=cfg.max_deliveries)
    console = Console(ctx.Lock(), sys.stderr, quiet=cfg.quiet)
    launcher = LedgerLauncher(ctx, channel, plan, console, cfg, ledger_dir=args.ledger_dir,
                              delay=args.delay, die_holding_lock=args.die_holding_lock,
                              sample=args.sample, consumers=consumers)
    sup = Supervisor(channel, plan, launcher, console, consumers=consumers,
                     max_restarts=max_restarts, grace=5.0)
    try:
        result = sup.run()
    finally:
        if launcher.sampler is not None:
            launcher.sampler.finish()
        channel.close()
        launcher.pids.close()
    console.parent_exiting()
    result = result.finish(start_method=cfg.start_method, batch=cfg.batch, queue_size=cfg.queue_size)
    sys.stdout.write(json.dumps(result.to_json(), default=lambda o: o.__dict__) + "\n")
    return result.exit_code


if __name__ == "__main__":
    sys.exit(main())
