"""A consumer's acknowledgements not yet sent: :class:`AckBuffer`.

Redis acknowledgements are already per claim: ``ack`` only buffers the item,
and the buffer rides with the consumer's next claim (``claim.lua`` sets the
items' bits in their run's acked bitmap -- the buffer sends ranges of item
numbers -- counts them per consumer, and drops the envelopes they settled
from the processing list) -- or goes alone after 0.5 s
(:meth:`pcq.core.redis_list.consumer.ListConsumer.flush`).
"""

from __future__ import annotations

from functools import lru_cache
from itertools import accumulate
from typing import Any

from pcq.core.redis_common.keys import BITS_CAP
from pcq.core.redis_list.acked import bit_of
from pcq.core.redis_list.held import Envelope

__all__ = ["AckBuffer"]


class AckBuffer:
    """Acknowledgements not yet sent (ids, in order) and the envelopes they settle."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.settled: list[Envelope] = []
        self.since = 0.0

    def __bool__(self) -> bool:
        return bool(self.ids or self.settled)

    def add(self, item_id: str, now: float) -> None:
        """Buffer the acknowledgement of ``item_id`` at ``now`` (monotonic)."""
        if not self.ids:
            self.since = now
        self.ids.append(item_id)

    def envelope_settled(self, envelope: Envelope) -> None:
        """``envelope`` has no unsettled item left: drop it from the processing list."""
        self.settled.append(envelope)

    def args(self, covers_all: bool) -> list[Any]:
        """The claim script's settling arguments (see ``claim.lua``).

        Args:
            covers_all: the consumer holds nothing unsettled, so the script may
                drop the whole processing list instead of removing envelopes one
                by one (and they need not be sent).
        """
        if not self:
            return ["none", *self.by_run()]
        if covers_all:
            return ["all", *self.by_run()]
        return ["some", *self.by_run(), *(e.element for e in self.settled)]

    def by_run(self) -> list[Any]:
        """``[number of runs, then per run: run, ranges, other ids]`` (see ``claim.lua``).

        Ranges are the acknowledged item numbers that may go to the run's bitmap,
        as ``"a-b"`` joined by ``","`` (``"0-41,43-99"``); other ids (a number
        that is not canonical decimal, or not under the cap) are joined by ``","``
        as they are (ids never contain ``","``).
        """
        ids = self.ids
        if not ids:
            return [0]
        run, _, first = ids[0].rpartition(":")
        one = _one_range(ids, run, first)
        if one is not None:
            return [1, run, one, ""]
        groups: dict[str, tuple[list[int], list[str]]] = {}
        for item_id in ids:
            numbers, others = groups.setdefault(item_id.rpartition(":")[0], ([], []))
            n = bit_of(item_id)
            if n is None:
                others.append(item_id)
            else:
                numbers.append(n)
        out: list[Any] = [len(groups)]
        for name, (numbers, others) in groups.items():
            out += (name, _ranges(numbers), ",".join(others))
        return out

    def clear(self) -> None:
        """Forget the buffered acknowledgements (they were sent)."""
        self.ids = []
        self.settled = []


def _ranges(numbers: list[int]) -> str:
    """``numbers`` as sorted ranges ``"a-b,..."``; a number present twice starts a new range."""
    if not numbers:
        return ""
    numbers.sort()
    out, start = [], numbers[0]
    prev = start
    for n in numbers[1:]:
        if n != prev + 1:
            out.append(f"{start}-{prev}")
            start = n
        prev = n
    out.append(f"{start}-{prev}")
    return ",".join(out)


def _one_range(ids: list[str], run: str, first: str) -> str | None:
    """``"a-b"`` when ``ids`` are exactly ``<run>:a`` ... ``<run>:b`` in order, else ``None``.

    The usual batch, checked with one join and one compare against cached text
    rather than by parsing every id. The expected text has one ``","`` per id
    (none in ``run``), so an equal join proves no id holds a ``","``: the ids are
    those, each with a canonical number.
    """
    if len(ids) == 1:  # one by one
        n = bit_of(ids[0])
        return None if n is None else f"{n}-{n}"
    last = ids[-1][len(run) + 1 :]
    if not (first.isascii() and first.isdigit() and last.isascii() and last.isdigit()):
        return None
    lo, hi = int(first), int(last)
    if hi - lo + 1 != len(ids) or hi >= BITS_CAP or "," in run:
        return None
    if "," + ",".join(ids) != _expected(run, lo, hi):
        return None
    return f"{lo}-{hi}"


_BLOCK = 1024  # ids per cached block of text


@lru_cache(maxsize=16)
def _block(run: str, index: int) -> tuple[str, list[int]]:
    """``",<run>:n,<run>:n+1,..."`` for the block's numbers, and where each id starts."""
    ids = [f",{run}:{n}" for n in range(index * _BLOCK, (index + 1) * _BLOCK)]
    return "".join(ids), list(accumulate((len(t) for t in ids), initial=0))


def _expected(run: str, lo: int, hi: int) -> str:
    """``",<run>:lo,...,<run>:hi"``, cut from cached blocks (formatting ids costs more)."""
    index, i = divmod(lo, _BLOCK)
    if hi < (index + 1) * _BLOCK:  # usually: one block
        text, starts = _block(run, index)
        return text[starts[i] : starts[hi - index * _BLOCK + 1]]
    parts = []
    n = lo
    while n <= hi:
        index, i = divmod(n, _BLOCK)
        j = min(hi - index * _BLOCK, _BLOCK - 1) + 1
        text, starts = _block(run, index)
        parts.append(text[starts[i] : starts[j]])
        n = (index + 1) * _BLOCK
    return "".join(parts)
