"""A Redis list queue's state right now, read-only: what ``pcq status`` and ``pcq watch`` show.

* :func:`queue_status` -- one pipeline: queue length, dead letters, open
  streams, queue-wide counters, and per registered consumer its processing
  list and heartbeat. Lengths are in items: an envelope (one list element)
  carries a batch, so the queue holds ``LLEN`` plus ``queue_extra`` items and a
  processing list the sum of its envelopes' headers. A heartbeat carries the consumer's
  acknowledgement count now and ~10 s earlier
  (:meth:`pcq.core.redis_list.consumer.ListConsumer.beat`), so the rate is read
  at once; the key expiring means the consumer is dead.
* :func:`acked_total` -- items acknowledged, summed over the acked bitmaps and
  sets of the queue's newest runs: ``pcq watch`` samples it into a
  :class:`~pcq.core.redis_list.rates.RateWindow`, so consumers that died
  meanwhile still count.
"""

from __future__ import annotations

import json
import time
from typing import Any

import redis

from pcq.core.redis_common.connection import connect, text
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.envelope import size

__all__ = ["RECENT_RUNS", "acked_total", "queue_status"]

RECENT_RUNS = 50


def acked_total(client: redis.Redis, keys: Keys, recent: int = RECENT_RUNS) -> int:
    """Distinct items acknowledged over the ``recent`` newest runs of the queue.

    Summed from the runs' acked bitmaps and sets (``run:<run>:bits``, ``:acked``;
    :mod:`pcq.core.redis_list.acked`): the only per-queue acknowledgement count
    the claim script maintains.
    """
    runs = client.zrevrange(keys.runs, 0, recent - 1)
    if not runs:
        return 0
    with client.pipeline(transaction=False) as pipe:
        for run in runs:
            pipe.bitcount(keys.acked_bits(text(run)))
            pipe.scard(keys.acked(text(run)))
        return sum(int(n) for n in pipe.execute())


def _beat_view(beat: bytes | None, now: float) -> dict[str, Any]:
    """Heartbeat age, and acknowledgements with their rate over the beat's last <= 10 s.

    The heartbeat value is JSON ``{host, pid, ttl, at, acked, since}``.
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
        members = sorted(text(c) for c in conn.smembers(keys.consumers))
        with conn.pipeline(transaction=False) as pipe:
            pipe.llen(keys.queue)
            pipe.get(keys.queue_extra)
            pipe.llen(keys.dead)
            pipe.scard(keys.open)
            pipe.hgetall(keys.stats)
            for c in members:
                pipe.lrange(keys.processing(c), 0, -1)
                pipe.get(keys.heartbeat(c))
            replies = pipe.execute()
    finally:
        if own:
            conn.close()
    elements, extra, dead, open_runs, stats = replies[:5]
    # In items: an envelope holds one or more (pcq.core.redis_list.envelope).
    length = int(elements) + max(0, int(extra or 0)) if elements else 0
    now = time.time()
    consumers, spans = [], []
    for i, c in enumerate(members):
        held, beat = sum(size(e) for e in replies[5 + 2 * i]), replies[6 + 2 * i]
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
        "stats": {text(k): int(v) for k, v in stats.items()},
    }
