"""A consumer's acknowledgements not yet sent: :class:`AckBuffer`.

Redis acknowledgements are already per claim: ``ack`` only buffers the item,
and the buffer rides with the consumer's next claim (``claim.lua`` removes the
payloads from the processing list, adds the ids to their run's acked set and
counts them per consumer) -- or goes alone after 0.5 s
(:meth:`pcq.core.redis_list.consumer.ListConsumer.flush`).
"""

from __future__ import annotations

from typing import Any

__all__ = ["AckBuffer"]


class AckBuffer:
    """Acknowledgements not yet sent: ids and payloads, in acknowledgement order."""

    def __init__(self) -> None:
        self.ids: list[str] = []
        self.raws: list[bytes] = []
        self.since = 0.0

    def __bool__(self) -> bool:
        return bool(self.ids)

    def add(self, item_id: str, raw: bytes, now: float) -> None:
        """Buffer the acknowledgement of ``item_id`` (payload ``raw``) at ``now`` (monotonic)."""
        if not self.ids:
            self.since = now
        self.ids.append(item_id)
        self.raws.append(raw)

    def args(self, covers_all: bool) -> list[Any]:
        """The claim script's ack arguments (see ``claim.lua``).

        Args:
            covers_all: the consumer holds nothing but these items, so the
                script may drop the whole processing list instead of removing
                payloads one by one (and they need not be sent).
        """
        out: list[Any] = ["all" if covers_all else "some"]
        out += self.by_run()
        if not covers_all:
            out += self.raws
        return out

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
        self.raws = []
