"""Run one consumer over the Redis list, and check a consumer's health.

The handler is pluggable (``handler=``); the default is the demo's simulated
work, :func:`pcq.core.work.make_handler` (a random sleep; bodies starting with
``poison`` always raise).
"""

from __future__ import annotations

import socket
import threading
from collections.abc import Callable
from pathlib import Path

from redis.exceptions import RedisError

from pcq.core.console import Console
from pcq.core.errors import ConnectionFailed
from pcq.core.ledger import HANDLED, LedgerFile, ledger_handler
from pcq.core.pattern import ConsumeStats, Handler, consume
from pcq.core.redis_common.connection import connect, explain, stderr_log
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import RedisQueue
from pcq.core.work import make_handler

__all__ = ["check_health", "run_consumer"]

POLL_SECONDS = 0.5  # BLMOVE timeout: how often an idle consumer looks at its stop flag


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
    directory), every handled item is also recorded there (:mod:`pcq.core.ledger`).
    """
    halt = stop or threading.Event()
    handle = handler or make_handler(settings.max_delay)
    client = connect(settings)
    audit = LedgerFile(ledger / HANDLED) if ledger is not None else None
    try:
        queue = RedisQueue(client, settings, drain=drain, log=log, notify=console.line)
        if audit is not None:
            handle = ledger_handler(handle, audit, queue.consumer)
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
