"""`LocalQueue`: the multiprocessing transport, built to survive ``kill -9``.

Why not a plain :class:`multiprocessing.Queue`?

* ``Queue.get()`` takes the queue's read lock and keeps holding it *while it
  blocks waiting for data*. An idle consumer is exactly where a consumer spends
  most of its life, so that is where a SIGKILL usually lands: the lock stays
  held by a dead process and every other consumer deadlocks in ``get()``.
* A message travels through the pipe as a length header and a body, read with
  two ``read`` calls. A consumer killed between the two leaves the byte stream
  misaligned for every other reader; the next ``get()`` decodes garbage.
* ``Queue.put()`` hands the item to a feeder thread: a producer killed right
  after ``put`` returned may never have written it.

So the wire here is one ``socketpair(AF_UNIX, SOCK_SEQPACKET)``. Producers (and
the supervisor, for redeliveries and end-of-stream sentinels) ``send`` on one
end, every consumer ``recv``-s on the other. SEQPACKET keeps message boundaries
and each send/recv is one atomic system call, so any number of readers and
writers share it with *no lock at all*: a SIGKILL can never leave a lock held
nor a message half-read. A full socket buffer blocks ``send``, which is the
backpressure. Messages are pickled -- fine between our own processes on one
host (the no-pickle rule is for the network) -- and each one is a batch of
items with consecutive global indexes: ``(first, deliveries, bodies, budgeted)``.

What a consumer holds is recorded in a :class:`Ledger` in shared memory
(``RawArray``: lock-free, and a plain store survives the writer's SIGKILL), so
the supervisor can put back exactly what a dead consumer held.
"""

from __future__ import annotations

import functools
import math
import os
import pickle
import select
import socket
import struct
from array import array
from collections.abc import Callable, Iterator, Sequence
from multiprocessing.context import BaseContext
from typing import Any, cast

from pcq.core.errors import PcqError
from pcq.core.local.items import ItemRun, make_item, make_items
from pcq.core.local.shared_state import HELD_FIELDS as _INFLIGHT
from pcq.core.local.shared_state import SharedState as Ledger
from pcq.core.transport import Item

__all__ = [
    "MAX_MESSAGE", "SENTINEL", "ItemRun", "Ledger", "LocalQueue", "encode", "make_item", "runs",
]

# Largest datagram we send. The socket's default SO_SNDBUF (~208 KiB) caps a
# single datagram a little below that; 64 KiB keeps well clear of it.
MAX_MESSAGE = 64 * 1024
SENTINEL = b"S"  # end of stream for one consumer; pickles never start with "S"
SNDBUF = 1 << 20  # a deeper buffer means fewer producer wake-ups (capped by wmem_max)
# Plain ints: or-ing the enum members costs more than the recv itself.
_NOWAIT = int(socket.MSG_DONTWAIT)
_TRUNC = int(socket.MSG_TRUNC)  # recv returns the real length of a longer message
_TRUNC_NOWAIT = _TRUNC | _NOWAIT
_PROTOCOL = pickle.HIGHEST_PROTOCOL
RECV_WAIT = 0.1  # seconds a consumer blocks in one recv before it looks around


def encode(first: int, deliveries: int, bodies: list[str], budgeted: bool) -> list[bytes]:
    """Pickle a run of items into one or more messages of at most MAX_MESSAGE bytes."""
    return [data for data, _ in encode_counted(first, deliveries, bodies, budgeted)]


def encode_counted(
    first: int, deliveries: int, bodies: list[str], budgeted: bool
) -> list[tuple[bytes, int]]:
    """Like :func:`encode`, with the number of items in each message."""
    data = pickle.dumps((first, deliveries, bodies, budgeted), pickle.HIGHEST_PROTOCOL)
    if len(data) <= MAX_MESSAGE:
        return [(data, len(bodies))]
    if len(bodies) == 1:
        raise PcqError(f"item {first} is too large for the local queue ({len(data)} bytes)")
    half = len(bodies) // 2
    return encode_counted(first, deliveries, bodies[:half], budgeted) + encode_counted(
        first + half, deliveries, bodies[half:], budgeted
    )


def runs(indexes: Sequence[int]) -> Iterator[tuple[int, int]]:
    """Split sorted indexes into ``(first, count)`` runs of consecutive values."""
    start = prev = -2
    for i in indexes:
        if i != prev + 1:
            if start >= 0:
                yield start, prev - start + 1
            start = i
        prev = i
    if start >= 0:
        yield start, prev - start + 1


class LocalQueue:
    """The local :class:`~pcq.core.transport.Transport` (see the module docstring).

    One object is created by the supervisor and handed to every child, which
    then calls :meth:`attach_producer` or :meth:`attach_consumer` once.
    """

    def __init__(
        self,
        ctx: BaseContext,
        ledger: Ledger,
        *,
        queue_size: int | None = None,
        max_deliveries: int = 5,
    ) -> None:
        self.ledger = ledger
        self.max_deliveries = max_deliveries
        # Bounded by messages. A plain Semaphore, not BoundedSemaphore: the
        # supervisor may release on behalf of a consumer that died between recv
        # and release, and an over-release must not crash anyone.
        self.sem = ctx.Semaphore(queue_size) if queue_size else None
        self.queue_size = queue_size
        self._budgeted = self.sem is not None  # do consumers owe the semaphore a release?
        self.tx, self.rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.ev_tx, self.ev_rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        for sock in (self.tx, self.ev_tx):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, SNDBUF)
        # Consumers block in recv, with a kernel timeout. The kernel queues
        # blocked readers as exclusive waiters: one message wakes one consumer
        # and goes straight to it (one system call per message, no herd).
        # SO_RCVTIMEO belongs to the socket, so every process sees it, and every
        # consumer wants the same value; unlike O_NONBLOCK (setblocking) it does
        # not change anyone's MSG_DONTWAIT calls.
        wait = struct.pack("@ll", 0, int(RECV_WAIT * 1_000_000))
        self.rx.setsockopt(socket.SOL_SOCKET, socket.SO_RCVTIMEO, wait)
        self.producer = -1
        self._ppid = -1
        self.slot = -1
        self.serial = -1
        self._left = 0
        self._buf = bytearray(0)
        self._view = memoryview(self._buf)
        self._base = 0

    def __getstate__(self) -> dict[str, Any]:
        # Sent to spawn/forkserver children: per-process buffers and pollers stay here.
        state = dict(self.__dict__)
        for name in ("_buf", "_view"):
            del state[name]
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._buf = bytearray(0)
        self._view = memoryview(self._buf)

    # ---------------------------------------------------------------- set-up
    def attach_producer(self, index: int) -> None:
        """Called once in a producer process."""
        self.producer = index
        self._ppid = os.getppid()

    def attach_consumer(self, slot: int, serial: int) -> None:
        """Called once in a consumer process (``serial`` is unique per process)."""
        self.slot, self.serial = slot, serial
        self._base = slot * _INFLIGHT
        self._buf = bytearray(MAX_MESSAGE + 1)
        self._view = memoryview(self._buf)
        self._ppid = os.getppid()

    def orphaned(self) -> bool:
        """True if our parent died (``kill -9`` of the supervisor): nobody will send
        a sentinel any more, so stop instead of waiting forever. (Under forkserver
        the parent is the fork server, which exits with the supervisor.)"""
        return os.getppid() != self._ppid

    def stopping(self) -> bool:
        """True once the supervisor asked everyone to stop (Ctrl-C)."""
        return self.ledger.flags[0] != 0

    def stop_check(self) -> Callable[[], bool]:
        """A cheaper ``stopping`` for hot loops (called once per item): one C call."""
        return cast(Callable[[], bool], functools.partial(self.ledger.flags.__getitem__, 0))

    def close(self) -> None:
        """Close this process's socket handles (each process holds its own)."""
        for sock in (self.tx, self.rx, self.ev_tx, self.ev_rx):
            sock.close()
        self._view.release()

    # -------------------------------------------------------------- producer
    def put(self, items: Sequence[Item]) -> None:
        """Send ``items`` (one message, or several if too large); blocks when full."""
        if type(items) is ItemRun:  # a local producer's run: no Item was ever built
            count = len(items.bodies)
            first = items.first
            if count:
                self.ledger.produced_at[first : first + count] = array("d", [items.produced_at]) * count
                self._send_run(first, items.deliveries, items.bodies)
            return
        count = len(items)
        if count == 1:  # the unbatched hot path: no lists, no loops
            item = items[0]
            first = int(item.id)
            self.ledger.produced_at[first] = item.produced_at
            self._send_run(first, item.deliveries, [item.body])
        elif count:
            self._put_many(items)

    def _put_many(self, items: Sequence[Item]) -> None:
        count = len(items)
        first = int(items[0].id)
        if int(items[-1].id) != first + count - 1:  # not one run: send run by run
            by_id = {int(it.id): it for it in items}
            for start, n in runs(sorted(by_id)):
                self._put_many([by_id[i] for i in range(start, start + n)])
            return
        stamps = array("d", [item.produced_at for item in items])
        self.ledger.produced_at[first : first + count] = stamps
        self._send_run(first, items[0].deliveries, [item.body for item in items])

    def _send_run(self, first: int, deliveries: int, bodies: list[str]) -> None:
        """Send items ``first ..`` with these bodies (stamps already in the ledger)."""
        data = pickle.dumps((first, deliveries, bodies, self._budgeted), _PROTOCOL)
        if len(data) <= MAX_MESSAGE and self.sem is None:  # the common case: one send
            self.tx.send(data)
            if self.producer >= 0:
                self.ledger.put[self.producer] += len(bodies)
            return
        for data, n in encode_counted(first, deliveries, bodies, self._budgeted):
            if self.sem is not None and not self._acquire():
                return  # stopping: never put, so never counted as produced
            self.tx.send(data)
            if self.producer >= 0:
                self.ledger.put[self.producer] += n

    def _acquire(self) -> bool:
        assert self.sem is not None
        while not self.sem.acquire(True, 0.1):
            if self.stopping() or self.orphaned():
                return False
        return True

    def end_stream(self) -> None:
        """Nothing to send: the supervisor ends the stream once every item is done."""

    # -------------------------------------------------------------- consumer
    def get(self, timeout: float) -> list[Item] | None:
        """Claim the next message: ``[]`` after ``timeout``, ``None`` on a sentinel.

        ``timeout`` is honoured in steps of RECV_WAIT (the socket's receive
        timeout): a ``get`` may wait up to one step longer than asked.
        """
        try:
            n = self.rx.recv_into(self._buf, MAX_MESSAGE + 1, _TRUNC_NOWAIT)
        except BlockingIOError:
            # Empty. Yield the CPU once (the producer is often waiting for one)
            # before blocking: a consumer that was just busy then tends to take
            # the next message itself, where blocking at once hands every
            # message to the longest-sleeping consumer, a wake-up each time
            # (measured: 10.4 -> 7.6 us of CPU per item, 1 producer 4 consumers).
            os.sched_yield()
            waited = self._wait(timeout)
            if waited is None or waited < 0:
                return None if waited is None else []
            n = waited
        if n > MAX_MESSAGE:
            raise PcqError(f"oversized local message ({n} bytes)")
        if n == 1 and self._buf[0] == SENTINEL[0]:
            return None
        first, deliveries, bodies, budgeted = pickle.loads(self._view[:n])
        # Record the claim *before* releasing the queue slot: a consumer killed
        # in between then still shows "owes a release" and the supervisor pays it.
        base, view, d = self._base, self.ledger.held, deliveries + 1
        view[base] = first
        view[base + 2] = d
        owes = budgeted and self.sem is not None
        if owes:
            view[base + 3] = 1
        view[base + 1] = self._left = len(bodies)  # last: non-zero count = whole record
        if owes:
            self.sem.release()  # type: ignore[union-attr]
            view[base + 3] = 0
        stamps = self.ledger.produced_at
        if len(bodies) == 1:
            return [make_item(str(first), bodies[0], stamps[first], d)]
        return make_items(first, bodies, stamps[first : first + len(bodies)].tolist(), d)

    def _wait(self, timeout: float) -> int | None:
        """Block in recv for about ``timeout`` seconds (in RECV_WAIT steps).

        Returns the message length, -1 on timeout, None if we were orphaned.
        """
        if not self._buf:
            raise RuntimeError("attach_consumer() first")
        for _ in range(max(1, math.ceil(timeout / RECV_WAIT))):
            if self.orphaned():
                return None
            try:
                return self.rx.recv_into(self._buf, MAX_MESSAGE + 1, _TRUNC)
            except BlockingIOError:
                continue
        return None if self.orphaned() else -1

    def _settle(self, count: int) -> None:
        self._left -= count
        if self._left <= 0:
            self.ledger.held[self._base + 1] = 0

    def ack(self, item: Item) -> None:
        """Record ``item`` as handled by this consumer (a second time: a duplicate)."""
        idx = int(item.id)
        done = self.ledger.done
        if done[idx]:
            self.ledger.dups[self.serial] += 1
        else:
            done[idx] = self.serial + 1
        self._left -= 1
        if not self._left:
            self.ledger.held[self._base + 1] = 0

    def ack_many(self, items: Sequence[Item]) -> None:
        """Like :meth:`ack` for each item, recorded in one store when the items are
        one run of consecutive ids that nobody handled yet (the batch fast path)."""
        count = len(items)
        if count <= 1:  # unbatched: nothing to gain
            for item in items:
                self.ack(item)
            return
        first = int(items[0].id)
        end = first + count
        done = self.ledger.done
        one_run = int(items[-1].id) == end - 1
        # An item already done (a redelivery) takes the per-item path, which counts it.
        if not one_run or done[first:end].tobytes() != bytes(done.itemsize * count):
            for item in items:
                self.ack(item)
            return
        done[first:end] = array("i", [self.serial + 1]) * count
        self._left -= count
        if self._left <= 0:
            self.ledger.held[self._base + 1] = 0

    def nack(self, item: Item, reason: str) -> None:
        """Handler failed: have the supervisor deliver it again, or dead-letter it."""
        kind = "dead" if item.deliveries >= self.max_deliveries else "retry"
        self._event(kind, int(item.id), item.deliveries, [item.body], reason)
        self._settle(1)

    def release(self, items: Sequence[Item]) -> None:
        """Hand back unhandled items (when stopping they stay counted as not consumed)."""
        if items and not self.stopping():
            first = int(items[0].id)
            # deliveries - 1: a delivery that was never attempted does not count
            self._event("requeue", first, items[0].deliveries - 1, [i.body for i in items], "")
        self._settle(len(items))

    def _event(self, kind: str, first: int, deliveries: int, bodies: list[str], why: str) -> None:
        # Events go to the supervisor, never straight back onto the queue: if
        # every consumer re-sent at once into a full queue, nobody would be left
        # to drain it. The supervisor's outbox never blocks.
        self.ev_tx.send(pickle.dumps((kind, first, deliveries, bodies, why[:500])))

    # ------------------------------------------------------------ supervisor
    def send_nowait(self, data: bytes) -> bool:
        """Supervisor: send one encoded message without blocking (False if full)."""
        try:
            self.tx.send(data, _NOWAIT)
        except BlockingIOError:
            return False
        return True

    def events(self) -> list[tuple[str, int, int, list[str], str]]:
        """Supervisor: every event consumers sent since the last call."""
        out: list[tuple[str, int, int, list[str], str]] = []
        while True:
            try:
                data = self.ev_rx.recv(MAX_MESSAGE + 1024, _NOWAIT)
            except BlockingIOError:
                return out
            out.append(pickle.loads(data))

    def backlog(self) -> bool:
        """Supervisor: is anything waiting in the queue or the event channel?"""
        ready = select.select([self.rx, self.ev_rx], [], [], 0)[0]
        return bool(ready)

    def discard(self) -> int:
        """Supervisor (shutdown): read and drop queued messages; return items dropped."""
        dropped = 0
        while True:
            try:
                data = self.rx.recv(MAX_MESSAGE + 1, _NOWAIT)
            except BlockingIOError:
                return dropped
            if data != SENTINEL:
                _, _, bodies, budgeted = pickle.loads(data)
                dropped += len(bodies)
                if budgeted and self.sem is not None:
                    self.sem.release()
