"""RQ mode, the workers: stock ``rq worker`` with pcq's job class, and its health check.

:class:`PcqWorker` is stock :class:`rq.Worker`, plus three things: it always
  uses :class:`AllowlistJob` and JSON (even if ``--job-class`` is forgotten), it
  names itself ``<hostname>.<pid>.<4 hex>`` (readable in ``rq info``; the random
  part because a restarted container keeps its hostname and often its pid, and
  RQ refuses to start a worker whose name a dead one still holds), and the heartbeat grace RQ hard-codes to 60 s is configurable
  (``PCQ_RQ_HEARTBEAT_GRACE``) so a dead worker's job is noticed in seconds.

How long RQ takes to notice a dead worker (a SIGKILL, or a container gone):

1. the job's execution entry in the started registry expires
   ``min(job timeout, --job-monitoring-interval) + 60`` s after the worker's
   last heartbeat: with the defaults (monitoring every 30 s) 60 to 90 s after
   the death; the ``+ 60`` is hard-coded in RQ;
2. nothing happens until some live worker runs its maintenance task (registry
   cleanup), every ``--maintenance-interval`` (default 600 s); an *idle* worker
   only checks between two blocking waits on the queue, which last
   ``--worker-ttl`` - 15 s (default 405 s);
3. the cleanup then retries the job if it has ``Retry`` left (else fails it
   with ``AbandonedJobError``) and a worker picks it up.

So stock RQ brings a dead worker's job back after roughly 1.5 to 12 minutes.
pcq's compose file runs ``--job-monitoring-interval 5 --maintenance-interval 10
--worker-ttl 30`` with ``PCQ_RQ_HEARTBEAT_GRACE=10``: about 15 to 30 s. The price
of a short grace: a live worker whose heartbeats are late by more than the
grace (Redis stalled, host frozen) has its job started again elsewhere -- a
duplicate, which the run's handled set counts.

"""

from __future__ import annotations

import os
import secrets
import socket
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, Worker

from pcq.core.errors import UsageProblem
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.rq_jobs.jobs import AllowlistJob

__all__ = ["RQ_HEARTBEAT_GRACE", "PcqSimpleWorker", "PcqWorker", "check"]

#: RQ's hard-coded slack added to every heartbeat TTL (see module docstring).
RQ_HEARTBEAT_GRACE = 60


def _heartbeat_grace() -> int:
    raw = os.environ.get("PCQ_RQ_HEARTBEAT_GRACE", "")
    try:
        grace = int(raw) if raw else RQ_HEARTBEAT_GRACE
    except ValueError:
        grace = RQ_HEARTBEAT_GRACE
    return max(1, grace)


class _PcqWorkerMixin:
    """What pcq changes in a stock RQ worker (see the module docstring)."""

    def _pcq_init(self, kwargs: dict[str, Any]) -> dict[str, Any]:
        kwargs["job_class"] = AllowlistJob
        kwargs["serializer"] = JSONSerializer
        if not kwargs.get("name"):
            kwargs["name"] = f"{socket.gethostname()}.{os.getpid()}.{secrets.token_hex(2)}"
        return kwargs

    def get_heartbeat_ttl(self, job: Job, *args: Any, **kwargs: Any) -> int:
        """RQ's TTL with its hard-coded 60 s slack replaced by ``PCQ_RQ_HEARTBEAT_GRACE``.

        RQ 3 also passes how long the job has run (``working_time``): passed on as given.
        """
        ttl: int = super().get_heartbeat_ttl(job, *args, **kwargs)  # type: ignore[misc]
        return max(1, ttl - RQ_HEARTBEAT_GRACE + _heartbeat_grace())


class PcqWorker(_PcqWorkerMixin, Worker):
    """Stock forking :class:`rq.Worker` with pcq's job class, JSON and naming."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._pcq_init(kwargs))


class PcqSimpleWorker(_PcqWorkerMixin, SimpleWorker):
    """Same as :class:`PcqWorker` but runs jobs in-process (no fork per job)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._pcq_init(kwargs))


def check(url: str | None = None, host: str | None = None) -> int:
    """Health check: 0 if an RQ worker of this host (container) is registered in Redis.

    A worker's registration expires ``--worker-ttl`` + 60 s after its last
    heartbeat, so a hung or dead worker turns the container unhealthy.
    """
    prefix = f"{host or socket.gethostname()}."
    try:
        # The settings read REDIS_URL and, in containers, the password file and CA.
        url = url or os.environ.get("RQ_REDIS_URL") or RedisSettings.from_env().secret_url()
        with Redis.from_url(url, socket_timeout=5) as conn:
            names = [w.name for w in Worker.all(connection=conn)]
    except (RedisError, ValueError, UsageProblem) as exc:  # unreachable, bad URL: one line
        print(f"unhealthy: {type(exc).__name__}: {exc}")
        return 1
    mine = [name for name in names if name.startswith(prefix)]
    print(f"healthy: {', '.join(mine)}" if mine else f"unhealthy: no worker named {prefix}*")
    return 0 if mine else 1


if __name__ == "__main__":  # python -m pcq.core.rq_jobs.workers --check
    import sys

    if sys.argv[1:] != ["--check"]:
        print("usage: python -m pcq.core.rq_jobs.workers --check", file=sys.stderr)
        sys.exit(2)
    sys.exit(check())
