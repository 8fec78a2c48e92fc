"""RQ mode, producer side: ``pcq produce --via rq``.

Each item becomes one RQ job calling :data:`pcq.core.rq_jobs.jobs.HANDLER` with one
argument: the item's schema-v1 JSON payload (:mod:`pcq.core.redis_common.payload`, the very
bytes the list mode pushes), serialized by RQ's JSON serializer -- never
pickle. Jobs carry ``Retry(max=max_deliveries - 1)``, so a job whose handler
raised, or whose worker died, runs again. Job ids are ``pcq-<run>-<n>``, easy to
spot in ``rq info`` or rq-dashboard, and the tally reads exactly its own jobs.

The RQ queue has the same name as the list queue (``--queue``/``PCQ_QUEUE``);
RQ's keys (``rq:...``) and the list's (``pcq:{queue}:...``) never collide.

The tally comes from two sources, once every job is handled or failed (or the
wait times out):

* RQ's registries (``rq:finished:<queue>``, ``rq:failed:<queue>``) and job
  hashes (``retries_left``): finished; failed for good = dead letters, with the
  last line of the job's traceback as the reason; retries used = redelivered;
* the handler's records (``P:rq:<run>:*`` in :mod:`pcq.core.redis_common.keys`): consumed = item
  ids handled at least once, duplicates, per consumer (RQ worker name).

An item is *lost* if it is neither in the run's handled set nor in the failed registry
(while the producer waits, items still queued or running count there too).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from redis import Redis
from rq import Queue, Retry
from rq.job import Job
from rq.registry import FailedJobRegistry, FinishedJobRegistry
from rq.serializers import JSONSerializer

from pcq.core.console import Console
from pcq.core.redis_common.connection import Retrier, connect, stderr_log, text
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import encode, new_run_id, refused_as_usage
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.rq_jobs.jobs import HANDLER, AllowlistJob
from pcq.core.transport import Item

__all__ = [
    "RqOptions",
    "enqueue",
    "job_id",
    "job_ids",
    "open_queue",
    "produce_rq",
    "read_tally",
    "run_rq_producer",
    "wait",
]

_CHUNK = 500  # jobs per pipeline round trip (enqueue and tally reads)


@dataclass(frozen=True, slots=True)
class RqOptions:
    """RQ-specific knobs of ``pcq produce --via rq`` (the rest is in RedisSettings).

    Attributes:
        job_timeout: RQ job timeout (seconds); also caps RQ's heartbeat TTL.
        result_ttl: How long RQ keeps finished jobs (the tally reads them).
        wait_timeout: Give up waiting for the tally after this many seconds
            (``None``: wait for ever; ``0``: enqueue only, no tally).
        poll: Seconds between progress checks while waiting.
    """

    job_timeout: int = 180
    result_ttl: int = 3600
    wait_timeout: float | None = None
    poll: float = 0.2


def _never() -> bool:
    return False


def open_queue(conn: Redis, name: str) -> Queue:
    """Return the RQ queue pcq uses: JSON serializer, allow-listing job class."""
    return Queue(name, connection=conn, serializer=JSONSerializer, job_class=AllowlistJob)


def job_id(run: str, n: int) -> str:
    """Return the RQ job id of item number ``n`` of ``run``."""
    return f"pcq-{run}-{n}"


def job_ids(run: str, count: int, start: int = 0) -> list[str]:
    """Return the RQ job ids of a run's items ``start`` .. ``start + count - 1``."""
    return [job_id(run, n) for n in range(start, start + count)]


def enqueue(
    queue: Queue,
    settings: RedisSettings,
    run: str,
    items: Iterable[Item],
    opts: RqOptions,
    *,
    retrier: Retrier | None = None,
    stop: Callable[[], bool] = _never,
) -> list[Item]:
    """Enqueue one job per item, in pipelined chunks; return the items enqueued.

    Raises:
        pcq.core.redis_common.payload.BadPayload: an item id is not ``<run>:<n>`` or an item is
            over the size cap (refused here rather than failed by a worker).
    """
    retrier = retrier or Retrier(settings)
    retry = Retry(max=settings.max_deliveries - 1) if settings.max_deliveries > 1 else None
    done: list[Item] = []
    chunk: list[Item] = []

    def flush() -> None:
        ids = job_ids(run, len(chunk), len(done))
        datas = [
            Queue.prepare_data(
                HANDLER,
                args=[encode(item, run, settings.max_payload_bytes).decode("utf-8")],
                job_id=jid,
                retry=retry,
                timeout=opts.job_timeout,
                result_ttl=opts.result_ttl,
                description=f"pcq {item.id}: {item.body[:60]}",
            )
            for jid, item in zip(ids, chunk)
        ]
        _wait_below(queue, settings, opts, retrier, stop)
        retrier.call(_enqueue_once, queue, datas, ids[0])
        done.extend(chunk)
        chunk.clear()

    for item in items:
        if stop():
            break
        chunk.append(item)
        if len(chunk) >= _CHUNK:
            flush()
    if chunk and not stop():
        flush()
    return done


def _enqueue_once(queue: Queue, datas: list[Any], first_id: str) -> None:
    # The chunk goes in one MULTI/EXEC: all or nothing. If a reply was lost and
    # this is a retry, the first job existing means the chunk is already in.
    if queue.connection.exists(AllowlistJob.key_for(first_id)):
        return
    with queue.connection.pipeline() as pipe:
        queue.enqueue_many(datas, pipeline=pipe)
        pipe.execute()


def _wait_below(
    queue: Queue,
    settings: RedisSettings,
    opts: RqOptions,
    retrier: Retrier,
    stop: Callable[[], bool],
) -> None:
    # Backpressure: RQ has none of its own; one LLEN per chunk is cheap.
    if settings.high_water <= 0:
        return
    while not stop() and retrier.call(queue.connection.llen, queue.key) > settings.high_water:
        time.sleep(opts.poll)


def _unsettled(
    conn: Redis, queue: Queue, run: str, items: Sequence[Item], pending: Sequence[int]
) -> list[int]:
    """Return the indices in ``pending`` of items neither handled (handled set) nor failed for good."""
    handled_key = Keys(queue.name).rq_handled(run)
    failed_key = FailedJobRegistry(queue.name, connection=conn).key
    left: list[int] = []
    for start in range(0, len(pending), _CHUNK):
        part = pending[start : start + _CHUNK]
        handled = conn.smismember(handled_key, [items[i].id for i in part])
        # ZMSCORE, not registry.count(): reading must not run RQ's cleanup.
        failed = conn.zmscore(failed_key, [job_id(run, i) for i in part])
        left.extend(i for i, h, f in zip(part, handled, failed) if not h and f is None)
    return left


def wait(
    conn: Redis,
    queue: Queue,
    run: str,
    items: Sequence[Item],
    opts: RqOptions,
    *,
    retrier: Retrier,
    stop: Callable[[], bool] = _never,
) -> bool:
    """Wait until every item is handled or failed for good; False on timeout or stop.

    Each poll only looks at the items still outstanding, so a long run costs
    less and less to watch as it drains.
    """
    deadline = None if opts.wait_timeout is None else time.monotonic() + opts.wait_timeout
    pending: list[int] = list(range(len(items)))
    while True:
        pending = retrier.call(_unsettled, conn, queue, run, items, pending)
        if not pending:
            return True
        if stop() or (deadline is not None and time.monotonic() >= deadline):
            return False
        time.sleep(opts.poll)


def _failure_reason(job: Job | None) -> str:
    """The last line of the job's latest traceback (RQ keeps it in a result stream)."""
    if job is None:
        return "failed (job data expired)"
    result = job.latest_result()
    text = (result.exc_string if result is not None else None) or ""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return lines[-1][:200] if lines else "failed (no exception recorded)"


def read_tally(
    conn: Redis, queue: Queue, run: str, items: Sequence[Item], retries: int
) -> dict[str, Any]:
    """Read a run's tally from RQ's registries and job hashes plus the handler's records.

    ``retries`` is the ``Retry(max=...)`` the jobs were enqueued with.
    ``seconds``/``items_per_second`` are left to the caller.
    """
    keys = Keys(queue.name)
    finished_key = FinishedJobRegistry(queue.name, connection=conn).key
    failed_key = FailedJobRegistry(queue.name, connection=conn).key
    consumed = finished = lost = redelivered = 0
    dead: dict[str, str] = {}
    for start in range(0, len(items), _CHUNK):
        part = items[start : start + _CHUNK]
        ids = job_ids(run, len(part), start)
        handled = conn.smismember(keys.rq_handled(run), [item.id for item in part])
        in_finished = conn.zmscore(finished_key, ids)
        in_failed = conn.zmscore(failed_key, ids)
        jobs = AllowlistJob.fetch_many(ids, connection=conn, serializer=JSONSerializer)
        for item, h, fin, fail, job in zip(part, handled, in_finished, in_failed, jobs):
            consumed += bool(h)
            finished += fin is not None
            if fail is not None:
                dead[item.id] = _failure_reason(job)
            elif not h:
                lost += 1
            if job is not None and job.retries_left is not None:
                redelivered += max(0, retries - job.retries_left)
    completions = int(conn.get(keys.rq_done(run)) or 0)
    by = {text(k): int(v) for k, v in conn.hgetall(keys.rq_by(run)).items()}
    return {
        "run": run,
        "queue": queue.name,
        "via": "rq",
        "produced": len(items),
        "consumed": consumed,
        "lost": lost,
        "duplicates": max(0, completions - consumed),
        "redelivered": redelivered,
        "dead_letters": len(dead),
        "per_consumer": dict(sorted(by.items())),
        "rq": {"finished": finished, "failed": len(dead), "retried": redelivered},
        "dead_letter_reasons": dict(list(dead.items())[:20]),
    }


def produce_rq(
    conn: Redis,
    settings: RedisSettings,
    items: Iterable[Item],
    console: Console,
    run: str,
    opts: RqOptions | None = None,
    *,
    retrier: Retrier | None = None,
    stop: Callable[[], bool] = _never,
) -> dict[str, Any]:
    """Enqueue ``items`` of ``run`` as RQ jobs, wait for them, return the run's tally.

    The tally has the list mode's keys (``produced`` ... ``items_per_second``,
    ``complete``) plus ``via``, ``rq`` and ``dead_letter_reasons``. With
    ``opts.wait_timeout == 0`` it is read at once (``complete`` False unless
    every job already ran).
    """
    opts = opts or RqOptions()
    retrier = retrier or Retrier(settings)
    queue = open_queue(conn, settings.queue)
    console.starting_producer()
    started = time.monotonic()
    enqueued = enqueue(queue, settings, run, items, opts, retrier=retrier, stop=stop)
    console.producer_exiting()
    complete = wait(conn, queue, run, enqueued, opts, retrier=retrier, stop=stop)
    tally = retrier.call(read_tally, conn, queue, run, enqueued, settings.max_deliveries - 1)
    seconds = time.monotonic() - started
    tally.update(
        complete=complete,
        seconds=round(seconds, 3),
        items_per_second=round(tally["consumed"] / seconds, 1) if seconds > 0 else 0.0,
    )
    return tally


def run_rq_producer(
    settings: RedisSettings,
    texts: Iterable[str],
    console: Console,
    *,
    timeout: float | None = 600.0,
    stop: threading.Event | None = None,
    log: Callable[[str], None] = stderr_log,
) -> dict[str, Any]:
    """``pcq produce --via rq``: same arguments and tally as :func:`pcq.producer.run.run_producer`."""
    halt = stop or threading.Event()
    client = connect(settings)
    try:
        run = new_run_id()
        items = (Item(f"{run}:{n}", body, time.time()) for n, body in enumerate(texts))
        with refused_as_usage():
            return produce_rq(
                client,
                settings,
                items,
                console,
                run,
                RqOptions(wait_timeout=timeout),
                retrier=Retrier(settings, log),
                stop=halt.is_set,
            )
    finally:
        client.close()
