"""Reaping: the items of consumers whose heartbeat expired go back to the queue.

Every consumer's heartbeat thread calls :func:`reap` every ``0.4 x TTL``
(``reap.lua``, which opens each dead consumer's envelopes: acknowledged items
are dropped, the rest go back to the head, or to the dead-letter list at
``max_deliveries``). A consumer also reaps its own id once at start (a
restarted container's predecessor), and again when it rejoins after losing
its lease (:mod:`pcq.core.redis_list.lease`).
"""

from __future__ import annotations

import time

from pcq.core.redis_list.link import ListLink

__all__ = ["reap"]


def reap(link: ListLink, caller: str, predecessor: str = "") -> tuple[int, int, int]:
    """Requeue the items of consumers whose heartbeat expired (one ``reap.lua`` call).

    Args:
        link: The calling consumer's link.
        caller: The calling consumer's id (never reaped, unless it is ``predecessor``).
        predecessor: A consumer id reaped even though its heartbeat is alive:
            the caller's own id, before it holds anything.

    Returns:
        (consumers reaped, items requeued, items dead-lettered).
    """
    k, settings = link.keys, link.settings
    keys = [k.consumers, k.queue, k.deliveries, k.errors, k.dead, k.stats, k.queue_extra]
    args: list[str | int] = [
        k.prefix,
        settings.max_deliveries,
        f"{time.time():.3f}",
        "" if predecessor == caller else caller,
        settings.max_payload_bytes,
        predecessor,
    ]
    reaped, requeued, dead = (int(x) for x in link.scripts.reap(keys, args))
    return reaped, requeued, dead
