"""Run one consumer over the Redis list.

The transport's part -- connect, claim, settle, close -- is
:func:`pcq.core.redis_list.serve.serve`; this role adds what ``pcq consume``
means by a consumer: the handler is pluggable (``handler=``), by default the
demo's simulated work, :func:`pcq.core.work.make_handler` (a random sleep;
bodies starting with ``poison`` always raise), and ``--ledger`` records every
handled item in a file (:mod:`pcq.core.ledger`).
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from pcq.core.console import Console
from pcq.core.ledger import HANDLED, LedgerFile, ledger_handler
from pcq.core.pattern import ConsumeStats, Handler
from pcq.core.redis_common.connection import stderr_log
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.consumer import consumer_id
from pcq.core.redis_list.serve import POLL_SECONDS, serve
from pcq.core.work import make_handler

if TYPE_CHECKING:
    from pcq.consumer.metrics import ConsumerMetrics

__all__ = ["run_consumer"]


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
    metrics: ConsumerMetrics | None = None,
) -> ConsumeStats:
    """Consume until the queue is drained (``drain``) or ``stop`` is set.

    On stop the consumer finishes the item in hand, hands back the rest of its
    batch, flushes its acknowledgements and deregisters. With ``ledger`` (a
    directory), every handled item is also recorded there (:mod:`pcq.core.ledger`);
    with ``metrics``, the handler and the consumer are counted (:mod:`pcq.consumer.metrics`).
    """
    handle = handler or make_handler(settings.max_delay)
    observe = None
    if metrics is not None:
        handle, observe = metrics.timed(handle), metrics.observe
    me = consumer_id()
    handled_file = LedgerFile(ledger / HANDLED) if ledger is not None else None
    if handled_file is not None:
        handle = ledger_handler(handle, handled_file, me)
    try:
        return serve(settings, handle, console, consumer=me, drain=drain, stop=stop, log=log,
                     poll=poll, observe=observe)  # fmt: skip
    finally:
        if handled_file is not None:
            handled_file.close()
