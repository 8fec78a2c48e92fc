"""Which items a local run makes, and which producer makes which.

The local transport needs every item known up front (see
:mod:`pcq.core.local`): item ``i`` is the integer ``i``, indexing the shared
state, and the supervisor rebuilds a body from the plan whenever it has to
put an item back (a dead consumer's, a crashed producer's).
"""

from __future__ import annotations

from dataclasses import dataclass

from pcq.core.names import SEED_NAMES, generated_name, seed_bodies

__all__ = ["Plan"]


@dataclass(frozen=True)
class Plan:
    """Which items exist and which producer makes which: ``ranges[p] = (start, end)``."""

    ranges: tuple[tuple[int, int], ...]
    names: tuple[str, ...] | None  # None: generated names

    @property
    def total(self) -> int:
        """How many items the run is meant to produce."""
        return self.ranges[-1][1] if self.ranges else 0

    def bodies(self, start: int, count: int) -> list[str]:
        """Bodies of items ``start .. start + count - 1``."""
        if self.names is not None:
            return list(self.names[start : start + count])
        return [generated_name(i) for i in range(start, start + count)]

    @classmethod
    def build(
        cls,
        *,
        producers: int | None = None,
        items: int | None = None,
        names: tuple[str, ...] | None = None,
    ) -> Plan:
        """Split the items across the producers (contiguous ranges).

        With neither ``items`` nor ``names``: the seed's three lists, one
        producer each (unless another producer count was asked for).
        """
        seed = seed_bodies()
        if items is None and names is None and producers in (None, len(SEED_NAMES)):
            return cls(_ranges([len(group) for group in SEED_NAMES]), seed)
        total = items if items is not None else len(names or seed)
        count = producers or len(SEED_NAMES)
        sizes = [total // count + (p < total % count) for p in range(count)]
        return cls(_ranges(sizes), None if items is not None else (names or seed))


def _ranges(sizes: list[int]) -> tuple[tuple[int, int], ...]:
    out, start = [], 0
    for size in sizes:
        out.append((start, start + size))
        start += size
    return tuple(out)
