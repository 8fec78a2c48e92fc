"""Run one consumer over the Redis list, and check a consumer's health.

The handler is pluggable (``handler=``); the default is the demo's
:func:`make_handler`: a random sleep of up to ``max_delay`` seconds standing in
for work (no sleep at all when ``max_delay`` is 0: the benchmark's no-op), and a
deliberate failure for poison items -- **a body starting with ``poison``
always raises** :class:`PoisonPill`, so the item is delivered again and, after
``max_deliveries``, dead-lettered with the reason. Tests and demos use it to
show the dead-letter path.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import RedisError

from core.audit import HANDLED, RecordFile, audited_handler
from core.config import RedisSettings
from core.console import Console
from core.errors import ConnectionFailed
from core.keys import Keys
from core.pattern import ConsumeStats, Handler, consume
from core.redisconn import connect, explain, stderr_log
from core.redisq import RedisQueue
from core.transport import Item

__all__ = ["PoisonPill", "check_health", "make_handler", "noop", "run_consumer"]

POLL_SECONDS = 0.5  # BLMOVE timeout: how often an idle consumer looks at its stop flag


class PoisonPill(Exception):
    """Raised by the demo handler for bodies starting with ``poison``."""


def noop(item: Item) -> None:
    """The benchmark's handler: does nothing (poison items still raise)."""
    if item.body.startswith("poison"):
        raise PoisonPill(f"{item.body!r} always fails")


def make_handler(max_delay: float, seed: int | None = None) -> Handler:
    """The demo handler: sleep up to ``max_delay`` s; ``poison...`` bodies raise."""
    if max_delay <= 0:
        return noop
    rng = random.Random(seed)

    def handle(item: Item) -> None:
        noop(item)
        time.sleep(rng.uniform(0, max_delay))

    return handle


def run_consumer(
    settings: RedisSettings,
    console: Console,
    *,
    drain: bool = False,
    handler: Handler | None = None,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = stderr_log,
    poll: float = POLL_SECONDS,
    ledger: Path | None = None,
) -> ConsumeStats:
    """Consume until the queue is drained (``drain``) or ``stop`` is set.

    On stop the consumer finishes the item in hand, hands back the rest of its
    batch, flushes its acknowledgements and deregisters. With ``ledger`` (a
    directory), every handled item is also recorded there (:mod:`core.audit`).
    """
    halt = stop or threading.Event()
    handle = handler or make_handler(settings.max_delay)
    client = connect(settings)
    audit = RecordFile(ledger / HANDLED) if ledger is not None else None
    try:
        queue = RedisQueue(client, settings, drain=drain, log=log, notify=console.line)
        if audit is not None:
            handle = audited_handler(handle, audit, queue.consumer)
        try:
            stats = consume(queue, handle, console, stop=halt.is_set, poll=poll)
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
        if audit is not None:
            audit.close()
        client.close()


def check_health(settings: RedisSettings, host: str | None = None) -> tuple[bool, str]:
    """Is a consumer of this host alive (heartbeat key present)?

    Consumer ids are ``<hostname>:<pid>``; in a container the hostname is the
    container id, so this finds the container's own consumer whatever its pid.

    Returns:
        (healthy, one-line explanation).
    """
    host = host or socket.gethostname()
    keys = Keys(settings.queue)
    client = connect(settings)
    try:
        members = [c.decode() if isinstance(c, bytes) else c for c in client.smembers(keys.consumers)]
        mine = sorted(c for c in members if c.startswith(f"{host}:"))
        alive = [c for c in mine if client.exists(keys.heartbeat(c))]
    except RedisError as exc:
        return False, str(explain(exc, settings))
    finally:
        client.close()
    if alive:
        return True, f"healthy: consumer {', '.join(alive)} has a live heartbeat"
    return False, f"unhealthy: no consumer of host {host} has a live heartbeat on queue {settings.queue}"
