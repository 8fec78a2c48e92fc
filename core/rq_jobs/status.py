"""An RQ queue's state right now, read-only: what ``pcq status`` shows of RQ.

Queue length, the size of each registry (started, finished, failed, deferred,
scheduled, canceled) and the number of workers, in one pipeline.
"""

from __future__ import annotations

from typing import Any

import redis
from rq.registry import (
    CanceledJobRegistry,
    DeferredJobRegistry,
    FailedJobRegistry,
    FinishedJobRegistry,
    ScheduledJobRegistry,
    StartedJobRegistry,
)

__all__ = ["rq_status"]

_REGISTRIES = {
    "started": StartedJobRegistry, "finished": FinishedJobRegistry, "failed": FailedJobRegistry,
    "deferred": DeferredJobRegistry, "scheduled": ScheduledJobRegistry,
    "canceled": CanceledJobRegistry,
}


def rq_status(client: redis.Redis, queue: str) -> dict[str, Any]:
    """RQ queue length, registry sizes and worker count, read-only.

    ZCARD rather than ``registry.count``: the latter runs RQ's cleanup, which
    moves jobs around -- a status command must not change what it reports.
    """
    with client.pipeline(transaction=False) as pipe:
        pipe.llen(f"rq:queue:{queue}")
        for cls in _REGISTRIES.values():
            pipe.zcard(cls(queue, connection=client).key)
        pipe.scard(f"rq:workers:{queue}")
        replies = pipe.execute()
    registries = {name: int(n) for name, n in zip(_REGISTRIES, replies[1:-1])}
    return {"queue": queue, "length": int(replies[0]), "registries": registries, "workers": int(replies[-1])}
