"""The dashboard's one Redis reader: :class:`Feed` polls the monitoring view and hands it out.

Every ``interval`` seconds a worker thread runs ``read()`` (redis-py is
blocking: the event loop must not wait on it); the result goes through
:class:`~pcq.core.monitor.history.ViewHistory` and becomes ``latest``, and every
waiting event stream is woken. So Redis sees one reader whatever the number of
open pages, and ``/metrics`` reports the same view the pages show.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Callable
from typing import Any

import anyio.to_thread

from pcq.core.monitor.history import ViewHistory

__all__ = ["Feed"]


class Feed:
    """The latest view (``latest``, ``encoded``) and a way to wait for the next one.

    Args:
        read: One view; raises on failure (the message is shown on the page).
        history: Adds the series and departed consumers to each view.
        interval: Seconds between reads.
    """

    def __init__(self, read: Callable[[], dict[str, Any]], history: ViewHistory,
                 interval: float) -> None:  # fmt: skip
        self.read = read
        self.history = history
        self.interval = interval
        self.latest: dict[str, Any] | None = None  # the last good view
        self.error: str | None = None  # why the last read failed, if it did
        self.encoded = b""  # what the event streams send: the view or the error, as JSON
        self.version = 0
        self._changed: asyncio.Condition | None = None

    async def run(self) -> None:
        """Read forever (cancelled at shutdown)."""
        self._changed = asyncio.Condition()
        while True:
            started = time.monotonic()
            await self.tick()
            await asyncio.sleep(max(0.0, self.interval - (time.monotonic() - started)))

    async def tick(self) -> None:
        """One read, then wake the streams."""
        try:
            view = await anyio.to_thread.run_sync(self.read)
        except Exception as exc:  # noqa: BLE001 - shown on the page; the next tick retries
            self.error = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            payload: dict[str, Any] = {"error": self.error, "at": round(time.time(), 3)}
        else:
            self.latest, self.error = self.history.add(view), None
            payload = self.latest
        self.encoded = json.dumps(payload, separators=(",", ":")).encode()
        self.version += 1
        if self._changed is not None:
            async with self._changed:
                self._changed.notify_all()

    async def next_after(self, version: int) -> int:
        """Wait until a view newer than ``version`` exists; return its version."""
        if self._changed is None:
            raise RuntimeError("the feed is not running")
        async with self._changed:
            await self._changed.wait_for(lambda: self.version > version)
        return self.version
