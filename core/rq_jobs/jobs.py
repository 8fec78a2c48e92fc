"""RQ mode, consumer side: the one job function stock ``rq worker``\\ s may run.

``pcq produce --via rq`` enqueues one RQ job per item, always calling
:func:`handle` (``pcq.core.rq_jobs.jobs.handle``) with JSON arguments. Consumers are
stock RQ workers started with::

    rq worker --serializer json \\
        --job-class pcq.core.rq_jobs.jobs.AllowlistJob \\
        --worker-class pcq.core.rq_jobs.workers.PcqWorker  pcq-rq

so ``rq info``, ``rq requeue`` and the registries keep working on our queue
(:mod:`pcq.core.rq_jobs.workers` has the worker class and the health check).

Job paths are stored in queued jobs: jobs enqueued before pcq moved under the
``pcq`` namespace name ``consumer.rq_jobs.handle``. That path is accepted as an
alias of :data:`HANDLER` (:data:`LEGACY_HANDLERS`), so a queue filled by an
older producer still drains; nothing else is.

Why a job class of our own:

* :class:`AllowlistJob` -- an RQ job names the function to import and call by
  its dotted path, and anyone who can write to Redis can enqueue
  ``os.system``. Our jobs are only ever :data:`HANDLER`; a job naming anything
  else (or carrying callbacks, webhooks, repeats, an instance, non-JSON data or
  more than :data:`MAX_JOB_BYTES`) is *refused*: it goes to the failed registry
  with :class:`RefusedJob` and nothing it names is ever imported.

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
from rq import get_current_job
from rq.exceptions import DeserializationError
from rq.job import Job

from pcq.core.console import Console
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import BadPayload, decode, run_of
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.work import noop

__all__ = ["HANDLER", "LEGACY_HANDLERS", "MAX_JOB_BYTES", "AllowlistJob", "RefusedJob", "handle"]

#: The only function an RQ job may name.
HANDLER = "pcq.core.rq_jobs.jobs.handle"
#: Where HANDLER lived before the ``pcq`` namespace: still run, as HANDLER.
LEGACY_HANDLERS = frozenset({"consumer.rq_jobs.handle"})
_RUNNABLE = frozenset({HANDLER}) | LEGACY_HANDLERS
#: Outer cap on a job's serialized data, checked before parsing it (the item itself
#: is held to PCQ_MAX_PAYLOAD_BYTES by the handler).
MAX_JOB_BYTES = 256 * 1024
#: A run's handled-set keys (``P:rq:<run>:*``) live this long (seconds) after its last item.
HANDLED_TTL = 7 * 24 * 3600


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
        if func_name not in _RUNNABLE:
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
        if self.refusal is None and self.func_name in _RUNNABLE:
            return handle
        raise RefusedJob(self.refusal or f"job names {self.func_name!r}; only {HANDLER!r} may run")


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
    """Handle one item: print ``[host] PID got NAME`` and record it in the run's handled set.

    Args:
        payload: The item as the list mode puts it on the wire: one schema-v1
            JSON object (:mod:`pcq.core.redis_common.payload`), here as a JSON string argument.

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
    # Same order as pcq.core.pattern.consume: announce the item, then work on it.
    Console(host=socket.gethostname(), quiet=_quiet()).got(item.body)
    noop(item)  # the demo's rule, as in `pcq consume`: a "poison..." body always raises
    low, high = _min_delay(), settings.max_delay
    if high > 0 or low > 0:
        time.sleep(random.uniform(low, max(low, high)))  # the seed's "work"
    _record(job.connection, Keys(job.origin), run_of(item.id), item.id, job.worker_name or "?")


def _quiet() -> bool:
    return os.environ.get("PCQ_QUIET", "") not in ("", "0")


def _record(conn: Redis, keys: Keys, run: str, item_id: str, worker: str) -> None:
    # One MULTI: the item is either fully recorded (handled set, counts) or not at all.
    with conn.pipeline(transaction=True) as pipe:
        pipe.sadd(keys.rq_handled(run), item_id)
        pipe.incr(keys.rq_done(run))
        pipe.hincrby(keys.rq_by(run), worker, 1)
        for key in (keys.rq_handled(run), keys.rq_done(run), keys.rq_by(run)):
            pipe.expire(key, HANDLED_TTL)
        pipe.execute()
