"""The producer/consumer pattern itself, written once for every transport.

These are the seed article's ``producer`` and ``consumer`` functions with its
bugs fixed: the producer really puts, and says when its stream ends; the
consumer stops on end-of-stream (never by being killed as a daemon) and hands
back what it claimed but did not handle when asked to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

from core.console import Console
from core.transport import Item, Transport

Handler = Callable[[Item], None]


def _never() -> bool:
    return False


@dataclass(slots=True)
class ConsumeStats:
    """What one consumer did: items handled, handler failures, items handed back."""

    handled: int = 0
    failed: int = 0
    released: int = 0


def produce(
    transport: Transport,
    items: Iterable[Item],
    console: Console,
    *,
    batch: int = 1,
    stop: Callable[[], bool] = _never,
) -> int:
    """Put ``items`` on ``transport`` in messages of ``batch`` items.

    Ends the stream when done (or when ``stop()`` turns true) and returns how
    many items were put.
    """
    console.starting_producer()
    put = 0
    buf: list[Item] = []
    for item in items:
        if stop():
            break
        buf.append(item)
        if len(buf) >= batch:
            transport.put(buf)
            put += len(buf)
            buf = []
    if buf and not stop():
        transport.put(buf)
        put += len(buf)
    transport.end_stream()
    console.producer_exiting()
    return put


def consume(
    transport: Transport,
    handle: Handler,
    console: Console,
    *,
    stop: Callable[[], bool] = _never,
    poll: float = 0.5,
) -> ConsumeStats:
    """Take items off ``transport`` and ``handle`` each until the stream ends.

    ``stop()`` is checked between items: once true, the consumer finishes the
    item in hand, releases the rest of its batch and returns. A handler that
    raises does not kill the consumer: the item is ``nack``-ed with the reason.
    """
    console.starting_consumer()
    stats = ConsumeStats()
    while not stop():
        batch = transport.get(poll)
        if batch is None:
            break
        for i, item in enumerate(batch):
            if stop():
                transport.release(batch[i:])
                stats.released += len(batch) - i
                break
            console.got(item.body)
            try:
                handle(item)
            except Exception as exc:  # noqa: BLE001 - user code: any failure is the item's
                transport.nack(item, f"{type(exc).__name__}: {exc}")
                stats.failed += 1
                continue
            transport.ack(item)
            stats.handled += 1
    console.consumer_exiting()
    return stats
