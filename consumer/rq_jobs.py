"""RQ mode, consumer side: the one job function stock ``rq worker``\\ s may run.

``pcq produce --via rq`` enqueues one RQ job per item, always calling
:func:`handle` (``consumer.rq_jobs.handle``) with JSON arguments. Consumers are
stock RQ workers started with::

    rq worker --serializer json \\
        --job-class consumer.rq_jobs.AllowlistJob \\
        --worker-class consumer.rq_jobs.PcqWorker  pcq-rq

so ``rq info``, ``rq requeue`` and the registries keep working on our queue.

Why the two classes:

* :class:`AllowlistJob` -- an RQ job names the function to import and call by
  its dotted path, and anyone who can write to Redis can enqueue
  ``os.system``. Our jobs are only ever :data:`HANDLER`; a job naming anything
  else (or carrying callbacks, webhooks, repeats, an instance, non-JSON data or
  more than :data:`MAX_JOB_BYTES`) is *refused*: it goes to the failed registry
  with :class:`RefusedJob` and nothing it names is ever imported.
* :class:`PcqWorker` -- stock :class:`rq.Worker`, plus three things: it always
  uses :class:`AllowlistJob` and JSON (even if ``--job-class`` is forgotten), it
  names itself ``<hostname>.<pid>`` (unique per container, readable in
  ``rq info``), and the heartbeat grace RQ hard-codes to 60 s is configurable
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
duplicate, which the ledger counts.

Handler knobs (worker environment, as for ``pcq consume``): ``PCQ_MAX_DELAY``
(the seed's random sleep per item, default 0.5 s; ``PCQ_MIN_DELAY`` raises its
floor), ``PCQ_MAX_PAYLOAD_BYTES`` and ``PCQ_QUIET=1`` (no per-item lines). As
in ``pcq consume``, a body starting with ``poison`` always raises.
"""

from __future__ import annotations

import functools
import os
import random
import socket
import time
from typing import Any

from redis import Redis
from redis.exceptions import RedisError
from rq import get_current_job
from rq.exceptions import DeserializationError
from rq.job import Job
from rq.serializers import JSONSerializer
from rq.worker import SimpleWorker, Worker

from consumer.run import noop
from core.config import RedisSettings
from core.console import Console
from core.keys import Keys
from core.payload import BadPayload, decode, run_of

__all__ = [
    "HANDLER",
    "MAX_JOB_BYTES",
    "AllowlistJob",
    "PcqSimpleWorker",
    "PcqWorker",
    "RefusedJob",
    "check",
    "handle",
]

#: The only function an RQ job may name.
HANDLER = "consumer.rq_jobs.handle"
#: Outer cap on a job's serialized data, checked before parsing it (the item itself
#: is held to PCQ_MAX_PAYLOAD_BYTES by the handler).
MAX_JOB_BYTES = 256 * 1024
#: Ledger keys live this long (seconds) after the last item of a run.
LEDGER_TTL = 7 * 24 * 3600
#: RQ's hard-coded slack added to every heartbeat TTL (see module docstring).
RQ_HEARTBEAT_GRACE = 60


class RefusedJob(Exception):
    """A job that does not match what pcq enqueues; it is failed, never run."""


class AllowlistJob(Job):
    """An RQ job that refuses to run anything but :data:`HANDLER`."""

    refusal: str | None = None

    def restore(self, raw_data: Any) -> Any:
        """Load the job from Redis, then refuse it if it is not one of ours."""
        result = super().restore(raw_data)
        self.refusal = self._check()
        if self.refusal is not None:
            # Make sure nothing named by the job is imported later (failure
            # callbacks run on failure, webhooks fire on terminal states) and
            # that a refusal is final rather than retried.
            self._success_callback_name = None
            self._failure_callback_name = None
            self._stopped_callback_name = None
            self.webhooks = []
            self.retries_left = None
            self.repeats_left = None
        return result

    def _check(self) -> str | None:
        raw = self._data
        if isinstance(raw, (bytes, bytearray)) and len(raw) > MAX_JOB_BYTES:
            self._blank()
            return f"job data is {len(raw)} bytes, over the {MAX_JOB_BYTES}-byte cap"
        try:
            func_name = self.func_name
        except DeserializationError:  # RQ wraps any serializer failure in it
            self._blank()
            return "job data is not JSON (only the JSON serializer is accepted)"
        if func_name != HANDLER:
            return f"job names {func_name!r}; only {HANDLER!r} may run"
        if self.instance is not None:
            return "job names a method on an instance; only a plain function may run"
        if (
            self._success_callback_name
            or self._failure_callback_name
            or self._stopped_callback_name
        ):
            return "job carries callbacks; pcq jobs have none"
        if self.webhooks or self.repeats_left:
            return "job carries webhooks or repeats; pcq jobs have none"
        return None

    def _blank(self) -> None:
        # Keep the worker's own logging (which reads func_name/args) from
        # tripping over data we refuse to parse.
        self._func_name, self._instance, self._args, self._kwargs = "<refused>", None, (), {}

    @property
    def func(self) -> Any:
        """The callable to run; raises :class:`RefusedJob` for a refused job."""
        if self.refusal is None and self.func_name == HANDLER:
            return handle
        raise RefusedJob(self.refusal or f"job names {self.func_name!r}; only {HANDLER!r} may run")


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
            kwargs["name"] = f"{socket.gethostname()}.{os.getpid()}"
        return kwargs

    def get_heartbeat_ttl(self, job: Job) -> int:
        """RQ's TTL with its hard-coded 60 s slack replaced by ``PCQ_RQ_HEARTBEAT_GRACE``."""
        ttl: int = super().get_heartbeat_ttl(job)  # type: ignore[misc]
        return max(1, ttl - RQ_HEARTBEAT_GRACE + _heartbeat_grace())


class PcqWorker(_PcqWorkerMixin, Worker):
    """Stock forking :class:`rq.Worker` with pcq's job class, JSON and naming."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._pcq_init(kwargs))


class PcqSimpleWorker(_PcqWorkerMixin, SimpleWorker):
    """Same as :class:`PcqWorker` but runs jobs in-process (no fork per job)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **self._pcq_init(kwargs))


@functools.lru_cache(maxsize=1)
def _settings() -> RedisSettings:
    # The job is this process's entry point: read the environment once.
    return RedisSettings.from_env()


def _min_delay() -> float:
    try:
        return max(0.0, float(os.environ.get("PCQ_MIN_DELAY", "0") or 0))
    except ValueError:
        return 0.0


def handle(payload: str) -> None:
    """Handle one item: print ``[host] PID got NAME`` and record it in the run's ledger.

    Args:
        payload: The item as the list mode puts it on the wire: one schema-v1
            JSON object (:mod:`core.payload`), here as a JSON string argument.

    Raises:
        BadPayload: The payload is not a v1 item. Retrying cannot fix that, so
            the job is failed at once (its retries are dropped).
    """
    job = get_current_job()
    if job is None:
        raise RuntimeError(f"{HANDLER} must run inside an RQ worker")
    settings = _settings()
    try:
        if not isinstance(payload, str):
            raise BadPayload(
                f"wrong schema: expected the payload as a string, got {type(payload).__name__}"
            )
        try:
            raw = payload.encode("utf-8")
        except UnicodeEncodeError as exc:  # a lone surrogate ("\udcff"): retrying cannot help
            raise BadPayload(f"invalid UTF-8: lone surrogate at {exc.start}") from None
        item = decode(raw, settings.max_payload_bytes)
    except BadPayload:
        job.retries_left = None  # read by the worker's failure handling, in this process
        raise
    # Same order as core.pattern.consume: announce the item, then work on it.
    Console(host=socket.gethostname(), quiet=_quiet()).got(item.body)
    noop(item)  # the demo's rule, as in `pcq consume`: a "poison..." body always raises
    low, high = _min_delay(), settings.max_delay
    if high > 0 or low > 0:
        time.sleep(random.uniform(low, max(low, high)))  # the seed's "work"
    _record(job.connection, Keys(job.origin), run_of(item.id), item.id, job.worker_name or "?")


def _quiet() -> bool:
    return os.environ.get("PCQ_QUIET", "") not in ("", "0")


def _record(conn: Redis, keys: Keys, run: str, item_id: str, worker: str) -> None:
    # One MULTI: the item is either fully in the ledger or not at all.
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.rq_handled(run), item_id)
        pipe.incr(keys.rq_done(run))
        pipe.hincrby(keys.rq_by(run), worker, 1)
        for key in (keys.rq_handled(run), keys.rq_done(run), keys.rq_by(run)):
            pipe.expire(key, LEDGER_TTL)
        pipe.execute()


def check(url: str | None = None, host: str | None = None) -> int:
    """Health check: 0 if an RQ worker of this host (container) is registered in Redis.

    A worker's registration expires ``--worker-ttl`` + 60 s after its last
    heartbeat, so a hung or dead worker turns the container unhealthy.
    """
    url = url or os.environ.get("RQ_REDIS_URL") or os.environ.get("REDIS_URL") or ""
    prefix = f"{host or socket.gethostname()}."
    try:
        with Redis.from_url(url or "redis://localhost:6379/0", socket_timeout=5) as conn:
            names = [w.name for w in Worker.all(connection=conn)]
    except (RedisError, ValueError) as exc:  # unreachable, bad URL: "unhealthy", one line
        print(f"unhealthy: {type(exc).__name__}: {exc}")
        return 1
    mine = [name for name in names if name.startswith(prefix)]
    print(f"healthy: {', '.join(mine)}" if mine else f"unhealthy: no worker named {prefix}*")
    return 0 if mine else 1


if __name__ == "__main__":  # python -m consumer.rq_jobs --check
    import sys

    if sys.argv[1:] != ["--check"]:
        print("usage: python -m consumer.rq_jobs --check", file=sys.stderr)
        sys.exit(2)
    sys.exit(check())
