"""A consumer's claims: :class:`Claims`, the claim protocol of one :class:`~pcq.core.redis_list.consumer.ListConsumer`.

Every claim is one call of ``claim.lua`` on the link's Wire, numbered (a call
retried after a lost reply is not applied twice), carrying the
acknowledgements buffered since the previous one::

    queue busy:   claim(batch)                      -> envelopes, busy?
    queue dry:    [claim(acks), BLMOVE, SADD, HLEN, LLEN, LRANGE]
                  then, unless one bare item was all a batch of one wanted,
                  claim(batch, adopt=what BLMOVE moved)
    prefetch:     send claims until DEPTH are in flight; each get reads the
                  oldest reply (land):

        get 1: claim -> batch 1     send c2, c3     handle batch 1
        get 2: land c2 -> batch 2   send c4         handle batch 2
        get 3: land c3 -> batch 3   send c5         ...

So Redis runs the claims while the consumer handles what came before, and
a reply is usually there when the consumer looks for it (no wait, no wake-up).
Trouble on the way (a lost connection, NOSCRIPT after a Redis restart) drops
the Wire's connection and runs every claim in flight again, in order, the
synchronous way: a call Redis had applied answers with everything the
consumer holds (claim.lua's call numbers), one it never saw is applied then.

What a reply brings is held (:class:`~pcq.core.redis_list.held.Held`) and
decoded by the consumer's ``decode`` (which dead-letters what is malformed).
A reply that says a reaper had removed this consumer (``fenced``) forfeits
the lease (:mod:`pcq.core.redis_list.lease`).
"""

from __future__ import annotations

import uuid
from collections import deque
from collections.abc import Callable, Sequence
from typing import Any

from pcq.core.redis_list.acks import AckBuffer
from pcq.core.redis_list.envelope import size
from pcq.core.redis_list.held import Envelope, Held
from pcq.core.redis_list.lease import Lease
from pcq.core.redis_list.link import ListLink
from pcq.core.transport import Item

__all__ = ["DEPTH", "Claims", "Decode"]

Decode = Callable[[list[Envelope], bool], list[Item]]  # (envelopes, some failed before) -> items

# Claims in flight while a consumer prefetches. A prefetching consumer holds at
# most 1 + DEPTH batches: the one it handles, and what the claims in flight
# bring. Figures (docs/benchmarks.md, "Fourth stop"): one consumer draining
# 20,000 items one by one, 5.5-5.7k items/s with 1 in flight, 12.6-14.4k with
# 2, 16.2-21.2k with 3; 2 gets most of it while holding one item less than 3.
DEPTH = 2


class Claims:
    """The claims of one consumer (``consumer``), over its ``link``.

    Args:
        link: The consumer's link (its Wire carries every claim).
        consumer: The consumer id.
        held: What the consumer holds; claims add to it.
        acks: The consumer's buffered acknowledgements; claims carry and clear them.
        decode: Turns newly held envelopes into items.
        lease: The consumer's lease, forfeit when a claim finds it was reaped.
    """

    def __init__(self, link: ListLink, consumer: str, held: Held, acks: AckBuffer,
                 decode: Decode, lease: Lease) -> None:  # fmt: skip
        self.link, self.consumer, self.held, self.acks = link, consumer, held, acks
        self.decode, self.lease = decode, lease
        self.batch = link.settings.batch
        self.busy = True  # items were left in the queue: try a non-blocking claim first
        self.ready: list[Item] = []  # items of landed claims, for the next get
        self._in_flight: deque[list[Any]] = deque()  # the arguments of each claim sent, oldest first
        self._unsure = False  # an interrupt lost replies: the list may hold envelopes not held
        self._calls = 0
        self._call_prefix = uuid.uuid4().hex[:8]
        k = link.keys
        self._keys = [k.queue, k.processing(consumer), k.consumers, k.deliveries, k.errors,
                      k.queue_extra, k.call(consumer)]  # fmt: skip

    def claim(self, want: int) -> list[Item]:
        """Claim up to ``want`` items now (never blocks; nothing may be in flight)."""
        reply = self.link.eval("claim", self._keys, self._args(want))
        self.acks.clear()
        return self._hold(reply)

    def flush(self) -> None:
        """Send buffered acknowledgements now (a claim of nothing that carries them).

        The claims in flight land first: their items wait in ``ready``.
        """
        self.land(every=True)
        if self.acks:
            self._check(self.link.eval("claim", self._keys, self._args(0)))
            self.acks.clear()

    def wait_and_claim(self, timeout: float) -> list[Item]:
        """Block in BLMOVE for the next envelope, then claim the rest of a batch.

        One round trip: acknowledgements, ``BLMOVE`` and what a batch of one needs
        besides (registration, pending failures, the queue's length, and the
        processing list: a pipeline retried after a lost reply may have moved
        twice). A second call (``claim.lua`` adopting what was moved) only when
        the batch wants more, or the envelope holds more than the batch.
        """
        k, keys, me = self.link.keys, self._keys, self.consumer
        commands: list[Sequence[Any]] = []
        if self.acks:
            commands.append(self.link.scripts.command("claim", keys, self._args(0)))
            self.acks.clear()
        commands += [("BLMOVE", k.queue, k.processing(me), "LEFT", "RIGHT", timeout),
                     ("SADD", k.consumers, me), ("HLEN", k.deliveries), ("LLEN", k.queue),
                     ("LRANGE", k.processing(me), 0, -1)]  # fmt: skip
        replies = self.link.execute(commands)
        if len(replies) > 5:
            self._check(replies[0])
        failures, length, holding = replies[-3:]
        moved = self.held.unknown(holding)  # at the tail: what BLMOVE put there
        if not moved:
            return []
        if self.batch == 1 and len(moved) == 1 and size(moved[0]) == 1:
            return self._hold([failures, length, moved, 0])
        reply = self.link.eval("claim", keys, self._args(self.batch, adopt=len(moved)))
        self.acks.clear()
        return self._hold(reply)

    def prefetch(self) -> None:
        """Send claims until ``DEPTH`` are in flight (the first carries the acknowledgements so far).

        Not while items of landed claims wait in ``ready``: what a consumer
        holds stays within 1 + ``DEPTH`` batches.
        """
        while len(self._in_flight) < DEPTH and not self.ready:
            args = self._args(self.batch)
            self.acks.clear()
            self._in_flight.append(args)
            if not self.link.send("claim", self._keys, args):
                self._again()
                return

    def land(self, every: bool = False) -> None:
        """Read claims in flight, oldest first, until one brings items (``every``: all of them).

        Their items wait in ``ready``. A claim that brought nothing (the queue
        ran dry) does not stop the reading: the caller then has nothing in
        flight and may claim the synchronous way.
        """
        while self._in_flight and (every or not self.ready):
            try:
                reply = self.link.receive()
            except Exception:  # noqa: BLE001 - a lost reply, or any error reply (NOSCRIPT, BUSY...)
                # Whatever the reply was, the calls are safe to run again, in
                # order; an error that persists is raised by the synchronous run.
                self._again()
                return
            except BaseException:
                # An interrupt: no more network. The replies still awaited go with
                # the connection; a claim among them may have been applied, so its
                # envelopes are listed as ours but not held: from now on the list
                # is never dropped whole ('all'), and a reaper hands them back.
                self.link.wire.drop()
                self._in_flight.clear()
                self._unsure = True
                raise
            self._in_flight.popleft()
            self.ready += self._hold(reply)

    def forget(self) -> None:
        """Read every claim in flight (the Wire must stay in step) and drop what is ready."""
        self.land(every=True)
        self.ready = []

    def _again(self) -> None:
        """Run every claim in flight again, in order, the synchronous way (see the module docstring)."""
        self.link.wire.drop()  # replies still awaited, if any, are lost with it
        while self._in_flight:
            args = self._in_flight[0]
            self.ready += self._hold(self.link.eval("claim", self._keys, args))
            self._in_flight.popleft()

    def _args(self, want: int, adopt: int = 0) -> list[Any]:
        # Every call gets the next number; the script skips one it has applied.
        self._calls += 1
        # Not 'all' while a claim is in flight: what it claims is not held yet.
        settle = self.acks.args(covers_all=not (self.held or self._in_flight or self._unsure))
        k, me = self.link.keys, self.consumer
        return [k.prefix, me, self._call_prefix, self._calls, want, settle[0], adopt, *settle[1:]]

    def _hold(self, reply: list[Any]) -> list[Item]:
        """Take a claim's reply: the envelopes now held (see claim.lua)."""
        self._check(reply)
        self.busy = int(reply[1]) > 0  # the queue may hold more (see claim.lua)
        envelopes = self.held.new(reply[2], whole=int(reply[3]) == 1)
        return self.decode(envelopes, int(reply[0]) > 0)

    def _check(self, reply: list[Any]) -> None:
        if len(reply) > 4 and reply[4]:  # fenced: a reaper had removed us
            self.lease.forfeit()
