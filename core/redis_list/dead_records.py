"""Dead-letter records as read back, and which of them a command selects (no Redis here).

* :class:`DeadLetter` -- one stored record of ``P:dead`` (JSON ``{reason, payload
  | payload_b64, consumer, at, id, run, deliveries, [truncated, payload_bytes,
  payload_sha256]}``, written by ``dead.lua``/``reap.lua`` through
  :func:`pcq.core.redis_common.payload.dead_record`), kept as its exact bytes,
  corrupt ones included, and named by :attr:`DeadLetter.dlid`;
* :class:`Selection` -- ids, filters (run, reason text, age) or everything;
  malformed input is a :class:`~pcq.core.errors.UsageProblem`.

Kept apart from :mod:`pcq.core.redis_list.dead_letters` (the Redis side) so
``pcq dead`` checks its input without loading a Redis client.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from dataclasses import dataclass
from typing import Any

from pcq.core.errors import UsageProblem
from pcq.core.redis_common.payload import run_of

__all__ = ["DLID_LEN", "HEX_RE", "DeadLetter", "Selection"]

DLID_LEN = 12
HEX_RE = re.compile(r"^[0-9a-f]{6,40}$")
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
            if not (HEX_RE.match(name) or _ITEM_RE.match(name)):
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
