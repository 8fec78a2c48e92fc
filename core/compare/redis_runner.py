"""The Redis-list transport under a comparison workload (consumers on this host).

The stock pieces do the work: :class:`~pcq.core.redis_list.producer.ListProducer`
with :func:`pcq.core.pattern.produce`, and :func:`pcq.core.redis_list.serve.serve`
(what ``pcq consume`` runs) with ``drain=True``. Each comparison uses a queue of
its own (``cmp-<random>``) and deletes every key of it afterwards, so it can run
on a shared server.

Order of events: the run is opened (stream open), the consumers start and
register, *then* the producer pushes, from a thread of the parent, while the
main thread reads the tally back to drive the progress bar. Each consumer
stamps when its handler returned and sends its stamps to the parent through a
pipe when it exits.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
import uuid
from collections.abc import Callable
from contextlib import suppress
from multiprocessing.connection import Connection, wait
from multiprocessing.context import BaseContext
from multiprocessing.process import BaseProcess
from typing import Any

import redis

from pcq.core.compare.metrics import RssSampler, RunMetrics
from pcq.core.compare.workload import Workload, make_body, stamping
from pcq.core.console import QuietConsole
from pcq.core.errors import PcqError
from pcq.core.pattern import produce
from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import new_run_id
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import consumer_id
from pcq.core.redis_list.producer import ListProducer
from pcq.core.redis_list.serve import serve
from pcq.core.redis_list.tally import read_tally
from pcq.core.transport import Item

__all__ = ["delete_queue_keys", "run_redis_compare"]

Progress = Callable[[int], None]
READY_TIMEOUT = 30.0
EXIT_TIMEOUT = 15.0


def consumer_main(settings: RedisSettings, spec: str, conn: Connection) -> None:
    """A consumer process: drain the queue, then send ``(id, produced_at, handled_at)`` stamps."""
    halt = threading.Event()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # the parent decides; it sends SIGTERM
    signal.signal(signal.SIGTERM, lambda *_: halt.set())
    handle, stamps = stamping(spec)
    console = QuietConsole(None, sys.stderr, quiet=True)
    try:
        serve(settings, handle, console, drain=True, stop=halt, poll=0.1)
    except PcqError as exc:
        print(f"pcq: consumer {os.getpid()}: {exc}", file=sys.stderr)
    finally:
        # The parent may have stopped listening (the comparison was interrupted):
        # then nobody wants the stamps.
        with suppress(OSError):
            conn.send({"consumer": consumer_id(), "stamps": stamps})
        conn.close()


def delete_queue_keys(client: redis.Redis, queue: str) -> int:
    """Delete every key of list queue ``queue`` (``pcq:{queue}:*``); return how many."""
    deleted = 0
    batch: list[bytes] = []
    for key in client.scan_iter(match=f"{Keys(queue).prefix}:*", count=500):
        batch.append(key)
        if len(batch) >= 500:
            deleted += client.delete(*batch)
            batch = []
    if batch:
        deleted += client.delete(*batch)
    return deleted


class _Producer(threading.Thread):
    """Pushes the workload's items from a thread of the parent."""

    def __init__(self, producer: ListProducer, workload: Workload, stop: threading.Event) -> None:
        super().__init__(name="pcq-cmp-producer", daemon=True)
        self.producer, self.workload, self.halt = producer, workload, stop
        self.error: BaseException | None = None

    def run(self) -> None:
        run, size, now = self.producer.run, self.workload.payload_bytes, time.time
        items = (Item(f"{run}:{n}", make_body(n, size), now()) for n in range(self.workload.items))
        try:
            produce(self.producer, items, QuietConsole(), batch=self.workload.batch, stop=self.halt.is_set)
        except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
            self.error = exc


def _start_consumers(
    ctx: BaseContext, settings: RedisSettings, spec: str, n: int
) -> list[tuple[BaseProcess, Connection]]:
    started = []
    for i in range(n):
        recv, send = ctx.Pipe(duplex=False)
        proc = ctx.Process(  # type: ignore[attr-defined]
            target=consumer_main, args=(settings, spec, send), name=f"pcq-cmp-redis-{i}"
        )
        proc.start()
        send.close()
        started.append((proc, recv))
    return started


def _wait_registered(client: redis.Redis, keys: Keys, procs: list[BaseProcess]) -> None:
    deadline = time.monotonic() + READY_TIMEOUT
    while client.scard(keys.consumers) < len(procs):
        dead = [p for p in procs if p.exitcode is not None]
        if dead:
            raise PcqError(
                f"Redis consumer {dead[0].pid} exited (code {dead[0].exitcode}) before it "
                "registered: see its error above"
            )
        if time.monotonic() > deadline:
            raise PcqError(f"Redis consumers did not register within {READY_TIMEOUT:g}s")
        time.sleep(0.02)


def _collect(started: list[tuple[BaseProcess, Connection]]) -> list[dict[str, Any]]:
    """Receive every consumer's report, then reap it (SIGTERM/SIGKILL if it lingers)."""
    reports: list[dict[str, Any]] = []
    pending = {recv: proc for proc, recv in started}
    deadline = time.monotonic() + EXIT_TIMEOUT
    while pending and time.monotonic() < deadline:
        for ready in wait(list(pending), timeout=0.5):
            assert isinstance(ready, Connection)
            try:
                reports.append(ready.recv())
            except EOFError:
                pass
            pending.pop(ready)
    for proc, recv in started:
        if proc.exitcode is None:
            proc.terminate()
        proc.join(5.0)
        if proc.exitcode is None:
            proc.kill()
            proc.join(5.0)
        recv.close()
    return reports


def run_redis_compare(
    workload: Workload, consumers: int, repeat: int, progress: Progress, ctx: BaseContext,
    base: RedisSettings, timeout: float,
) -> RunMetrics:
    """Run ``workload`` through the Redis list with ``consumers`` consumer processes."""
    settings = base.with_overrides(queue=f"cmp-{uuid.uuid4().hex[:10]}", batch=workload.batch)
    keys = Keys(settings.queue)
    client, poll = connect(settings), connect(settings)
    started: list[tuple[BaseProcess, Connection]] = []
    reports: list[dict[str, Any]] | None = None
    halt = threading.Event()
    pusher = ListProducer(client, settings, run=new_run_id())
    try:
        run = pusher.open_run()
        started = _start_consumers(ctx, settings, str(workload.work), consumers)
        _wait_registered(poll, keys, [p for p, _ in started])
        with RssSampler(lambda: [p.pid for p, _ in started if p.pid]) as rss:
            t0 = time.perf_counter()
            producer = _Producer(pusher, workload, halt)
            producer.start()
            procs = [p for p, _ in started]
            tally = _follow(poll, keys, run, producer, progress, timeout, procs)
            producer.join()
            if producer.error is not None:
                raise producer.error
            reports = _collect(started)
            wall = time.perf_counter() - t0
        tally = read_tally(poll, keys, run)
    finally:
        halt.set()
        if reports is None:  # interrupted or failed: stop the consumers now
            for proc, _ in started:
                if proc.exitcode is None:
                    proc.terminate()
            _collect(started)
        pusher.close()
        delete_queue_keys(poll, settings.queue)
        client.close()
        poll.close()
    first: dict[str, tuple[float, float]] = {}
    for report in reports or []:
        for item_id, produced_at, handled_at in report["stamps"]:
            if item_id not in first or handled_at < first[item_id][1]:
                first[item_id] = (produced_at, handled_at)
    notes = [] if tally.get("complete", True) else ["timed out before every item was accounted for"]
    return RunMetrics.build(
        transport="redis", consumers=consumers, repeat=repeat, items=workload.items,
        stamps=list(first.values()), per_consumer=tally["per_consumer"], wall_seconds=wall,
        peak_rss=rss.peak, lost=workload.items - tally["consumed"] - tally["dead_letters"],
        duplicates=tally["duplicates"], redelivered=tally["redelivered"],
        dead_letters=tally["dead_letters"], notes=notes, consumed=tally["consumed"],
    )


def _follow(
    client: redis.Redis, keys: Keys, run: str, producer: _Producer, progress: Progress,
    timeout: float, consumers: list[BaseProcess],
) -> dict[str, Any]:
    """Poll the run's tally until every item is accounted for (or ``timeout``, or no consumer left)."""
    deadline = time.monotonic() + timeout
    while True:
        # Look at the consumers *before* the tally: one that exits after draining
        # everything has written its acknowledgements by then.
        gone = all(p.exitcode is not None for p in consumers)
        tally = read_tally(client, keys, run)
        progress(tally["consumed"])
        settled = tally["consumed"] + tally["dead_letters"]
        if producer.error is not None:
            return tally
        if not producer.is_alive() and settled >= tally["produced"]:
            tally["complete"] = True
            return tally
        if gone or time.monotonic() > deadline:
            tally["complete"] = False
            return tally
        time.sleep(0.05)
