"""The background thread that keeps a role visibly alive: :class:`Heartbeat`.

A consumer beats (its ``hb:<consumer>`` key, carrying its acknowledgement
count and rate, and its registration) and reaps (``reap.lua``: the items of
consumers whose heartbeat expired go back to the queue); a producer only beats
(its run's liveness key, which keeps the run open for ``consume --drain``).
A thread, so a handler that sleeps or a producer waiting under backpressure
does not stop it. A :class:`BeatListener` hears of each beat Redis
acknowledged and of the end (a consumer's health file,
:mod:`pcq.core.redis_list.health`).
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Protocol

from redis.exceptions import RedisError

from pcq.core.errors import PcqError

__all__ = ["BeatListener", "Heartbeat", "consumer_beat"]


def consumer_beat(ttl: float, now: float, acked: int, since: tuple[float, int]) -> str:
    """A consumer's heartbeat value: who, its TTL, and its acknowledgements now and
    ``since`` (~10 s ago: ``[time, count]``), so ``pcq status`` reads a rate in one look."""
    return json.dumps({"host": socket.gethostname(), "pid": os.getpid(), "ttl": ttl, "at": now,
                       "acked": acked, "since": [round(since[0], 3), since[1]]})  # fmt: skip


class BeatListener(Protocol):
    """Hears of a heartbeat's life."""

    def acknowledged(self, started: float) -> None:
        """A beat taken at wall-clock time ``started`` was written."""

    def stopped(self) -> None:
        """The heartbeat stopped: no beat will follow."""


class Heartbeat(threading.Thread):
    """Calls ``beat`` every ``every`` seconds (and ``reap`` every ``reap_every``).

    After each ``beat`` that returned True, ``listener.acknowledged(started)`` is
    called with the wall-clock time taken just before it; ``stop`` ends with
    ``listener.stopped()``.
    """

    def __init__(
        self,
        every: float,
        beat: Callable[[], bool],
        reap: Callable[[], object] | None = None,
        reap_every: float = 0.0,
        listener: BeatListener | None = None,
    ) -> None:
        super().__init__(name="pcq-heartbeat", daemon=True)
        self.every = every
        self.beat = beat
        self.reap = reap
        self.reap_every = reap_every
        self.listener = listener
        self._halt = threading.Event()
        self.errors = 0

    def run(self) -> None:
        next_reap = time.monotonic()
        while not self._halt.wait(self.every):
            try:
                started = time.time()
                written = self.beat()  # False: a consumer reaped meanwhile (not alive)
                if written and self.listener is not None and not self._halt.is_set():
                    self.listener.acknowledged(started)
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
        if self.listener is not None:
            self.listener.stopped()
