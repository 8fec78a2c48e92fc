"""The seam between the producer/consumer pattern and the queue it runs over.

:mod:`pcq.core.pattern` only ever holds objects that satisfy these protocols,
one per role: a :class:`Producer` puts batches and ends its stream; a
:class:`Consumer` claims batches and settles every item it claimed. Each
transport builds one object per role:

=================  ==========================================  ==============================
transport          producer / consumer                         what it requires
=================  ==========================================  ==============================
local processes    ``pcq.core.local.producer.LocalProducer``   every item known up front:
(multiprocessing)  ``pcq.core.local.consumer.LocalConsumer``   ids are ``"0" .. "N-1"``, the
                                                               index of the item in the
                                                               run's shared memory, and the
                                                               supervisor rebuilds a body it
                                                               must put back from the run's
                                                               plan; one host
Redis list         ``pcq.core.redis_list.producer``            ids ``<run>:<n>``; a JSON body
                   ``pcq.core.redis_list.consumer``            of at most the payload cap
RQ jobs            enqueued by ``pcq.core.rq_jobs.producer``,  stock ``rq worker`` processes
                   run by stock RQ workers (no Consumer)       with pcq's job class
=================  ==========================================  ==============================

Delivery contract:

* ``put`` enqueues a batch; it may block while the queue is full (backpressure).
* ``get`` claims up to one batch. A claimed item stays *in flight* until the
  consumer settles it: ``ack`` (handled), ``nack`` (handler failed: deliver
  again, or dead-letter after too many deliveries) or ``release`` (not handled
  at all, e.g. on shutdown: hand it back without counting a failure). If the
  consumer dies with items in flight, the transport -- not the consumer -- puts
  them back.
* ``get`` returns ``[]`` when nothing arrived within ``timeout`` and ``None``
  once the stream has ended and nothing is left for this consumer.
* ``end_stream`` is the producer's "no more items from me".

Batch acknowledgement is a capability a transport declares by implementing
:class:`BatchAckConsumer` (``ack_many``), and that a run uses only when its
settings ask for :attr:`AckMode.BATCH` (``pcq local --ack batch``): the
handler still runs once per item, but the handled items of a batch are
acknowledged together at its end, so a consumer killed mid-batch has every
unacknowledged item of its batch redelivered, not just the one in hand.
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import Enum
from typing import NamedTuple, Protocol, TypeVar, runtime_checkable

__all__ = ["AckMode", "BatchAckConsumer", "Consumer", "Item", "Producer"]

B_contra = TypeVar("B_contra", contravariant=True)


class Item(NamedTuple):
    """One unit of work (immutable).

    A named tuple rather than a frozen dataclass: the same constructor and
    read-only attributes, but built by C code (``tuple.__new__``), about three
    times cheaper, which matters when a consumer builds a million per second.

    Attributes:
        id: Unique id of the item within its run (the key every tally counts by).
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


class AckMode(str, Enum):
    """When a consumer acknowledges what it handled (a run's setting, never the console's).

    ``ITEM``: each item right after its handler returned; a consumer killed
    mid-batch has only the item in hand redelivered. ``BATCH``: the handled
    items of a batch together, at its end (or before a nack or a release);
    fewer writes, but a consumer killed mid-batch has the batch's handled,
    unacknowledged items redelivered too. Needs a :class:`BatchAckConsumer`.
    """

    ITEM = "item"
    BATCH = "batch"


@runtime_checkable
class Producer(Protocol[B_contra]):
    """The producer role: put batches (of type ``B_contra``), then end the stream.

    Every transport's producer is a ``Producer[Sequence[Item]]``; a transport
    may also offer producers of a cheaper batch type of its own (the local
    one's :class:`~pcq.core.local.items.ItemRun`).
    """

    def put(self, batch: B_contra) -> None:
        """Enqueue ``batch`` (one message); may block under backpressure."""

    def end_stream(self) -> None:
        """This producer will put nothing more."""


@runtime_checkable
class Consumer(Protocol):
    """The consumer role: claim batches, settle every claimed item exactly once."""

    def get(self, timeout: float) -> Sequence[Item] | None:
        """Claim up to one batch: ``[]`` on timeout, ``None`` at end of stream."""

    def ack(self, item: Item) -> None:
        """The item was handled: forget it for good."""

    def nack(self, item: Item, reason: str) -> None:
        """The handler failed: deliver again, or dead-letter with ``reason``."""

    def release(self, items: Sequence[Item]) -> None:
        """Hand back claimed items that were not handled (shutdown, or ``holds`` said no)."""

    def holds(self, item: Item) -> bool:
        """Whether ``item`` is still this consumer's to handle; asked before each one.

        False once the consumer lost its lease (paused past its heartbeat's
        lifetime): the item and the rest of its batch are already someone
        else's. The pattern then handles none of them and passes them to
        ``release``, which lets them go without handing anything back. A
        transport without leases always says True.
        """


@runtime_checkable
class BatchAckConsumer(Consumer, Protocol):
    """A consumer that can acknowledge several handled items at once (:attr:`AckMode.BATCH`)."""

    def ack_many(self, items: Sequence[Item]) -> None:
        """Same effect as :meth:`Consumer.ack` on each item, done at once."""
