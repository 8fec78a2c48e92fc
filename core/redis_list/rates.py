"""Items/s of a growing counter, from (time, count) samples over the last ``span`` seconds.

Two readers keep one: a consumer's heartbeat (its acknowledgement count, so
``pcq status`` reads a rate in one look: :mod:`pcq.core.redis_list.consumer`)
and ``pcq watch`` (the queue's acked bitmaps and sets, summed:
:func:`pcq.core.redis_list.status.acked_total`). No Redis here: the CLI imports
this module at start-up.
"""

from __future__ import annotations

from collections import deque

__all__ = ["RateWindow"]

SPAN_SECONDS = 10.0


class RateWindow:
    """The samples of a growing counter that are at most ``span`` seconds older than the newest.

    The oldest sample kept is the newest one's reference, so a rate spans up to
    ``span`` seconds (less while fewer samples exist).
    """

    def __init__(self, span: float = SPAN_SECONDS) -> None:
        self.span = span
        self.samples: deque[tuple[float, int]] = deque()

    def add(self, at: float, count: int) -> float | None:
        """Record ``count`` at ``at``; return the rate over the window (None until it spans time)."""
        samples = self.samples
        samples.append((at, count))
        while len(samples) > 1 and samples[0][0] < at - self.span:
            samples.popleft()
        first_at, first = samples[0]
        if at <= first_at:
            return None
        return round(max(0, count - first) / (at - first_at), 1)

    @property
    def oldest(self) -> tuple[float, int]:
        """The window's first sample ``(time, count)`` (call :meth:`add` first)."""
        return self.samples[0]
