"""The local transport's wire, shared by every role: two socket pairs and a semaphore.

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

So the wire here is one ``socketpair(AF_UNIX, SOCK_SEQPACKET)`` (the *items*
pair). Producers (and the supervisor, for redeliveries and end-of-stream
sentinels) ``send`` on one end, every consumer ``recv``-s on the other.
SEQPACKET keeps message boundaries and each send/recv is one atomic system
call, so any number of readers and writers share it with *no lock at all*: a
SIGKILL can never leave a lock held nor a message half-read. A full socket
buffer blocks ``send``, which is the backpressure. Messages are pickled -- fine
between our own processes on one host (the no-pickle rule is for the network)
-- and each one is a batch of items with consecutive global indexes:
``(first, deliveries, bodies, budgeted)`` (:func:`encode`). A second pair (the
*events* pair) carries consumers' nacks and releases to the supervisor.

:class:`Channel` is built once by the parent and handed to every child (copied
by fork, pickled for spawn/forkserver); each child builds its role object over
it: :class:`~pcq.core.local.producer.LocalProducer`,
:class:`~pcq.core.local.consumer.LocalConsumer`. The parent's side is the
:class:`SupervisorPort` here. What a consumer holds is recorded in the
:class:`~pcq.core.local.shared_state.SharedState` (lock-free shared memory), so
the supervisor can put back exactly what a dead consumer held.
"""

from __future__ import annotations

import os
import pickle
import select
import socket
import struct
from collections.abc import Iterator, Sequence
from multiprocessing.context import BaseContext

from pcq.core.errors import PcqError
from pcq.core.local.shared_state import SharedState

__all__ = [
    "MAX_MESSAGE", "RECV_WAIT", "SENTINEL", "Channel", "ParentWatch", "SupervisorPort", "encode",
    "encode_counted", "runs",
]

# Largest datagram we send. The socket's default SO_SNDBUF (~208 KiB) caps a
# single datagram a little below that; 64 KiB keeps well clear of it.
MAX_MESSAGE = 64 * 1024
SENTINEL = b"S"  # end of stream for one consumer; pickles never start with "S"
SNDBUF = 1 << 20  # a deeper buffer means fewer producer wake-ups (capped by wmem_max)
RECV_WAIT = 0.1  # seconds a consumer blocks in one recv before it looks around
# Plain ints: or-ing the enum members costs more than the recv itself.
NOWAIT = int(socket.MSG_DONTWAIT)
TRUNC = int(socket.MSG_TRUNC)  # recv returns the real length of a longer message
PROTOCOL = pickle.HIGHEST_PROTOCOL

Event = tuple[str, int, int, list[str], str]  # (kind, first, deliveries, bodies, why)


def encode(first: int, deliveries: int, bodies: list[str], budgeted: bool) -> list[bytes]:
    """Pickle a run of items into one or more messages of at most MAX_MESSAGE bytes."""
    return [data for data, _ in encode_counted(first, deliveries, bodies, budgeted)]


def encode_counted(
    first: int, deliveries: int, bodies: list[str], budgeted: bool
) -> list[tuple[bytes, int]]:
    """Like :func:`encode`, with the number of items in each message."""
    data = pickle.dumps((first, deliveries, bodies, budgeted), PROTOCOL)
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


class Channel:
    """What every role of one local run shares (see the module docstring).

    Args:
        ctx: The multiprocessing context the children start from.
        state: The run's shared memory.
        queue_size: Bound the queue to this many messages (None: the socket
            buffer is the only bound).
        max_deliveries: Deliveries after which a failing item is dead-lettered.
    """

    def __init__(
        self,
        ctx: BaseContext,
        state: SharedState,
        *,
        queue_size: int | None = None,
        max_deliveries: int = 5,
    ) -> None:
        self.state = state
        self.max_deliveries = max_deliveries
        # Bounded by messages. A plain Semaphore, not BoundedSemaphore: the
        # supervisor may release on behalf of a consumer that died between recv
        # and release, and an over-release must not crash anyone.
        self.sem = ctx.Semaphore(queue_size) if queue_size else None
        self.queue_size = queue_size
        self.budgeted = self.sem is not None  # do consumers owe the semaphore a release?
        self.tx, self.rx = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)  # items
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

    def close(self) -> None:
        """Close this process's socket handles (each process holds its own)."""
        for sock in (self.tx, self.rx, self.ev_tx, self.ev_rx):
            sock.close()


class ParentWatch:
    """Built in a child: has the parent that started it died?

    After a ``kill -9`` of the supervisor nobody will send a sentinel or repay
    a semaphore any more, so a child that waits must stop instead. (Under
    forkserver the parent is the fork server, which exits with the supervisor.)
    """

    __slots__ = ("_ppid",)

    def __init__(self) -> None:
        self._ppid = os.getppid()

    def gone(self) -> bool:
        """True once this process has been re-parented."""
        return os.getppid() != self._ppid


class SupervisorPort:
    """The supervisor's side of a :class:`Channel`: it never blocks on the wire.

    It sends redeliveries and sentinels without blocking, reads consumers'
    events, sees whether anything is waiting, drops what is left at shutdown
    and repairs the queue-size semaphore on behalf of dead consumers.
    """

    def __init__(self, channel: Channel) -> None:
        self.channel = channel
        self.state = channel.state
        self.bounded = channel.sem is not None  # is there a queue-size semaphore?

    def send_nowait(self, data: bytes) -> bool:
        """Send one encoded message without blocking (False if the queue is full)."""
        try:
            self.channel.tx.send(data, NOWAIT)
        except BlockingIOError:
            return False
        return True

    def events(self) -> list[Event]:
        """Every event consumers sent since the last call."""
        out: list[Event] = []
        ev_rx = self.channel.ev_rx
        while True:
            try:
                data = ev_rx.recv(MAX_MESSAGE + 1024, NOWAIT)
            except BlockingIOError:
                return out
            out.append(pickle.loads(data))

    def backlog(self) -> bool:
        """Is anything waiting in the queue or the event channel?"""
        ready = select.select([self.channel.rx, self.channel.ev_rx], [], [], 0)[0]
        return bool(ready)

    def discard(self) -> int:
        """Shutdown: read and drop queued messages; return how many items were dropped."""
        dropped = 0
        while True:
            try:
                data = self.channel.rx.recv(MAX_MESSAGE + 1, NOWAIT)
            except BlockingIOError:
                return dropped
            if data != SENTINEL:
                _, _, bodies, budgeted = pickle.loads(data)
                dropped += len(bodies)
                if budgeted:
                    self.repay()

    def repay(self) -> None:
        """Release the queue-size semaphore once, for a consumer that cannot."""
        if self.channel.sem is not None:
            self.channel.sem.release()

    def refill(self) -> None:
        """Give back every queue slot taken and not accounted for (a leaked one).

        Call only when nothing is queued and nobody holds anything: then every
        slot should be free.
        """
        sem, size = self.channel.sem, self.channel.queue_size or 0
        if sem is None:
            return
        try:
            value = sem.get_value()  # type: ignore[attr-defined]
        except NotImplementedError:  # macOS
            return
        for _ in range(max(0, size - value)):
            sem.release()

    def close(self) -> None:
        """Close the parent's socket handles."""
        self.channel.close()
