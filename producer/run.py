"""Run one producer: push a run of items, close the stream, read back its tally."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Iterator
from itertools import islice
from pathlib import Path
from typing import Any

from pcq.core.console import Console
from pcq.core.errors import RedisFull
from pcq.core.ledger import PRODUCED, LedgerFile, LedgerProducer
from pcq.core.pattern import produce_batches
from pcq.core.redis_common.connection import Retrier, connect, stderr_log
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import refused_as_usage
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.producer import BodyRun, ListProducer, ListRunProducer
from pcq.core.redis_list.tally import read_tally, retire_run, wait_for_tally

__all__ = ["run_producer"]

Log = Callable[[str], None]


def _batches(run: str, texts: Iterable[str], size: int) -> Iterator[BodyRun]:
    # produced_at is taken when a batch is made, right before it is pushed.
    bodies = iter(texts)
    first = 0
    while chunk := list(islice(bodies, size)):
        yield BodyRun(run, first, chunk, time.time())
        first += len(chunk)


def _push_all(producer: ListProducer, batches: Iterable[BodyRun], console: Console, *,
              stop: Callable[[], bool], produced_file: LedgerFile | None) -> None:
    """Push every batch (recorded in the ledger file if any, once confirmed), then close the stream."""
    fast = ListRunProducer(producer)  # bodies in, no Item per item
    sink = fast if produced_file is None else LedgerProducer(fast, produced_file)
    with refused_as_usage(before=producer.end_stream):
        try:
            produce_batches(sink, batches, console, stop=stop)
        except RedisFull:
            # Gave up on a full Redis: close what was pushed (close.lua runs on a
            # full Redis), so `consume --drain` finishes it; then one line, exit 1.
            producer.end_stream()
            raise


def run_producer(
    settings: RedisSettings,
    texts: Iterable[str],
    console: Console,
    *,
    timeout: float | None = 600.0,
    stop: threading.Event | None = None,
    log: Log = stderr_log,
    ledger: Path | None = None,
) -> dict[str, Any]:
    """Produce ``texts`` as one run and return its tally.

    Args:
        settings: Connection, queue, batch, high-water mark.
        texts: Item bodies, in order.
        console: Demo lines ("Starting producer => PID" ...).
        timeout: Longest wait for the tally (``0``: do not wait; ``None``: for ever).
        stop: Set (e.g. by SIGTERM) to stop producing and waiting.
        log: Sink for connection-retry lines.
        ledger: A directory where the ids Redis confirmed are also recorded
            (:mod:`pcq.core.ledger`).

    Returns:
        The tally (:mod:`pcq.core.redis_list.tally` keys, plus ``seconds``, ``items_per_second``
        and ``complete``).
    """
    halt = stop or threading.Event()
    client = connect(settings)
    producer = ListProducer(client, settings, log=log, notify=console.line, put_timeout=timeout)
    produced_file = LedgerFile(ledger / PRODUCED) if ledger is not None else None
    try:
        run = producer.open_run()
        started = time.monotonic()
        _push_all(producer, _batches(run, texts, max(1, settings.batch)), console,
                  stop=halt.is_set, produced_file=produced_file)  # fmt: skip
        retrier = Retrier(settings, log)
        keys = Keys(settings.queue)
        tally = wait_for_tally(
            lambda: retrier.call(read_tally, client, keys, run),
            timeout=timeout,
            stop=halt.is_set,
        )
        if tally["complete"]:
            retrier.call(retire_run, client, keys, run, settings.run_ttl)
    finally:
        producer.close()  # stops the run's liveness thread if still going
        client.close()
        if produced_file is not None:
            produced_file.close()
    seconds = time.monotonic() - started
    tally["seconds"] = round(seconds, 3)
    tally["items_per_second"] = round(tally["consumed"] / seconds, 1) if seconds > 0 else 0.0
    return tally
