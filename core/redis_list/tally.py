"""Reading results back from Redis: a run's tally and a queue's status.

A run's tally counts that run's items only (ids ``<run>:<n>``), so several
producers and repeated runs on one queue never mix:

* ``produced``     -- items the run pushed (``run:<run>`` hash);
* ``consumed``     -- distinct ids acknowledged (``SCARD`` of the ledger set);
* ``dead_letters`` -- distinct ids dead-lettered and never acknowledged;
* ``lost``         -- ``produced - consumed - dead_letters`` (0 when all is well;
  while items are still queued or in flight they count here too, so the
  producer waits for ``lost == 0`` before printing, up to its timeout);
* ``duplicates``   -- acknowledgements of an id already in the ledger;
* ``redelivered``  -- items put back for another delivery (handler failure or
  dead consumer);
* ``per_consumer`` -- acknowledgements per consumer id.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

import redis

from pcq.core.redis_common.connection import connect
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings

__all__ = ["TALLY_KEYS", "queue_status", "read_tally", "retire_run", "wait_for_tally"]

TALLY_KEYS = (
    "produced", "consumed", "lost", "duplicates", "redelivered", "dead_letters",
    "per_consumer", "seconds", "items_per_second",
)


def _int(value: Any) -> int:
    return int(value) if value is not None else 0


def _text(value: Any) -> str:
    return value.decode("utf-8", "replace") if isinstance(value, bytes) else str(value)


def retire_run(client: redis.Redis, keys: Keys, run: str, ttl: int) -> None:
    """Let a finished run's keys expire in ``ttl`` seconds; forget runs older than that.

    A run's ledger holds one id per item (a million-item run: tens of MB), so
    once its producer has read the final tally the run's hash and sets get a
    TTL, and the ``runs`` index drops runs that started more than ``ttl`` ago.
    A run whose producer died before that keeps its keys (nobody read its
    tally yet); ``ttl`` 0 keeps everything.
    """
    if ttl <= 0:
        return
    with client.pipeline(transaction=True) as pipe:
        for key in (keys.run(run), keys.acked(run), keys.run_dead(run), keys.by_consumer(run)):
            pipe.expire(key, ttl)
        pipe.zremrangebyscore(keys.runs, "-inf", time.time() - ttl)
        pipe.execute()


def read_tally(client: redis.Redis, keys: Keys, run: str) -> dict[str, Any]:
    """Return the run's counts (``seconds``/``items_per_second`` left to the caller)."""
    with client.pipeline(transaction=True) as pipe:
        pipe.hgetall(keys.run(run))
        pipe.scard(keys.acked(run))
        pipe.scard(keys.run_dead(run))
        pipe.sintercard(2, [keys.acked(run), keys.run_dead(run)])
        pipe.hgetall(keys.by_consumer(run))
        info, consumed, dead, both, by = pipe.execute()
    info = {_text(k): _text(v) for k, v in info.items()}
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
        "dead_letters": dead_letters,
        "per_consumer": {_text(c): int(n) for c, n in sorted(by.items())},
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
    """
    deadline = None if timeout is None else time.monotonic() + timeout
    while True:
        tally = read()
        done = tally["closed"] and tally["lost"] <= 0
        if done or stop() or (deadline is not None and time.monotonic() >= deadline):
            tally["complete"] = bool(done)
            return tally
        wait(poll)


def _beat_view(beat: bytes | None, now: float) -> dict[str, Any]:
    """Heartbeat age, and acknowledgements with their rate over the beat's last <= 10 s.

    The heartbeat value is JSON ``{host, pid, ttl, at, acked, since}``
    (:meth:`pcq.core.redis_list.consumer.RedisQueue.beat`); the key expiring means dead.
    """
    view: dict[str, Any] = {"heartbeat_age": None, "acked": None, "rate": None, "span": None}
    if beat is None:
        return view
    try:
        info = json.loads(beat)
        at = float(info["at"])
        view["heartbeat_age"] = round(max(0.0, now - at), 3)
        view["acked"] = int(info["acked"])
        since_at, since_acked = float(info["since"][0]), int(info["since"][1])
    except (ValueError, KeyError, TypeError, IndexError):
        return view  # an older consumer's beat: age only
    if at > since_at:
        view["rate"] = round(max(0, view["acked"] - since_acked) / (at - since_at), 1)
        view["span"] = round(at - since_at, 1)
    return view


def queue_status(settings: RedisSettings, client: redis.Redis | None = None) -> dict[str, Any]:
    """One-shot view of a queue, for ``pcq status``.

    Returns:
        ``{"queue", "length", "dead_letters", "in_flight", "open_runs",
        "consumers": [{"id", "alive", "heartbeat_age", "in_flight", "acked", "rate"}],
        "items_per_second", "rate_span", "stats"}``; ``heartbeat_age`` is seconds
        since the last beat (``None`` once expired); ``acked`` counts the
        consumer's acknowledgements since it started and ``rate`` is its items/s
        over the last 10 s (up to its last beat). ``items_per_second`` sums the
        live consumers' rates (``None`` when none reports one) and
        ``rate_span`` is the longest span behind them, in seconds.
    """
    own = client is None
    conn = connect(settings) if client is None else client
    keys = Keys(settings.queue)
    try:
        members = sorted(_text(c) for c in conn.smembers(keys.consumers))
        with conn.pipeline(transaction=False) as pipe:
            pipe.llen(keys.queue)
            pipe.llen(keys.dead)
            pipe.scard(keys.open)
            pipe.hgetall(keys.stats)
            for c in members:
                pipe.llen(keys.processing(c))
                pipe.get(keys.heartbeat(c))
            replies = pipe.execute()
    finally:
        if own:
            conn.close()
    length, dead, open_runs, stats = replies[:4]
    now = time.time()
    consumers, spans = [], []
    for i, c in enumerate(members):
        held, beat = int(replies[4 + 2 * i]), replies[5 + 2 * i]
        view = _beat_view(beat, now)
        span = view.pop("span")
        if span is not None:
            spans.append(span)
        consumers.append({"id": c, "alive": beat is not None, "in_flight": held, **view})
    rates = [c["rate"] for c in consumers if c["rate"] is not None]
    return {
        "queue": settings.queue,
        "length": int(length),
        "dead_letters": int(dead),
        "in_flight": sum(c["in_flight"] for c in consumers),
        "open_runs": int(open_runs),
        "consumers": consumers,
        "items_per_second": round(sum(rates), 1) if rates else None,
        "rate_span": max(spans) if spans else None,
        "stats": {_text(k): int(v) for k, v in stats.items()},
    }
