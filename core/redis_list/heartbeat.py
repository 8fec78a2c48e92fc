"""The background thread that keeps a role visibly alive: :class:`Heartbeat`.

A consumer beats (its ``hb:<consumer>`` key, carrying its acknowledgement
count and rate, and its registration) and reaps (``reap.lua``: the items of
consumers whose heartbeat expired go back to the queue); a producer only beats
(its run's liveness key, which keeps the run open for ``consume --drain``).
A thread, so a handler that sleeps or a producer waiting under backpressure
does not stop it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

from redis.exceptions import RedisError

from pcq.core.errors import PcqError

__all__ = ["Heartbeat"]


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``every`` seconds (and ``reap`` every ``reap_every``)."""

    def __init__(
        self,
        every: float,
        beat: Callable[[], object],
        reap: Callable[[], object] | None = None,
        reap_every: float = 0.0,
    ) -> None:
        super().__init__(name="pcq-heartbeat", daemon=True)
        self.every = every
        self.beat = beat
        self.reap = reap
        self.reap_every = reap_every
        self._halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        next_reap = time.monotonic()
        while not self._halt.wait(self.every):
            try:
                self.beat()
                if self.reap is not None and time.monotonic() >= next_reap:
                    next_reap = time.monotonic() + self.reap_every
                    self.reap()
            except (RedisError, PcqError):
                # Outages are reported by the main thread's retries; keep beating.
                self.errors += 1

    def stop(self) -> None:
        """Stop and join (bounded: one beat plus one redis-py retry cycle)."""
        self._halt.set()
        self.join(timeout=max(2.0, self.every * 2))
