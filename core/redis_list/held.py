"""What one consumer holds: its claimed envelopes, and which of their items are settled.

A consumer claims envelopes (:mod:`pcq.core.redis_list.envelope`), so its
processing list holds whole envelopes while it settles their items one by one::

    claimed envelope  "#batch 3\\n{a}\\n{b}\\n{c}"      open 3
      ack b         -> b is settled; the element is unchanged   open 2
      nack c        -> c leaves: the element becomes "#batch 2\\n{a}\\n{b}" (retry.lua)
      ack a         -> open 0: the element goes with the next claim (claim.lua)

An acknowledged item stays in its element until the whole envelope is
settled: a reaper opening the element of a consumer that died skips the ids
already acknowledged (their run's acked bitmap or set). An item settled alone
(nack, dead letter, release) leaves the element at once, so it can never come
back twice.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterable

from pcq.core.errors import PcqError
from pcq.core.redis_list.envelope import pack, unpack

__all__ = ["ACKED", "GONE", "OPEN", "Envelope", "Held"]

OPEN, ACKED, GONE = 0, 1, 2  # an item's state in its envelope (GONE: left the element)


class Envelope:
    """One claimed element, as the processing list holds it now."""

    __slots__ = ("element", "open", "payloads", "states")

    def __init__(self, element: bytes) -> None:
        self.element = element  # exactly the bytes in the processing list (LREM needs them)
        self.payloads = unpack(element)
        self.states = bytearray(len(self.payloads))  # OPEN / ACKED / GONE per payload
        self.open = len(self.payloads)

    def remove(self, indexes: Iterable[int]) -> bytes:
        """Take these items out of the element; return the element's new bytes (b"" if empty)."""
        states = self.states
        for index in indexes:
            if states[index] == OPEN:
                self.open -= 1
            states[index] = GONE
        kept = [p for p, state in zip(self.payloads, states) if state != GONE]
        self.element = pack(kept)
        return self.element

    def still_open(self, leaving: set[int]) -> list[int]:
        """Indexes of the items not settled yet, except ``leaving``."""
        return [i for i, state in enumerate(self.states) if state == OPEN and i not in leaving]


class Held:
    """The envelopes a consumer holds, and where each unsettled item id sits in them."""

    def __init__(self) -> None:
        self.envelopes: list[Envelope] = []
        self.at: dict[str, tuple[Envelope, int]] = {}
        # Further copies of an id held twice (rare: only a hostile or duplicated push).
        self._dups: dict[str, list[tuple[Envelope, int]]] = {}

    def __bool__(self) -> bool:
        return bool(self.envelopes)

    def unknown(self, elements: list[bytes]) -> list[bytes]:
        """Of a processing list's ``elements``, those not held yet."""
        if not self.envelopes:
            return elements
        known = Counter(e.element for e in self.envelopes)
        fresh = []
        for element in elements:
            if known[element] > 0:
                known[element] -= 1
            else:
                fresh.append(element)
        return fresh

    def new(self, elements: list[bytes], whole: bool) -> list[Envelope]:
        """Hold newly claimed ``elements``; ``whole``: they are everything held (a retried claim)."""
        if whole:
            elements = self.unknown(elements)
        envelopes = [Envelope(element) for element in elements]
        self.envelopes += envelopes
        return envelopes

    def place(self, item_id: str, envelope: Envelope, index: int) -> None:
        """Record that ``item_id`` is payload ``index`` of ``envelope``."""
        spot = (envelope, index)
        if self.at.setdefault(item_id, spot) is not spot:
            self._dups.setdefault(item_id, []).append(spot)

    def take(self, item_id: str, consumer: str) -> tuple[Envelope, int]:
        """Where ``item_id`` sits; it is no longer counted as held."""
        if self._dups:
            copies = self._dups.get(item_id)
            if copies:
                copy = copies.pop()
                if not copies:
                    del self._dups[item_id]
                return copy
        place = self.at.pop(item_id, None)
        if place is None:
            raise PcqError(f"item {item_id} is not held by consumer {consumer}")
        return place

    def take_many(self, item_ids: list[str], consumer: str) -> list[tuple[Envelope, int]]:
        """:meth:`take` of each id, in order."""
        if self._dups:
            return [self.take(item_id, consumer) for item_id in item_ids]
        pop = self.at.pop
        places = [pop(item_id, None) for item_id in item_ids]
        if None in places:
            missing = next(i for i, place in zip(item_ids, places) if place is None)
            for item_id, place in zip(item_ids, places):  # as it was: nothing taken
                if place is not None:
                    self.at[item_id] = place
            raise PcqError(f"item {missing} is not held by consumer {consumer}")
        return places  # type: ignore[return-value]  # no None left

    def settle(self, item_ids: list[str], consumer: str) -> list[Envelope]:
        """Mark these items acknowledged (all or none: PcqError if one is not held);
        return the envelopes left with none open, no longer held."""
        done = []
        for envelope, index in self.take_many(item_ids, consumer):
            envelope.states[index] = ACKED
            envelope.open -= 1
            if not envelope.open:
                self.drop(envelope)
                done.append(envelope)
        return done

    def drop(self, envelope: Envelope) -> None:
        """Forget a fully settled envelope."""
        self.envelopes.remove(envelope)

    def ids(self) -> list[str]:
        """Every unsettled item id held, one per copy."""
        return [*self.at, *(i for i, copies in self._dups.items() for _ in copies)]

    def clear(self) -> None:
        """Forget everything held (a lost lease: a reaper handed it all back)."""
        self.envelopes = []
        self.at = {}
        self._dups = {}
