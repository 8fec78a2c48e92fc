"""How long a consumer's claims are surely its own: :class:`Lease` (fencing a paused consumer).

A consumer holds what it claimed while its heartbeat key lives; once the key
expires, any other consumer's reaper may hand those items to someone else.
A consumer paused longer than its heartbeat's lifetime (SIGSTOP, ``docker
pause``, a frozen VM, a long GC) wakes up holding items that are no longer
its own. It must not start handling them::

    beat.lua 'stay' acknowledged at t0 (monotonic, taken before the call)
       '-> lease.until = t0 + ttl: the key cannot expire before then (Redis
           started the ttl after t0), so no reaper can have taken anything

    before each item (ListConsumer.holds):
       now < until  -> held (no round trip: the hot path)
       otherwise    -> beat now ('stay'): 1 -> held, lease renewed
                                          0 -> lost: a reaper removed us

``beat.lua`` in ``stay`` mode writes nothing for a consumer that is no longer
registered, so a heartbeat thread that wakes first cannot quietly bring back a
reaped consumer (and with it, leases on items already handed to others). The
reap and the beat are both scripts, so one of them is first: either the reaper
took everything, or the beat came back in time and nothing was taken.

Once lost, everything the consumer held is forfeit (a reaper handed it back,
counting the redeliveries); the item in hand when the pause began may still
complete. The consumer then rejoins under a fresh registration
(:meth:`pcq.core.redis_list.consumer.ListConsumer.get`).
"""

from __future__ import annotations

import time

__all__ = ["Lease"]


class Lease:
    """A consumer's lease on its claims: until when it surely holds them, or lost.

    Written by whichever thread beats (the heartbeat thread, or the consumer's
    own thread confirming before an item); plain attribute writes, so no lock.
    """

    def __init__(self) -> None:
        self.until = 0.0  # monotonic; nothing held before the first beat
        self.lost = False

    def renewed(self, started: float, ttl: float) -> None:
        """A ``stay`` or ``join`` beat begun at monotonic ``started`` was written.

        Ignored once lost, until :meth:`rejoined`: so ``until`` alone says
        whether the lease is sure (the consumer's hot path reads only it).
        """
        if not self.lost:
            self.until = started + ttl

    def forfeit(self) -> None:
        """A ``stay`` beat found this consumer no longer registered: reaped."""
        self.lost = True
        self.until = 0.0

    def sure(self) -> bool:
        """True while no reaper can have taken anything (no round trip)."""
        return time.monotonic() < self.until  # 0.0 once lost

    def rejoined(self) -> None:
        """A fresh registration: the loss is dealt with."""
        self.lost = False
