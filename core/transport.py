"""The seam between the producer/consumer pattern and the queue it runs over.

`produce` and `consume` (in :mod:`pcq.core.pattern`) only ever hold an object that
satisfies :class:`Transport`. Two adapters implement it:

* :class:`pcq.core.local.channel.LocalQueue` -- processes on one host (multiprocessing);
* :class:`pcq.core.redis_list.consumer.RedisQueue` -- a reliable Redis list, across containers.

Delivery contract (both adapters):

* ``put`` enqueues items; it may block while the queue is full (backpressure).
* ``get`` claims up to one batch. A claimed item stays *in flight* until the
  consumer calls ``ack`` (handled), ``nack`` (handler failed: deliver again,
  or dead-letter after too many deliveries) or ``release`` (not handled at all,
  e.g. on shutdown: hand it back without counting a failure). If the consumer
  dies with items in flight, the transport -- not the consumer -- puts them back.
* ``get`` returns ``[]`` when nothing arrived within ``timeout`` and ``None``
  once the stream has ended and nothing is left for this consumer.
* ``end_stream`` is the producer's "no more items from me".

A transport may also offer ``ack_many(items)`` (same effect as ``ack`` on
each, done at once): it is not part of the Protocol, :func:`pcq.core.pattern.consume`
looks it up with ``getattr`` and uses it on its quiet batch path.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple, Protocol, runtime_checkable

__all__ = ["Item", "Transport"]


class Item(NamedTuple):
    """One unit of work (immutable).

    A named tuple rather than a frozen dataclass: the same constructor and
    read-only attributes, but built by C code (``tuple.__new__``), about three
    times cheaper, which matters when a consumer builds a million per second.

    Attributes:
        id: Unique id of the item within its run (the ledger key).
        body: The payload (the seed's "name").
        produced_at: Producer's wall clock (``time.time()``) when it was made.
        deliveries: How many times it has been handed to a consumer, this
            delivery included (0 while it sits in the queue for the first time).
    """

    id: str
    body: str
    produced_at: float
    deliveries: int = 0

    def delivered(self) -> Item:
        """Return a copy with the delivery count incremented."""
        return Item(self.id, self.body, self.produced_at, self.deliveries + 1)


@runtime_checkable
class Transport(Protocol):
    """What `produce` and `consume` need from a queue."""

    def put(self, items: Sequence[Item]) -> None:
        """Enqueue ``items`` (one message); may block under backpressure."""

    def end_stream(self) -> None:
        """Producer side: this producer will put nothing more."""

    def get(self, timeout: float) -> Sequence[Item] | None:
        """Claim up to one batch: ``[]`` on timeout, ``None`` at end of stream."""

    def ack(self, item: Item) -> None:
        """The item was handled: forget it for good."""

    def nack(self, item: Item, reason: str) -> None:
        """The handler failed: deliver again, or dead-letter with ``reason``."""

    def release(self, items: Sequence[Item]) -> None:
        """Hand back claimed items that were not handled (shutdown)."""
