"""One consumer's life on the Redis list: connect, consume until told to stop, close.

:func:`serve` is the transport-level lifecycle shared by ``pcq consume``
(:mod:`pcq.consumer.run`, which adds the demo's handler and the ``--ledger``
files) and the comparisons (:mod:`pcq.core.compare`): a client, one
:class:`~pcq.core.redis_list.consumer.ListConsumer`,
:func:`pcq.core.pattern.consume`, then a close that says whether Redis is
still reachable.
"""

from __future__ import annotations

import threading
from collections.abc import Callable

from pcq.core.console import Console
from pcq.core.errors import ConnectionFailed
from pcq.core.pattern import ConsumeStats, Handler, consume, consume_batches
from pcq.core.redis_common.connection import connect, stderr_log
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import ListConsumer
from pcq.core.transport import AckMode, BatchAckConsumer

__all__ = ["POLL_SECONDS", "serve"]

# BLMOVE timeout: how often an idle consumer wakes to look at its stop flag, so
# also the longest an idle consumer takes to notice SIGTERM. An item that
# arrives ends the wait at once, so it costs no latency; each wake-up is a round
# trip of five commands. 8 idle host consumers + Redis, 30 s (load ~15): 954 ms
# of CPU with 0.5 s, 334 ms with 2 s (docs/benchmarks.md, "Lean consumers").
POLL_SECONDS = 2.0


def serve(
    settings: RedisSettings,
    handle: Handler,
    console: Console,
    *,
    consumer: str | None = None,
    drain: bool = False,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = stderr_log,
    poll: float = POLL_SECONDS,
    observe: Callable[[BatchAckConsumer], BatchAckConsumer] | None = None,
) -> ConsumeStats:
    """Consume with ``handle`` until the queue is drained (``drain``) or ``stop`` is set.

    On stop the consumer finishes the item in hand, hands back the rest of its
    batch, flushes its acknowledgements and deregisters. ``settings.ack`` picks
    the pattern's loop: :func:`~pcq.core.pattern.consume` (one ``ack`` per item)
    or :func:`~pcq.core.pattern.consume_batches` (one ``ack_many`` per batch).

    Args:
        consumer: Consumer id (default :func:`pcq.core.redis_list.consumer.consumer_id`).
        observe: Wraps the consumer the pattern sees (``pcq consume --metrics-port``
            counts with it: :mod:`pcq.consumer.metrics`).
    """
    halt = stop or threading.Event()
    client = connect(settings)
    try:
        queue = ListConsumer(client, settings, consumer=consumer, drain=drain, log=log,
                             notify=console.line)  # fmt: skip
        try:
            seen = queue if observe is None else observe(queue)
            loop = consume_batches if settings.ack is AckMode.BATCH else consume
            stats = loop(seen, handle, console, stop=halt.is_set, poll=poll)
        except ConnectionFailed:
            # Redis is gone: do not retry all over again to hand items back; our
            # heartbeat stops, and a reaper requeues what we held.
            queue.close(reachable=False)
            raise
        except BaseException:
            queue.close()
            raise
        queue.close()
        return stats
    finally:
        client.close()
