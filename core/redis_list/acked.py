"""A run's acknowledged items, read back: its acked bitmap and its acked set.

``claim.lua`` records an acknowledgement of item ``<run>:<n>`` as bit ``n`` of
``P:run:<run>:bits`` when ``n`` is canonical decimal, below the run's produced
count and below :data:`~pcq.core.redis_common.keys.BITS_CAP`; any other id goes
to the set ``P:run:<run>:acked`` (no id is in both). So an id is acknowledged
when it is in either, and a run's count is ``BITCOUNT`` plus ``SCARD``. Redis
numbers a bitmap's bits from the high bit of byte 0.
"""

from __future__ import annotations

import redis

from pcq.core.redis_common.connection import text
from pcq.core.redis_common.keys import BITS_CAP, Keys

__all__ = ["acked_count", "acked_ids", "bit_numbers", "bit_of", "is_acked"]


def bit_of(item_id: str) -> int | None:
    """The id's bit in its run's bitmap, or ``None`` when it cannot have one.

    Only a canonical decimal number (ASCII digits, no sign, no leading zero
    but ``0``) below the cap can: the same test as ``lua/lib/acked.lua``.
    """
    tail = item_id.rpartition(":")[2]
    if not (tail.isascii() and tail.isdigit()) or (tail[0] == "0" and tail != "0"):
        return None
    n = int(tail)
    return n if n < BITS_CAP else None


def bit_numbers(bitmap: bytes) -> list[int]:
    """The numbers of the bits set in ``bitmap`` (bit 0 = high bit of byte 0), ascending."""
    out: list[int] = []
    for i, byte in enumerate(bitmap):
        if byte == 0xFF:  # the usual byte of a run's bitmap: 8 items acknowledged
            out.extend(range(i * 8, i * 8 + 8))
        elif byte:
            out.extend(i * 8 + b for b in range(8) if byte & (0x80 >> b))
    return out


def acked_ids(client: redis.Redis, keys: Keys, run: str) -> set[str]:
    """Every id of ``run`` acknowledged at least once (bitmap decoded, plus the set)."""
    with client.pipeline(transaction=False) as pipe:
        pipe.get(keys.acked_bits(run))
        pipe.smembers(keys.acked(run))
        bitmap, members = pipe.execute()
    ids = {f"{run}:{n}" for n in bit_numbers(bitmap or b"")}
    return ids | {text(m) for m in members}


def acked_count(client: redis.Redis, keys: Keys, run: str) -> int:
    """How many distinct ids of ``run`` were acknowledged: bits set plus set members."""
    with client.pipeline(transaction=False) as pipe:
        pipe.bitcount(keys.acked_bits(run))
        pipe.scard(keys.acked(run))
        return sum(int(n) for n in pipe.execute())


def is_acked(client: redis.Redis, keys: Keys, item_id: str) -> bool:
    """Whether ``item_id`` was acknowledged: its bit, else the acked set."""
    run = item_id.rpartition(":")[0]
    n = bit_of(item_id)
    if n is not None and client.getbit(keys.acked_bits(run), n):
        return True
    return bool(client.sismember(keys.acked(run), item_id))
