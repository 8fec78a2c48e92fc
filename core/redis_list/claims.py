"""A consumer's claims: :class:`Claims`, the claim protocol of one :class:`~pcq.core.redis_list.consumer.ListConsumer`.

Every claim is one call of ``claim.lua`` on the link's Wire, numbered (a call
retried after a lost reply is not applied twice), carrying the
acknowledgements buffered since the previous one::

    queue busy:   claim(batch)                      -> envelopes, busy?
    queue dry:    [claim(acks), BLMOVE, SADD, HLEN, LLEN, LRANGE]
                  then, unless one bare item was all a batch of one wanted,
                  claim(batch, adopt=what BLMOVE moved)
    prefetch:     send claim(batch) now, read its reply at the next get (land)

What a reply brings is held (:class:`~pcq.core.redis_list.held.Held`) and
decoded by the consumer's ``decode`` (which dead-letters what is malformed).
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from typing import Any

from pcq.core.redis_list.acks import AckBuffer
from pcq.core.redis_list.envelope import size
from pcq.core.redis_list.held import Envelope, Held
from pcq.core.redis_list.link import ListLink
from pcq.core.transport import Item

__all__ = ["Claims", "Decode"]

Decode = Callable[[list[Envelope], bool], list[Item]]  # (envelopes, some failed before) -> items


class Claims:
    """The claims of one consumer (``consumer``), over its ``link``.

    Args:
        link: The consumer's link (its Wire carries every claim).
        consumer: The consumer id.
        held: What the consumer holds; claims add to it.
        acks: The consumer's buffered acknowledgements; claims carry and clear them.
        decode: Turns newly held envelopes into items.
    """

    def __init__(self, link: ListLink, consumer: str, held: Held, acks: AckBuffer,
                 decode: Decode) -> None:  # fmt: skip
        self.link, self.consumer, self.held, self.acks = link, consumer, held, acks
        self.decode = decode
        self.batch = link.settings.batch
        self.busy = True  # items were left in the queue: try a non-blocking claim first
        self.ready: list[Item] = []  # items of a landed prefetch, for the next get
        self._prefetched: Callable[[], Any] | None = None  # reads an in-flight claim's reply
        self._calls = 0
        self._call_prefix = uuid.uuid4().hex[:8]
        k = link.keys
        self._keys = [k.queue, k.processing(consumer), k.consumers, k.deliveries, k.errors,
                      k.queue_extra, k.call(consumer)]  # fmt: skip

    def claim(self, want: int) -> list[Item]:
        """Claim up to ``want`` items now (never blocks)."""
        reply = self.link.eval("claim", self._keys, self._args(want))
        self.acks.clear()
        return self._hold(reply)

    def flush(self) -> None:
        """Send buffered acknowledgements now (a claim of nothing that carries them)."""
        self.land()
        if self.acks:
            self.link.eval("claim", self._keys, self._args(0))
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
        failures, length, holding = self.link.execute(commands)[-3:]
        moved = self.held.unknown(holding)  # at the tail: what BLMOVE put there
        if not moved:
            return []
        if self.batch == 1 and len(moved) == 1 and size(moved[0]) == 1:
            return self._hold([failures, length, moved, 0])
        reply = self.link.eval("claim", keys, self._args(self.batch, adopt=len(moved)))
        self.acks.clear()
        return self._hold(reply)

    def prefetch(self) -> None:
        """Send the next claim now (with the acknowledgements so far); :meth:`land` reads it."""
        self._prefetched = self.link.send("claim", self._keys, self._args(self.batch))
        self.acks.clear()

    def land(self) -> None:
        """Read a prefetched claim's reply, if one is in flight; its items wait in ``ready``."""
        if self._prefetched is not None:
            receive, self._prefetched = self._prefetched, None
            self.ready += self._hold(receive())

    def _args(self, want: int, adopt: int = 0) -> list[Any]:
        # Every call gets the next number; the script skips one it has applied.
        self._calls += 1
        settle = self.acks.args(covers_all=not self.held)
        k, me = self.link.keys, self.consumer
        return [k.prefix, me, self._call_prefix, self._calls, want, settle[0], adopt, *settle[1:]]

    def _hold(self, reply: list[Any]) -> list[Item]:
        """Take a claim's reply: the envelopes now held (see claim.lua)."""
        self.busy = int(reply[1]) > 0  # the queue may hold more (see claim.lua)
        envelopes = self.held.new(reply[2], whole=int(reply[3]) == 1)
        return self.decode(envelopes, int(reply[0]) > 0)
