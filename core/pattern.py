"""The producer/consumer pattern itself, written once for every transport.

These are the seed article's ``producer`` and ``consumer`` functions with its
bugs fixed: the producer really puts, and says when its stream ends; the
consumer stops on end-of-stream (never by being killed as a daemon) and hands
back what it claimed but did not handle when asked to stop.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass

from pcq.core.console import Console
from pcq.core.transport import Item, Transport

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


def produce_batches(
    transport: Transport,
    batches: Iterable[Sequence[Item]],
    console: Console,
    *,
    stop: Callable[[], bool] = _never,
) -> int:
    """Like :func:`produce`, for a producer that already made its items in batches.

    Each batch is one ``put`` (a :class:`pcq.core.local.items.ItemRun` lets the local
    queue send it without building an :class:`Item` per item). ``stop()`` is
    checked before each batch. Returns how many items were put.
    """
    console.starting_producer()
    put = 0
    for batch in batches:
        if stop():
            break
        count = len(batch)
        if count:
            transport.put(batch)
            put += count
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

    With a quiet console and a transport that has an optional
    ``ack_many(items)`` method, a batch's handled items are acknowledged
    together once the batch is over (or before a nack or a release), instead of
    one by one: the handler is still called once per item, but a consumer
    killed mid-batch has the whole batch's unacknowledged items redelivered.
    """
    console.starting_consumer()
    ack_many = getattr(transport, "ack_many", None)
    if console.quiet and callable(ack_many):
        stats = _consume_batches(transport, handle, ack_many, stop, poll)
    else:
        stats = _consume_items(transport, handle, console, stop, poll)
    console.consumer_exiting()
    return stats


def _consume_items(
    transport: Transport, handle: Handler, console: Console, stop: Callable[[], bool], poll: float
) -> ConsumeStats:
    """The general loop: one ``got`` line and one ``ack`` per item."""
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
    return stats


def _consume_batches(
    transport: Transport,
    handle: Handler,
    ack_many: Callable[[Sequence[Item]], None],
    stop: Callable[[], bool],
    poll: float,
) -> ConsumeStats:
    """The quiet fast path: no ``got`` line, one ``ack_many`` per run of handled items.

    ``acked`` is the index in the batch up to which every item was settled
    (acknowledged, nacked or released): each item is settled exactly once.
    """
    stats = ConsumeStats()
    get, nack = transport.get, transport.nack
    while not stop():
        batch = get(poll)
        if batch is None:
            break
        acked = 0
        for i, item in enumerate(batch):
            if stop():
                ack_many(batch[acked:i])
                stats.handled += i - acked
                transport.release(batch[i:])
                stats.released += len(batch) - i
                acked = len(batch)
                break
            try:
                handle(item)
            except Exception as exc:  # noqa: BLE001 - user code: any failure is the item's
                ack_many(batch[acked:i])
                stats.handled += i - acked
                nack(item, f"{type(exc).__name__}: {exc}")
                stats.failed += 1
                acked = i + 1
        if acked < len(batch):
            ack_many(batch[acked:] if acked else batch)
            stats.handled += len(batch) - acked
    return stats
