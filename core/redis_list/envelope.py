r"""Envelopes: one Redis list element carries a whole batch of item payloads.

A producer's batch of ``n`` payloads (each one JSON object, schema v1:
:mod:`pcq.core.redis_common.payload`) travels as one list element::

    n == 1:  {"v":1,"id":"r:7",...}                       (the bare payload)
    n  > 1:  #batch 3\n{"v":1,"id":"r:8",...}\n{...}\n{...}

The header line says how many payloads follow, one per line. JSON text as
pcq writes it never holds a raw newline (``\n`` inside a string is escaped),
so the lines are the payloads. An element without the header is one payload,
whatever its bytes: a hostile element (a pickle, a JSON document spread over
several lines) is judged and dead-lettered whole, as it always was.

Why: Redis then moves one element per batch instead of one per item, and the
Lua scripts make one call per batch where they made one per item (figures in
``docs/benchmarks.md``, "Redis list"). The queue's length in *items* is the
list's length plus a counter of the items beyond the first of every envelope
(``queue_extra``, kept by the scripts: :mod:`pcq.core.redis_common.keys`).
The Lua scripts read the same framing (``size`` / ``lines`` / ``envelope`` in
each script that needs them).
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["HEADER", "pack", "size", "unpack"]

HEADER = b"#batch "


def pack(payloads: Sequence[bytes]) -> bytes:
    """One element for ``payloads`` (``b""`` for none, the payload itself for one)."""
    if len(payloads) == 1:
        return payloads[0]
    if not payloads:
        return b""
    return b"%s%d\n%s" % (HEADER, len(payloads), b"\n".join(payloads))


def unpack(element: bytes) -> list[bytes]:
    """The payloads an element carries (a header-less element is one payload)."""
    if element[:7] != HEADER:
        return [element]
    head, newline, body = element.partition(b"\n")
    if not newline or not head[7:].isdigit():
        return [element]  # "#batch" without a count: not an envelope, one (bad) payload
    return body.split(b"\n")


def size(element: bytes) -> int:
    """How many payloads an element carries, by its header (what the scripts count)."""
    if element[:7] != HEADER:
        return 1
    head, newline, _ = element.partition(b"\n")
    count = head[7:]
    return int(count) if newline and count.isdigit() else 1
