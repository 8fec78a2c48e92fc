"""The local transport's producers: stamp items in shared memory, send them on the wire.

Data flow of one put (built in the producer process, over the parent's
:class:`~pcq.core.local.channel.Channel`)::

    put(batch) --> SharedState.produced_at[i] = stamp     (for latencies)
               --> RunSender.send(first, deliveries, bodies)
                     pickle one message per run of consecutive ids,
                     split under MAX_MESSAGE; with --queue-size, one
                     semaphore slot per message; channel.tx.send
               --> SharedState.put[index] += items sent   (the supervisor
                     puts the rest itself if this producer dies)

Two producers share that path by composition, one per batch type:
:class:`LocalProducer` takes any ``Sequence[Item]`` (every transport's
producer), :class:`LocalRunProducer` takes the local transport's own
:class:`~pcq.core.local.items.ItemRun` (ids, bodies, one stamp), so a local
producer never builds an :class:`Item` per item.
"""

from __future__ import annotations

import pickle
from array import array
from collections.abc import Sequence

from pcq.core.local.channel import MAX_MESSAGE, PROTOCOL, Channel, ParentWatch, encode_counted, runs
from pcq.core.local.items import ItemRun
from pcq.core.transport import Item, Producer

__all__ = ["LocalProducer", "LocalRunProducer", "RunSender"]


class RunSender:
    """Sends runs of consecutive items on the channel for producer ``index``.

    The items' stamps must already be in the shared state; what is sent is
    counted in ``SharedState.put[index]``.
    """

    def __init__(self, channel: Channel, index: int) -> None:
        self.channel = channel
        self.index = index
        self.state = channel.state
        self._budgeted = channel.budgeted
        self._send = channel.tx.send
        self._counts = channel.state.put
        self._parent = ParentWatch()

    def send(self, first: int, deliveries: int, bodies: list[str]) -> None:
        """Send items ``first ..`` with these bodies; blocks while the queue is full."""
        budgeted = self._budgeted
        data = pickle.dumps((first, deliveries, bodies, budgeted), PROTOCOL)
        if len(data) <= MAX_MESSAGE and not budgeted:  # the common case: one send
            self._send(data)
            self._counts[self.index] += len(bodies)
            return
        for data, n in encode_counted(first, deliveries, bodies, budgeted):
            if budgeted and not self._acquire():
                return  # stopping: never put, so never counted as produced
            self._send(data)
            self._counts[self.index] += n

    def _acquire(self) -> bool:
        """Take a queue slot; False if the run is stopping or the parent died meanwhile."""
        sem = self.channel.sem
        assert sem is not None
        while not sem.acquire(True, 0.1):
            if self.state.stopping() or self._parent.gone():
                return False
        return True


class LocalProducer(Producer[Sequence[Item]]):
    """The local producer of :class:`Item` batches (any transport's batch type)."""

    def __init__(self, channel: Channel, index: int) -> None:
        self.sender = RunSender(channel, index)
        self._send_run = self.sender.send
        self._stamps = channel.state.produced_at

    def put(self, batch: Sequence[Item]) -> None:
        """Send ``batch`` (one message per run of consecutive ids); blocks when full."""
        count = len(batch)
        if count == 1:  # the unbatched hot path: no lists, no loops
            item = batch[0]
            first = int(item.id)
            self._stamps[first] = item.produced_at
            self._send_run(first, item.deliveries, [item.body])
        elif count:
            self._put_many(batch)

    def _put_many(self, items: Sequence[Item]) -> None:
        count = len(items)
        first = int(items[0].id)
        if int(items[-1].id) != first + count - 1:  # not one run: send run by run
            by_id = {int(it.id): it for it in items}
            for start, n in runs(sorted(by_id)):
                self._put_many([by_id[i] for i in range(start, start + n)])
            return
        self._stamps[first : first + count] = array("d", [item.produced_at for item in items])
        self._send_run(first, items[0].deliveries, [item.body for item in items])

    def end_stream(self) -> None:
        """Nothing to send: the supervisor ends the stream once every item is done."""


class LocalRunProducer(Producer[ItemRun]):
    """The local producer of :class:`ItemRun` batches: no :class:`Item` is ever built."""

    def __init__(self, channel: Channel, index: int) -> None:
        self.sender = RunSender(channel, index)
        self._stamps = channel.state.produced_at

    def put(self, batch: ItemRun) -> None:
        """Stamp and send the run (one message, or several if too large); blocks when full."""
        count = len(batch.bodies)
        if count:
            first = batch.first
            self._stamps[first : first + count] = array("d", [batch.produced_at]) * count
            self.sender.send(first, batch.deliveries, batch.bodies)

    def end_stream(self) -> None:
        """Nothing to send: the supervisor ends the stream once every item is done."""
