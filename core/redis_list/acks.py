"""A consumer's acknowledgements not yet sent: :class:`AckBuffer`.

Redis acknowledgements are already per claim: ``ack`` only buffers the item,
and the buffer rides with the consumer's next claim (``claim.lua`` sets the
items' bits in their run's acked bitmap -- the buffer sends ranges of item
numbers -- counts them per consumer, and drops the envelopes they settled
from the processing list) -- or goes alone after 0.5 s
(:meth:`pcq.core.redis_list.consumer.ListConsumer.flush`).
"""

from __future__ import annotations

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

    def add_many(self, item_ids: list[str], now: float) -> None:
        """Buffer several acknowledgements at ``now`` (monotonic)."""
        if not self.ids:
            self.since = now
        self.ids += item_ids

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
        as ``"a-b"`` joined by ``","`` (``"0-41,43-99"``; a number acknowledged
        twice starts a second range); other ids (a number that is not canonical
        decimal, or not under the cap) are joined by ``","`` as they are (ids
        never contain ``","``).
        """
        ids = self.ids
        if not ids:
            return [0]
        run, _, first = ids[0].rpartition(":")
        if "," not in run:  # (then each check below is exact)
            if len(ids) == 1:  # one by one
                if first.isdigit() and first.isascii() and (first[0] != "0" or first == "0"):
                    n = int(first)
                    if n < BITS_CAP:
                        return [1, run, f"{n}-{n}", ""]
                return _by_run_slow(ids)
            one = _one_range(ids, run, first)
            if one is not None:
                return [1, run, one, ""]
        return _by_run_slow(ids)

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


def _by_run_slow(ids: list[str]) -> list[Any]:
    """:meth:`AckBuffer.by_run` id by id: several runs, or ids that do not fit the bitmap."""
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


def _one_range(ids: list[str], run: str, first: str) -> str | None:
    """``"a-b"`` when ``ids`` are exactly ``<run>:a`` ... ``<run>:b`` in order, else ``None``.

    The usual batch. Checked with one compare of the ids joined against the
    text those ids would have (``map(str, range)`` formats it in C), not by
    parsing every id: 100 ids cost about 0.06 us each. An equal text also
    proves each number canonical (``int()`` takes more, e.g. ``"+1"`` or
    ``"01"``) and no id holding a ``","``.
    """
    try:
        lo, hi = int(first), int(ids[-1][len(run) + 1 :])
    except ValueError:
        return None
    if hi - lo + 1 != len(ids) or lo < 0 or hi >= BITS_CAP:
        return None
    expected = f"{run}:" + f",{run}:".join(map(str, range(lo, hi + 1)))
    return f"{lo}-{hi}" if ",".join(ids) == expected else None
