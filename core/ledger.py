"""The shared-memory ledger of a local run, and a fast :class:`Item` builder.

Everything here is written with plain stores into ``RawArray`` memory: no lock
is ever taken, so a process SIGKILLed mid-write cannot leave anything locked,
and what it stored before dying stays visible to the supervisor.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterator, Sequence
from dataclasses import fields
from itertools import repeat
from multiprocessing.context import BaseContext
from typing import Any, overload

from core.transport import Item

__all__ = ["INFLIGHT", "ItemRun", "Ledger", "make_item", "make_items"]

INFLIGHT = 4  # per consumer slot: first index, count, deliveries, owes-a-semaphore-release


def _item_factory() -> Callable[[str, str, float, int], Item]:
    """The fastest way to build an :class:`Item`, checked to equal the constructor.

    The frozen dataclass ``__init__`` goes through ``object.__setattr__`` once
    per field (~0.6 us per item). Filling the slots with their descriptors
    directly halves that, which matters at a million items per second. If
    ``Item`` ever grows a ``__post_init__`` or other fields, use the constructor.
    """
    names = tuple(f.name for f in fields(Item))
    if names != ("id", "body", "produced_at", "deliveries") or hasattr(Item, "__post_init__"):
        return Item
    new = object.__new__
    set_id, set_body, set_at, set_deliveries = (getattr(Item, n).__set__ for n in names)

    def make(id: str, body: str, produced_at: float, deliveries: int = 0) -> Item:
        """Same arguments and result as ``Item(...)``."""
        item = new(Item)
        set_id(item, id)
        set_body(item, body)
        set_at(item, produced_at)
        set_deliveries(item, deliveries)
        return item

    return make


make_item = _item_factory()


def _items_factory() -> Callable[[int, list[str], list[float], int], list[Item]]:
    """The fastest way to build a run of :class:`Item` objects (see :func:`make_items`).

    Every step is a ``map`` over a C callable (``object.__new__``, ``str``,
    the slot descriptors' ``__set__``), so no Python frame runs per item:
    about a third cheaper than calling :data:`make_item` in a comprehension.
    """
    if make_item is Item:  # Item changed shape: fall back to its constructor
        return lambda first, bodies, stamps, deliveries: [
            Item(str(first + k), body, stamps[k], deliveries) for k, body in enumerate(bodies)
        ]
    new = object.__new__
    set_id, set_body, set_at, set_deliveries = (
        getattr(Item, f.name).__set__ for f in fields(Item)
    )

    def make(first: int, bodies: list[str], stamps: list[float], deliveries: int) -> list[Item]:
        """Items ``first ..`` with these bodies and stamps, all with ``deliveries``."""
        n = len(bodies)
        items: list[Item] = list(map(new, repeat(Item, n)))
        sink = deque[Any](maxlen=0).extend  # runs an iterator to its end, keeps nothing
        sink(map(set_id, items, map(str, range(first, first + n))))
        sink(map(set_body, items, bodies))
        sink(map(set_at, items, stamps))
        sink(map(set_deliveries, items, repeat(deliveries, n)))
        return items

    return make


make_items = _items_factory()


class ItemRun(Sequence[Item]):
    """Items ``first .. first + len(bodies) - 1``, made at one instant, built only when read.

    A producer hands one of these to ``Transport.put`` as an ordinary sequence
    of items. :class:`core.mpqueue.LocalQueue` recognises it and sends its
    bodies as they are, so a local producer never builds an :class:`Item` per
    item; any other transport simply reads the items.
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


class Ledger:
    """Shared-memory bookkeeping, written with plain stores (no locks).

    ``done[i]`` is ``serial + 1`` of the consumer that handled item ``i`` first
    (``-1``: dead-lettered); ``inflight`` holds, per consumer slot, the range it
    is working on; ``dups``/``put`` count duplicates per consumer serial and
    items put per producer; ``flags[0]`` is the stop flag (a byte read per item
    is far cheaper than ``Event.is_set``, which takes a lock).
    """

    def __init__(self, ctx: BaseContext, total: int, slots: int, serials: int, producers: int):
        self.sizes = (total, slots, serials, producers)
        n = max(total, 1)
        self.raw = {
            "done": ctx.RawArray("i", n),
            "produced_at": ctx.RawArray("d", n),
            "inflight": ctx.RawArray("q", slots * INFLIGHT),
            "dups": ctx.RawArray("q", max(serials, 1)),
            "put": ctx.RawArray("q", max(producers, 1)),
            "flags": ctx.RawArray("b", 1),
        }
        self._views()

    def _views(self) -> None:
        # memoryview stores cost a third of ctypes array item access (hot path)
        codes: dict[str, Any] = {"done": "i", "produced_at": "d", "flags": "b"}
        for name, arr in self.raw.items():
            setattr(self, name, memoryview(arr).cast("B").cast(codes.get(name, "q")))

    def __getstate__(self) -> dict[str, Any]:
        return {"sizes": self.sizes, "raw": self.raw}  # memoryviews do not pickle (spawn)

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._views()

    # Typed as Any: typeshed's memoryview is int-only, produced_at holds floats.
    done: Any
    produced_at: Any
    inflight: Any
    dups: Any
    put: Any
    flags: Any

    def held(self, slot: int) -> tuple[int, int, int, int]:
        """``(first, count, deliveries, owes)`` recorded for ``slot`` (count 0: nothing)."""
        base = slot * INFLIGHT
        first, count, deliveries, owes = self.inflight[base : base + INFLIGHT].tolist()
        return first, count, deliveries, owes

    def clear(self, slot: int) -> None:
        """Forget what ``slot`` held."""
        base = slot * INFLIGHT
        self.inflight[base + 1] = 0
        self.inflight[base + 3] = 0
