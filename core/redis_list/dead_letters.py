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

import base64
import hashlib
import json
import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from typing import Any

import redis

from pcq.core.errors import PcqError, UsageProblem
from pcq.core.redis_common.keys import Keys
from pcq.core.redis_common.payload import BadPayload, decode, run_of
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.redis_list.scripts import Scripts

__all__ = [
    "DLID_LEN", "DeadLetter", "Selection", "find", "newest", "purge", "requeue", "retain", "select",
]  # fmt: skip

DLID_LEN = 12
PAGE = 200  # records per LRANGE (a record may be up to ~90 KB)
AGE_LOOK = 100  # records retain.lua inspects for age per call
_HEX_RE = re.compile(r"^[0-9a-f]{6,40}$")
_ITEM_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}:[0-9]{1,18}$")
_RUN_RE = re.compile(r"^[A-Za-z0-9_\-]{1,64}$")


@dataclass(frozen=True, slots=True)
class DeadLetter:
    """One record of the dead list, as stored (``raw``) and as read (``record``).

    ``record`` is ``None`` when the stored bytes are not a JSON object;
    ``problem`` then says why.
    """

    raw: bytes
    record: dict[str, Any] | None
    problem: str = ""

    @classmethod
    def parse(cls, raw: bytes) -> DeadLetter:
        try:
            record = json.loads(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            return cls(raw, None, f"not JSON ({exc})")
        if not isinstance(record, dict):
            return cls(raw, None, f"not a JSON object ({type(record).__name__})")
        return cls(raw, record)

    @property
    def dlid(self) -> str:
        """The record's name: the first hex digits of the SHA-1 of its bytes."""
        return hashlib.sha1(self.raw, usedforsecurity=False).hexdigest()[:DLID_LEN]

    def _get(self, name: str) -> Any:
        return None if self.record is None else self.record.get(name)

    @property
    def item_id(self) -> str | None:
        value = self._get("id")
        return value if isinstance(value, str) and _ITEM_RE.match(value) else None

    @property
    def run(self) -> str | None:
        run = self._get("run")
        if isinstance(run, str) and run:
            return run
        return run_of(self.item_id) if self.item_id else None

    @property
    def reason(self) -> str:
        if self.record is None:
            return f"corrupt record: {self.problem}"
        reason = self._get("reason")
        return reason if isinstance(reason, str) else repr(reason)

    @property
    def at(self) -> float | None:
        value = self._get("at")
        return float(value) if isinstance(value, (int, float)) else None

    @property
    def deliveries(self) -> int | None:
        value = self._get("deliveries")
        return value if isinstance(value, int) else None

    @property
    def consumer(self) -> str | None:
        value = self._get("consumer")
        return value if isinstance(value, str) else None

    @property
    def truncated(self) -> bool:
        return self._get("truncated") is True

    def payload(self) -> bytes | None:
        """The payload bytes kept in the record (cut if ``truncated``), or None."""
        text, b64 = self._get("payload"), self._get("payload_b64")
        if isinstance(text, str):
            return text.encode("utf-8", "surrogatepass")
        if isinstance(b64, str):
            try:
                return base64.b64decode(b64, validate=True)
            except ValueError:
                return None
        return None

    @property
    def payload_size(self) -> int:
        """The payload's full size in bytes (kept in the record when it was cut)."""
        full = self._get("payload_bytes")
        if isinstance(full, int):
            return full
        kept = self.payload()
        return 0 if kept is None else len(kept)

    def summary(self, now: float) -> dict[str, Any]:
        """The fields ``pcq dead list`` shows (JSON-safe)."""
        return {
            "dlid": self.dlid, "id": self.item_id, "run": self.run, "reason": self.reason,
            "deliveries": self.deliveries, "consumer": self.consumer, "at": self.at,
            "age": None if self.at is None else round(max(0.0, now - self.at), 3),
            "payload_bytes": self.payload_size, "truncated": self.truncated,
            "corrupt": self.record is None,
        }  # fmt: skip


@dataclass(frozen=True, slots=True)
class Selection:
    """Which dead letters a command acts on: names, filters (all must match), or all.

    Args:
        names: Dead-letter ids (or a unique prefix of 6+ hex digits) or item ids.
        run: Records of this run only.
        reason: Records whose reason contains this text (case-insensitive).
        older_than: Records at least this many seconds old.
        everything: Every record (no names or filters allowed with it).
    """

    names: tuple[str, ...] = ()
    run: str | None = None
    reason: str | None = None
    older_than: float | None = None
    everything: bool = False

    def __post_init__(self) -> None:
        for name in self.names:
            if not (_HEX_RE.match(name) or _ITEM_RE.match(name)):
                raise UsageProblem(
                    f"{name!r} is neither a dead-letter id (6-40 hex digits) nor an item id "
                    "(<run>:<n>)"
                )
        if self.run is not None and not _RUN_RE.match(self.run):
            raise UsageProblem(f"--run {self.run!r}: a run id is 1-64 of A-Z a-z 0-9 _ -")
        if self.reason is not None and not self.reason.strip():
            raise UsageProblem("--reason needs some text to look for")
        if self.older_than is not None and self.older_than < 0:
            raise UsageProblem(f"--older-than must be >= 0, got {self.older_than}")
        if self.everything and (self.names or self.filtered):
            raise UsageProblem("--all takes no ids and no filters")

    @property
    def filtered(self) -> bool:
        return self.run is not None or self.reason is not None or self.older_than is not None

    @property
    def empty(self) -> bool:
        """Nothing selected: a requeue or purge needs ids, a filter or ``--all``."""
        return not (self.names or self.filtered or self.everything)

    def matches(self, letter: DeadLetter, now: float) -> bool:
        """Does ``letter`` pass the filters (names are looked up by :func:`find`)?"""
        if self.run is not None and letter.run != self.run:
            return False
        if self.reason is not None and self.reason.lower() not in letter.reason.lower():
            return False
        if self.older_than is not None:
            return letter.at is not None and now - letter.at >= self.older_than
        return True


def newest(client: redis.Redis, keys: Keys, page: int = PAGE) -> Iterator[DeadLetter]:
    """Every record of the dead list, newest first, read ``page`` at a time."""
    end = int(client.llen(keys.dead)) - 1
    seen: set[bytes] = set()
    while end >= 0:
        start = max(0, end - page + 1)
        for raw in reversed(client.lrange(keys.dead, start, end)):
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
        if _HEX_RE.match(name) and letter.dlid.startswith(name[:DLID_LEN]):
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


def retain(scripts: Scripts, keys: Keys, settings: RedisSettings, now: float) -> int:
    """Apply the retention caps (``dead_max``, ``dead_max_age``); return records trimmed."""
    cutoff = now - settings.dead_max_age if settings.dead_max_age else 0
    by_count, by_age = scripts.retain(
        [keys.dead, keys.stats], [settings.dead_max, f"{cutoff:.3f}", AGE_LOOK]
    )
    return int(by_count) + int(by_age)
