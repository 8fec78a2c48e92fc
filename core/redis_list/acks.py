"""A consumer's acknowledgements not yet sent: :class:`AckBuffer`.

Redis acknowledgements are already per claim: ``ack`` only buffers the item,
and the buffer rides with the consumer's next claim (``claim.lua`` sets the
items' bits in their run's acked bitmap -- the buffer sends ranges of item
numbers -- counts them per consumer, and drops the envelopes they settled
from the processing list) -- or goes alone after 0.5 s
(:meth:`pcq.core.redis_list.consumer.ListConsumer.flush`).
"""

from __future__ import annotations

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
            joined = ",".join(ids)
            one = _one_range(ids, joined, run, first)
            if one is not None:
                return [1, run, one, ""]
            split = _segments(ids, joined, run)
            if split is not None:
                return [1, run, *split]
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


def _one_range(ids: list[str], joined: str, run: str, first: str) -> str | None:
    """``"a-b"`` when ``ids`` (``joined`` by ``","``) are exactly ``<run>:a`` ... ``<run>:b``
    in order, else ``None``.

    The usual batch, checked with one compare against cached text rather than
    by parsing every id. The expected text has one ``","`` between ids (none in
    ``run``), so an equal ``joined`` proves no id holds a ``","``: the ids are
    those, each with a canonical number (``int()`` takes more, e.g. ``"+1"``
    or ``"01"``: the compare refuses those).
    """
    try:
        lo, hi = int(first), int(ids[-1][len(run) + 1 :])
    except ValueError:
        return None
    if hi - lo + 1 != len(ids) or lo < 0 or hi >= BITS_CAP:
        return None
    index, i = divmod(lo, _BLOCK)
    if hi < (index + 2) * _BLOCK:  # usually: within one block, compared in place
        text, starts = _BLOCKS.get((run, index)) or _block(run, index)
        start = starts[i]
        if starts[hi - index * _BLOCK + 1] - 1 - start != len(joined):
            return None
        ok = text.startswith(joined, start)
    else:
        ok = joined == _expected(run, lo, hi)
    return f"{lo}-{hi}" if ok else None


def _segments(ids: list[str], joined: str, run: str) -> tuple[str, str] | None:
    """``(ranges, other ids)`` when every id is ``run``'s, else ``None``.

    For batches that are not one range (gaps, items out of order, an odd id):
    each stretch of ids ``<run>:n, <run>:n+1, ...`` is found by a binary search
    of compares against the cached text, not id by id.
    """
    if joined.count(",") != len(ids) - 1:  # some id holds a ",": the compares would lie
        return None
    head = run + ":"
    cut, count = len(head), len(ids)
    ranges: list[str] = []
    others: list[str] = []
    at = pos = 0  # ids[at] starts at joined[pos]
    while at < count:
        item_id = ids[at]
        tail = item_id[cut:]
        if not item_id.startswith(head):
            return None
        if not (tail.isdigit() and tail.isascii()) or (tail[0] == "0" and tail != "0") or (
            int(tail) >= BITS_CAP
        ):
            others.append(item_id)
            at, pos = at + 1, pos + len(item_id) + 1
            continue
        n = int(tail)
        index, i = divmod(n, _BLOCK)
        text, starts = _BLOCKS.get((run, index)) or _block(run, index)
        first = starts[i]
        good = _stretch(ids, at, joined, pos, text, starts, i,
                        min(count - at, 2 * _BLOCK - i, BITS_CAP - n))  # fmt: skip
        ranges.append(f"{n}-{n + good - 1}")
        at, pos = at + good, pos + starts[i + good] - first
    return ",".join(ranges), ",".join(others)


def _stretch(ids: list[str], at: int, joined: str, pos: int, text: str, starts: list[int],
             i: int, most: int) -> int:  # fmt: skip
    """How many ids from ``ids[at]`` (at ``joined[pos]``) read on as the block ``text``
    does from its id ``i`` (which ``ids[at]`` is), at most ``most``."""
    first = starts[i]
    end = len(joined)

    def matches(k: int) -> bool:  # ids[at : at + k] are the block's ids i .. i+k-1
        stop = pos + starts[i + k] - 1 - first
        return (stop == end or (stop < end and joined[stop] == ",")) and joined.startswith(
            text[first : starts[i + k] - 1], pos
        )

    # Guess by the stretch's last id alone (exact when the ids ascend without
    # repeats), check the guess with one compare; else search by whole compares.
    good, bad = 1, most + 1
    while bad - good > 1:
        k = (good + bad) // 2
        if ids[at + k - 1] == text[starts[i + k - 1] : starts[i + k] - 1]:
            good = k
        else:
            bad = k
    if good > 1 and not matches(good):
        good, bad = 1, good
        while bad - good > 1:
            k = (good + bad) // 2
            good, bad = (k, bad) if matches(k) else (good, k)
    return good


# Block k of cached text holds the ids from k * _BLOCK to (k + 2) * _BLOCK - 1, so
# every range of up to _BLOCK + 1 ids lies in the block where it starts.
_BLOCK = 1024
_BLOCKS: dict[tuple[str, int], tuple[str, list[int]]] = {}  # (run, block) -> _block()


def _block(run: str, index: int) -> tuple[str, list[int]]:
    """``"<run>:n,<run>:n+1,...,"`` for the block's numbers, and where each id starts."""
    ids = [f"{run}:{n}," for n in range(index * _BLOCK, (index + 2) * _BLOCK)]
    block = "".join(ids), list(accumulate((len(t) for t in ids), initial=0))
    if len(_BLOCKS) >= 16:  # a consumer sees a few runs at a time: keep the memory small
        _BLOCKS.clear()
    _BLOCKS[(run, index)] = block
    return block


def _expected(run: str, lo: int, hi: int) -> str:
    """``"<run>:lo,...,<run>:hi"``, cut from cached blocks (formatting ids costs more)."""
    parts = []
    n = lo
    while n <= hi:
        index, i = divmod(n, _BLOCK)
        j = min(hi - index * _BLOCK, 2 * _BLOCK - 1) + 1
        text, starts = _BLOCKS.get((run, index)) or _block(run, index)
        parts.append(text[starts[i] : starts[j]])
        n = index * _BLOCK + j
    return "".join(parts)[:-1]
