"""Fast :class:`~pcq.core.transport.Item` builders for the local transport's hot path.

At a few million items per second, building each ``Item`` through Python code
is the largest cost left on either side, so :data:`make_item`,
:data:`make_items` and :class:`ItemRun` build them with C-level calls.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from itertools import repeat
from typing import overload

from pcq.core.transport import Item

__all__ = ["ItemRun", "item_ids", "make_item", "make_items"]

_FIELDS = ("id", "body", "produced_at", "deliveries")


def _item_factory() -> Callable[[str, str, float, int], Item]:
    """The fastest way to build one :class:`Item`, checked to equal the constructor.

    ``Item(...)`` runs the named tuple's Python ``__new__``; calling
    ``tuple.__new__`` directly skips that frame. If ``Item`` ever stops being
    a plain named tuple of these fields, use the constructor.
    """
    if not _plain_tuple():
        return Item
    new = tuple.__new__

    def make(id: str, body: str, produced_at: float, deliveries: int = 0) -> Item:
        """Same arguments and result as ``Item(...)``."""
        return new(Item, (id, body, produced_at, deliveries))

    return make


def _plain_tuple() -> bool:
    return issubclass(Item, tuple) and getattr(Item, "_fields", None) == _FIELDS


make_item = _item_factory()


def _items_factory() -> Callable[[int, list[str], list[float], int], list[Item]]:
    """The fastest way to build a run of :class:`Item` objects (see :data:`make_items`).

    One ``map`` over ``tuple.__new__`` (C code): no Python frame runs per item.
    """
    if not _plain_tuple():  # Item changed shape: fall back to its constructor
        return lambda first, bodies, stamps, deliveries: [
            Item(str(first + k), body, stamps[k], deliveries) for k, body in enumerate(bodies)
        ]
    new = tuple.__new__

    def make(first: int, bodies: list[str], stamps: list[float], deliveries: int) -> list[Item]:
        """Items ``first ..`` with these bodies and stamps, all with ``deliveries``."""
        n = len(bodies)
        fields = zip(item_ids(first, n), bodies, stamps, repeat(deliveries, n))
        return list(map(new, repeat(Item, n), fields))

    return make


make_items = _items_factory()

_TWO_DIGITS = tuple(f"{k:02d}" for k in range(100))


def item_ids(first: int, count: int) -> list[str]:
    """``[str(i) for i in range(first, first + count)]``, a third cheaper.

    Consecutive ids share all but their last two digits: one ``str`` per
    hundred, then a C-level concatenation per id (``str(int)`` is the single
    largest cost of building a consumer's items).
    """
    end = first + count
    lead = min(end, 100)
    out = list(map(str, range(first, lead)))  # ids below 100 have no prefix
    first = max(first, lead)
    while first < end:
        high, low = divmod(first, 100)
        stop = min(100, end - high * 100)
        out += map(str(high).__add__, _TWO_DIGITS[low:stop])
        first += stop - low
    return out


class ItemRun(Sequence[Item]):
    """Items ``first .. first + len(bodies) - 1``, made at one instant, built only when read.

    The batch type of :class:`pcq.core.local.producer.LocalRunProducer`, which
    sends its bodies as they are, so a local producer never builds an
    :class:`Item` per item. It still reads as an ordinary sequence of items,
    built on demand, for any code that takes a ``Sequence[Item]``.
    """

    __slots__ = ("bodies", "deliveries", "first", "produced_at")

    def __init__(self, first: int, bodies: list[str], produced_at: float, deliveries: int = 0):
        self.first, self.bodies = first, bodies
        self.produced_at, self.deliveries = produced_at, deliveries

    def __len__(self) -> int:
        return len(self.bodies)

    @overload
    def __getitem__(self, index: int) -> Item: ...
    @overload
    def __getitem__(self, index: slice) -> list[Item]: ...

    def __getitem__(self, index: int | slice) -> Item | list[Item]:
        if isinstance(index, slice):
            return self._items()[index]
        body = self.bodies[index]  # raises IndexError like a list
        k = index + len(self.bodies) if index < 0 else index
        return make_item(str(self.first + k), body, self.produced_at, self.deliveries)

    def __iter__(self) -> Iterator[Item]:
        return iter(self._items())

    def _items(self) -> list[Item]:
        stamps = [self.produced_at] * len(self.bodies)
        return make_items(self.first, self.bodies, stamps, self.deliveries)


