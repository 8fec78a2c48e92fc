r"""The producer/consumer pattern itself, written once for every transport.

These are the seed article's ``producer`` and ``consumer`` functions with its
bugs fixed: the producer really puts, and says when its stream ends; the
consumer stops on end-of-stream (never by being killed as a daemon) and hands
back what it claimed but did not handle when asked to stop.

They hold only the role objects of :mod:`pcq.core.transport`::

    items --produce()--> Producer.put(batch) ... end_stream()
                                 |
                          (the transport)
                                 |
    Consumer.get() --> handle(item) --> ack / nack  (consume: one ack per item)
                                    \-> ack_many    (consume_batches: one per batch)

Which consume loop runs is the run's :class:`~pcq.core.transport.AckMode`,
chosen by its caller; the console only decides what is printed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence, Sized
from dataclasses import dataclass
from typing import TypeVar

from pcq.core.console import Console
from pcq.core.transport import BatchAckConsumer, Consumer, Item, Producer

__all__ = ["ConsumeStats", "Handler", "consume", "consume_batches", "produce", "produce_batches"]

Handler = Callable[[Item], None]
B = TypeVar("B", bound=Sized)


def _never() -> bool:
    return False


@dataclass(slots=True)
class ConsumeStats:
    """What one consumer did: items handled, handler failures, items handed back,
    and items left unhandled because its lease on them was lost (a pause)."""

    handled: int = 0
    failed: int = 0
    released: int = 0
    forfeited: int = 0


def produce(
    producer: Producer[Sequence[Item]],
    items: Iterable[Item],
    console: Console,
    *,
    batch: int = 1,
    stop: Callable[[], bool] = _never,
) -> int:
    """Put ``items`` through ``producer`` in messages of ``batch`` items.

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
            producer.put(buf)
            put += len(buf)
            buf = []
    if buf and not stop():
        producer.put(buf)
        put += len(buf)
    producer.end_stream()
    console.producer_exiting()
    return put


def produce_batches(
    producer: Producer[B],
    batches: Iterable[B],
    console: Console,
    *,
    stop: Callable[[], bool] = _never,
) -> int:
    """Like :func:`produce`, for a producer that already made its items in batches.

    Each batch is one ``put``, of whatever batch type the producer takes (the
    local transport's :class:`~pcq.core.local.items.ItemRun` is sent without
    building an :class:`Item` per item). ``stop()`` is checked before each
    batch. Returns how many items were put.
    """
    console.starting_producer()
    put = 0
    for batch in batches:
        if stop():
            break
        count = len(batch)
        if count:
            producer.put(batch)
            put += count
    producer.end_stream()
    console.producer_exiting()
    return put


def consume(
    consumer: Consumer,
    handle: Handler,
    console: Console,
    *,
    stop: Callable[[], bool] = _never,
    poll: float = 0.5,
) -> ConsumeStats:
    """Take items from ``consumer`` and ``handle`` each until the stream ends (``AckMode.ITEM``).

    ``stop()`` is checked between items: once true, the consumer finishes the
    item in hand, releases the rest of its batch and returns. A handler that
    raises does not kill the consumer: the item is ``nack``-ed with the reason.
    Each handled item is acknowledged at once.
    """

    def ack_each(items: Sequence[Item]) -> None:
        for item in items:
            consumer.ack(item)

    settle = _settler(consumer, handle, console, stop, ack_each, each=True)
    return _loop(consumer, settle, console, stop, poll)


def consume_batches(
    consumer: BatchAckConsumer,
    handle: Handler,
    console: Console,
    *,
    stop: Callable[[], bool] = _never,
    poll: float = 0.5,
) -> ConsumeStats:
    """Like :func:`consume`, acknowledging each batch's handled items together (``AckMode.BATCH``).

    The handler is still called once per item; one ``ack_many`` covers each
    run of handled items, sent when the batch is over (or before a nack or a
    release). A consumer killed mid-batch therefore has the whole batch's
    unacknowledged items redelivered.
    """
    settle = _settler(consumer, handle, console, stop, consumer.ack_many, each=False)
    return _loop(consumer, settle, console, stop, poll)


Settle = Callable[[Sequence[Item], ConsumeStats], None]


def _settler(
    consumer: Consumer,
    handle: Handler,
    console: Console,
    stop: Callable[[], bool],
    ack_run: Callable[[Sequence[Item]], None],
    *,
    each: bool,
) -> Settle:
    """The per-batch work: handle each item, settle each exactly once.

    ``acked`` is the index up to which every item of the batch is settled
    (acknowledged, nacked or released; an item ``holds`` disowns goes to
    ``release`` unhandled, with the rest of its batch). With ``each`` an item is acknowledged
    as soon as its handler returns; otherwise handled items wait, and each run
    of them goes to ``ack_run`` in one call: before a nack, before the release
    on stop, and at the end of the batch.
    """
    show = None if console.quiet else console.got
    ack, nack, holds = consumer.ack, consumer.nack, consumer.holds

    def flush(batch: Sequence[Item], start: int, end: int, stats: ConsumeStats) -> None:
        if end > start:
            ack_run(batch if start == 0 and end == len(batch) else batch[start:end])
            stats.handled += end - start

    def settle(batch: Sequence[Item], stats: ConsumeStats) -> None:
        acked, end, lost = 0, len(batch), False
        for i, item in enumerate(batch):
            if stop():
                end = i
                break
            if not holds(item):  # a pause outlived the lease: these are someone else's now
                end, lost = i, True
                break
            if show is not None:
                show(item.body)
            try:
                handle(item)
            except Exception as exc:  # noqa: BLE001 - user code: any failure is the item's
                flush(batch, acked, i, stats)
                nack(item, f"{type(exc).__name__}: {exc}")
                stats.failed += 1
                acked = i + 1
                continue
            if each:
                ack(item)
                stats.handled += 1
                acked = i + 1
        flush(batch, acked, end, stats)
        if end < len(batch):
            consumer.release(batch[end:])
            if lost:
                stats.forfeited += len(batch) - end
            else:
                stats.released += len(batch) - end

    return settle


def _loop(
    consumer: Consumer,
    settle: Settle,
    console: Console,
    stop: Callable[[], bool],
    poll: float,
) -> ConsumeStats:
    """Claim batches until the stream ends or ``stop()``; ``settle`` handles each batch."""
    console.starting_consumer()
    stats = ConsumeStats()
    get = consumer.get
    while not stop():
        batch = get(poll)
        if batch is None:
            break
        settle(batch, stats)
    console.consumer_exiting()
    return stats
