"""The monitoring view: one snapshot of a queue, computed from Redis in one place.

``pcq status``, ``pcq watch`` and ``pcq dashboard`` all call :func:`read_view`
and only render what it returns. The view is a plain JSON-ready dict:

* the list queue (:func:`pcq.core.redis_list.status.queue_status`): ``queue``,
  ``length``, ``in_flight``, ``dead_letters``, ``open_runs``, ``stats``,
  ``items_per_second`` / ``rate_span`` (the live consumers' own 10 s rates);
* ``consumers``: every registered consumer with ``id``, ``host``, ``pid``,
  ``state`` (``alive``, or ``dead`` once its heartbeat expired while it is still
  registered -- it may still hold a processing list until a reaper requeues it),
  ``alive``, ``heartbeat_age``, ``in_flight``, ``acked``, ``rate``;
  ``consumers_alive`` counts the live ones;
* ``acked_total``: items acknowledged over the queue's newest runs (the handled count);
* ``runs``: the newest runs with their tallies (:func:`pcq.core.redis_list.tally.read_tally`);
* ``recent_dead_letters``: the newest dead letters with their reasons (no payloads);
* ``rq``: the RQ queue and its registries (:func:`pcq.core.rq_jobs.status.rq_status`).

What the connecting ACL user may not read (NOPERM) is ``None``, and its name
is listed in ``unavailable``: a role-limited user still sees what it may.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any, TypeVar

import redis
from redis.exceptions import NoPermissionError

from pcq.core.redis_common.connection import text
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.status import acked_total, queue_status
from pcq.core.redis_list.tally import read_tally
from pcq.core.rq_jobs.status import rq_status

__all__ = ["DEAD_SHOWN", "RUNS_SHOWN", "dead_letter_list", "read_view", "recent_runs"]

RUNS_SHOWN = 5  # newest runs with their tallies
DEAD_SHOWN = 20  # newest dead letters
REASON_CHARS = 300  # a reason is shown, not stored: cut very long ones
T = TypeVar("T")


def recent_runs(client: redis.Redis, keys: Keys, count: int = RUNS_SHOWN) -> list[dict[str, Any]]:
    """The ``count`` newest runs of the queue, newest first, each with its tally and start time."""
    shown = []
    runs: list[Any] = client.zrevrange(keys.runs, 0, count - 1, withscores=True)
    for run, started in runs:
        tally = read_tally(client, keys, text(run))
        tally["started_at"] = round(float(started), 3)
        tally.pop("queue", None)
        shown.append(tally)
    return shown


def dead_letter_list(client: redis.Redis, keys: Keys, count: int = DEAD_SHOWN) -> list[dict[str, Any]]:
    """The ``count`` newest dead letters, newest first: id, run, reason, consumer, at, deliveries.

    The payload stays in Redis (it may be large, and a body is not the operator's
    first question: the reason is).
    """
    shown = []
    for raw in reversed(client.lrange(keys.dead, -count, -1)):
        try:
            record = json.loads(raw)
        except ValueError:
            shown.append({"id": None, "reason": "unreadable dead-letter record"})
            continue
        if not isinstance(record, dict):
            record = {}
        shown.append({
            "id": record.get("id"), "run": record.get("run"),
            "reason": str(record.get("reason", ""))[:REASON_CHARS],
            "consumer": record.get("consumer"), "at": record.get("at"),
            "deliveries": record.get("deliveries"),
        })  # fmt: skip
    return shown


def _readable(read: Callable[[], T], name: str, unavailable: list[str]) -> T | None:
    """``read()``, or ``None`` (and ``name`` noted) when the ACL user may not read it."""
    try:
        return read()
    except NoPermissionError:
        unavailable.append(name)
        return None


def _with_states(consumers: list[dict[str, Any]]) -> list[dict[str, Any]]:
    for c in consumers:
        host, _, pid = c["id"].rpartition(":")
        c["host"], c["pid"] = (host, int(pid)) if pid.isdigit() else (c["id"], None)
        c["state"] = "alive" if c["alive"] else "dead"
    return consumers


def read_view(
    client: redis.Redis,
    settings: RedisSettings,
    rq_queue: str,
    *,
    runs: int = RUNS_SHOWN,
    dead: int = DEAD_SHOWN,
) -> dict[str, Any]:
    """One snapshot of the list queue ``settings.queue`` and the RQ queue ``rq_queue``.

    ``runs`` / ``dead``: how many of the newest runs and dead letters to read
    (0: none, and the key is ``None``). Raises redis-py's errors other than NOPERM.
    """
    keys = Keys(settings.queue)
    unavailable: list[str] = []
    view = queue_status(settings, client)
    view["at"] = round(time.time(), 3)
    view["consumers"] = _with_states(view["consumers"])
    view["consumers_alive"] = sum(1 for c in view["consumers"] if c["alive"])
    view["acked_total"] = _readable(lambda: acked_total(client, keys), "acked_total", unavailable)
    view["runs"] = (
        _readable(lambda: recent_runs(client, keys, runs), "runs", unavailable) if runs else None
    )
    view["recent_dead_letters"] = (
        _readable(lambda: dead_letter_list(client, keys, dead), "recent_dead_letters", unavailable)
        if dead else None
    )  # fmt: skip
    view["rq"] = _readable(lambda: rq_status(client, rq_queue), "rq", unavailable)
    view["unavailable"] = unavailable
    return view
