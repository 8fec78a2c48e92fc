"""A consumer's acknowledgements not yet sent: :class:`AckBuffer`.

Redis acknowledgements are already per claim: ``ack`` only buffers the item,
and the buffer rides with the consumer's next claim (``claim.lua`` adds the
ids to their run's acked set, counts them per consumer, and drops the
envelopes they settled from the processing list) -- or goes alone after 0.5 s
(:meth:`pcq.core.redis_list.consumer.ListConsumer.flush`).
"""

from __future__ import annotations

from typing import Any

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
        """``[number of runs, run, its ids joined by ',', ...]`` (ids never contain ',')."""
        ids = self.ids
        if not ids:
            return [0]
        run = ids[0].rpartition(":")[0]
        joined = ",".join(ids)
        # Usually one run: every id starts with "<run>:" exactly when ",<run>:"
        # occurs once per id in ",<joined>" (a run has no ':', an id no ',').
        if ("," + joined).count(f",{run}:") == len(ids):
            return [1, run, joined]
        groups: dict[str, list[str]] = {}
        for item_id in ids:
            groups.setdefault(item_id.rpartition(":")[0], []).append(item_id)
        out: list[Any] = [len(groups)]
        for name, members in groups.items():
            out += (name, ",".join(members))
        return out

    def clear(self) -> None:
        """Forget the buffered acknowledgements (they were sent)."""
        self.ids = []
        self.settled = []
