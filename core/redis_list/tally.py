"""A run's tally, read back from Redis (what ``pcq produce`` prints), and its retirement.

A run's tally counts that run's items only (ids ``<run>:<n>``), so several
producers and repeated runs on one queue never mix:

* ``produced``     -- items the run pushed (``run:<run>`` hash);
* ``consumed``     -- distinct ids acknowledged (bits set in the run's acked bitmap
  plus members of its acked set);
* ``dead_letters`` -- distinct ids dead-lettered and never acknowledged;
* ``lost``         -- ``produced - consumed - dead_letters`` (0 when all is well;
  while items are still queued or in flight they count here too, so the
  producer waits for ``lost == 0`` before printing, up to its timeout);
* ``duplicates``   -- acknowledgements of an id already acknowledged;
* ``redelivered``  -- items put back for another delivery (handler failure or
  dead consumer);
* ``requeued``     -- dead letters an operator put back (``pcq dead requeue``):
  each left the run's dead set, so it counts as in flight (``lost``) until a
  consumer acknowledges it, then as consumed, once;
* ``per_consumer`` -- acknowledgements per consumer id.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import redis

from pcq.core.redis_common.connection import text
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_list.scripts import Scripts

__all__ = ["read_tally", "retire_run", "wait_for_tally"]


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def retire_run(client: redis.Redis, keys: Keys, run: str, ttl: int) -> None:
    """Let a finished run's keys expire in ``ttl`` seconds; forget runs older than that.

    A run's acked bitmap holds one bit per item, and its sets an id each (a
    million-item run: 125 kB and more), so once its producer has read the final
    tally the run's hash, bitmap and sets get a TTL, and the ``runs`` index
    drops runs that started more than ``ttl`` ago.
    A run whose producer died before that keeps its keys (nobody read its
    tally yet); ``ttl`` 0 keeps everything.
    """
    if ttl <= 0:
        return
    # Not MULTI: Redis refuses anything queued in a MULTI while it is at maxmemory,
    # and these two commands may run there (they free memory); each is idempotent.
    with client.pipeline(transaction=False) as pipe:
        for key in (keys.run(run), keys.acked_bits(run), keys.acked(run), keys.run_dead(run),
                    keys.by_consumer(run)):
            pipe.expire(key, ttl)
        pipe.zremrangebyscore(keys.runs, "-inf", time.time() - ttl)
        pipe.execute()


def read_tally(client: redis.Redis, keys: Keys, run: str) -> dict[str, Any]:
    """Return the run's counts (``seconds``/``items_per_second`` left to the caller)."""
    # tally.lua: one atomic read that also runs on a full Redis (no-writes script).
    flat, consumed, dead, both, by_flat = Scripts(client).tally(
        [keys.run(run), keys.acked(run), keys.run_dead(run), keys.by_consumer(run),
         keys.acked_bits(run)]
    )
    info = {text(k): text(v) for k, v in zip(flat[::2], flat[1::2])}
    by = dict(zip(by_flat[::2], by_flat[1::2]))
    produced = _int(info.get("produced"))
    dead_letters = int(dead) - int(both)
    return {
        "run": run,
        "queue": keys.queue_name,
        "produced": produced,
        "consumed": int(consumed),
        "lost": produced - int(consumed) - dead_letters,
        "duplicates": _int(info.get("duplicates")),
        "redelivered": _int(info.get("redelivered")),
        "requeued": _int(info.get("requeued")),
        "dead_letters": dead_letters,
        "per_consumer": {text(c): int(n) for c, n in sorted(by.items())},
        "closed": "closed_at" in info,
    }


def wait_for_tally(
    read: Callable[[], dict[str, Any]],
    *,
    timeout: float | None,
    stop: Callable[[], bool] = lambda: False,
    wait: Callable[[float], object] = time.sleep,
    poll: float = 0.1,
) -> dict[str, Any]:
    """Poll ``read()`` until every produced item is accounted for.

    Returns the last tally, with ``complete`` telling whether it settled
    (``False`` after ``timeout`` seconds or when ``stop()`` turned true).
    The first waits are short (``poll`` / 8, doubling up to ``poll``): a run
    usually settles within tens of milliseconds of its last push, and a
    fixed 0.1 s step made ``pcq produce`` return up to 0.1 s after that.
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    step = poll / 8
    while True:
        tally = read()
        done = tally["closed"] and tally["lost"] <= 0
        if done or stop() or (deadline is not None and time.monotonic() >= deadline):
            tally["complete"] = bool(done)
            return tally
        wait(step)
        step = min(poll, step * 2)
