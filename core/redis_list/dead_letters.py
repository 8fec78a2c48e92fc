"""Dead letters, the operator's inbox (``P:dead``): read, select, requeue, purge, retain.

What is in the inbox and how it flows (keys in :mod:`pcq.core.redis_common.keys`)::

    consumer: dead.lua / reap.lua -- RPUSH a JSON record {reason, payload, consumer,
              at, id, run, deliveries} at the tail; the id joins run:<run>:dead
    retain.lua (every reaper pass, after each dead-letter, each `pcq dead`):
              trims the head beyond PCQ_DEAD_MAX records, then records older than
              PCQ_DEAD_MAX_AGE; counted in stats `dead_trimmed`
    pcq dead list/show       -- LRANGE, newest first (read here, never decoded by Lua)
    pcq dead requeue         -- requeue.lua: record out (LREM of its exact bytes), its
              payload RPUSHed to the queue, id out of run:<run>:dead; counted
              in the run's `requeued` and stats `requeued`
    pcq dead purge           -- purge.lua: records out; counted in stats `dead_purged`

The records themselves (:class:`DeadLetter`) and the selection of records
(:class:`Selection`) are in :mod:`pcq.core.redis_list.dead_records`.

A record has no id of its own: a dead letter is named by the first 12 hex digits
of the SHA-1 of its exact bytes (:attr:`DeadLetter.dlid`). That names every
record ever written, corrupt ones included, and a requeue or purge removes the
record by its exact bytes (``LREM``), so two operators racing on one record
cannot both act on it. A listing pages through the list (200 records per
``LRANGE``) and is not a snapshot: records written or trimmed meanwhile may be
missed, never acted on twice.

Requeue assumes the queue's element format of today: one JSON payload per list
element, exactly as the producer pushed it (the record keeps it byte for byte).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence

import redis

from pcq.core.errors import PcqError
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import BadPayload, decode
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.dead_records import DLID_LEN, HEX_RE, DeadLetter, Selection
from pcq.core.redis_list.scripts import Scripts

__all__ = ["DeadLetter", "Selection", "find", "newest", "purge", "requeue", "retain", "select"]

PAGE = 200  # records per LRANGE (a record may be up to ~90 KB)
AGE_LOOK = 100  # records retain.lua inspects for age per call


def newest(client: redis.Redis, keys: Keys, page: int = PAGE) -> Iterator[DeadLetter]:
    """Every record of the dead list, newest first, read ``page`` at a time."""
    end = int(client.llen(keys.dead)) - 1
    seen: set[bytes] = set()
    while end >= 0:
        start = max(0, end - page + 1)
        for reply in reversed(client.lrange(keys.dead, start, end)):
            raw = reply if isinstance(reply, bytes) else str(reply).encode("utf-8")
            if raw not in seen:  # the list moved under us (trimmed at the head)
                seen.add(raw)
                yield DeadLetter.parse(raw)
        end = start - 1


def find(client: redis.Redis, keys: Keys, name: str) -> DeadLetter:
    """The record named ``name``: its dead-letter id (or a unique prefix), or its item id
    (the newest record of that item).

    Raises:
        PcqError: no such record, or a prefix naming several.
    """
    Selection(names=(name,))  # checks the form (usage error)
    hits: list[DeadLetter] = []
    for letter in newest(client, keys):
        if letter.item_id == name:
            return letter
        if HEX_RE.match(name) and letter.dlid.startswith(name[:DLID_LEN]):
            hits.append(letter)
    if not hits:
        raise PcqError(f"no dead letter {name} on queue {keys.queue_name}")
    if len({h.dlid for h in hits}) > 1:
        raise PcqError(f"dead-letter id {name} is ambiguous: {', '.join(h.dlid for h in hits)}")
    return hits[0]


def select(client: redis.Redis, keys: Keys, chosen: Selection, now: float) -> list[DeadLetter]:
    """The records ``chosen`` names or filters, oldest first (names must exist)."""
    if chosen.names:
        picked = {find(client, keys, name).raw: None for name in chosen.names}
        letters = [DeadLetter.parse(raw) for raw in picked]
        return [d for d in letters if chosen.matches(d, now)]
    if chosen.empty:
        return []
    return [d for d in reversed(list(newest(client, keys))) if chosen.matches(d, now)]


def requeue(client: redis.Redis, keys: Keys, settings: RedisSettings, letter: DeadLetter) -> str:
    """Put ``letter``'s item back in the queue as a new delivery of the same id.

    Returns:
        ``"requeued"``, or why not: the record is corrupt, has no item id, kept
        only part of its payload, or its payload is not an item of that id; the
        item was acknowledged meanwhile; the record is gone (requeued or purged
        by someone else).
    """
    item_id, raw = letter.item_id, letter.payload()
    if letter.record is None:
        return letter.reason
    if item_id is None:
        return "no item id (a payload that never was an item)"
    if raw is None or letter.truncated:
        return "the record keeps only part of the payload (truncated)"
    try:
        item = decode(raw, settings.max_payload_bytes)
    except BadPayload as exc:
        return f"payload is not an item ({exc})"
    if item.id != item_id:
        return f"payload is item {item.id}, not {item_id}"
    done = Scripts(client).requeue([keys.dead, keys.queue, keys.stats],
                                   [keys.prefix, letter.raw, raw, item_id])  # fmt: skip
    return {1: "requeued", 2: "already acknowledged (consumed): left in the inbox"}.get(
        int(done), "gone: requeued or purged by someone else meanwhile"
    )


def purge(client: redis.Redis, keys: Keys, letters: Sequence[DeadLetter]) -> int:
    """Remove ``letters`` from the dead list; return how many were still there."""
    scripts, removed = Scripts(client), 0
    for i in range(0, len(letters), 100):
        chunk = [d.raw for d in letters[i : i + 100]]
        removed += int(scripts.purge([keys.dead, keys.stats], chunk))
    return removed


def retain(scripts: Scripts, keys: Keys, settings: RedisSettings, now: float,
           say: Callable[[str], object] | None = None) -> int:  # fmt: skip
    """Apply the retention caps (``dead_max``, ``dead_max_age``); return records trimmed.

    ``say`` gets one line when records were trimmed (a consumer's console).
    """
    cutoff = now - settings.dead_max_age if settings.dead_max_age else 0
    by_count, by_age = scripts.retain(
        [keys.dead, keys.stats], [settings.dead_max, f"{cutoff:.3f}", AGE_LOOK]
    )
    trimmed = int(by_count) + int(by_age)
    if trimmed and say is not None:
        say(f"dead letters: {trimmed} oldest trimmed by retention (PCQ_DEAD_MAX "
            f"{settings.dead_max}, PCQ_DEAD_MAX_AGE {settings.dead_max_age}s)")  # fmt: skip
    return trimmed
