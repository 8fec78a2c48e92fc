"""The distributed demo's simulated work, shared by ``pcq consume`` and RQ workers.

The default handler sleeps a random time of up to ``max_delay`` seconds
standing in for work (no sleep at all when ``max_delay`` is 0: the benchmark's
no-op), and fails on purpose for poison items -- **a body starting with
``poison`` always raises** :class:`PoisonPill`, so the item is delivered again
and, after ``max_deliveries``, dead-lettered with the reason. Tests and demos
use it to show the dead-letter path.
"""

from __future__ import annotations

import random
import time

from pcq.core.pattern import Handler
from pcq.core.transport import Item

__all__ = ["PoisonPill", "make_handler", "noop"]


class PoisonPill(Exception):
    """Raised by the demo handler for bodies starting with ``poison``."""


def noop(item: Item) -> None:
    """The benchmark's handler: does nothing (poison items still raise)."""
    if item.body.startswith("poison"):
        raise PoisonPill(f"{item.body!r} always fails")


def make_handler(max_delay: float, seed: int | None = None) -> Handler:
    """The demo handler: sleep up to ``max_delay`` s; ``poison...`` bodies raise."""
    if max_delay <= 0:
        return noop
    rng = random.Random(seed)

    def handle(item: Item) -> None:
        noop(item)
        time.sleep(rng.uniform(0, max_delay))

    return handle
