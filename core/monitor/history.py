"""What a long-lived viewer remembers between snapshots: :class:`ViewHistory`.

A single :func:`~pcq.core.monitor.view.read_view` is a moment. The dashboard
adds two things that need memory, both kept here (no Redis):

* the chart's series -- ``(time, queue length, items/s)`` for the last
  ``minutes``; items/s is sampled the way ``pcq watch`` does it, from the growth
  of ``acked_total`` over 10 s (so consumers that died meanwhile still count),
  falling back to the live consumers' own rates when the ACL user may not read
  the runs;
* consumers that left the registry. A consumer disappears from the view when
  it deregisters (orderly stop) or when a reaper requeued its items after its
  heartbeat expired (it died). The two are told apart by its last heartbeat:
  a reaper cannot take a consumer before its heartbeat is ``heartbeat_ttl``
  old, so one gone sooner stopped; one that was already dead, or whose last
  beat is by now older than the TTL, died. Either stays on show, as
  ``stopped`` or ``dead``, for ``keep`` seconds. A dead consumer keeps the
  acknowledgement count its last heartbeat carried.
"""

from __future__ import annotations

from collections import deque
from typing import Any

from pcq.core.redis_list.rates import RateWindow

__all__ = ["ViewHistory"]


class ViewHistory:
    """Series and departed consumers over successive views of one queue."""

    def __init__(self, heartbeat_ttl: float, minutes: float = 5.0, keep: float = 300.0) -> None:
        self.heartbeat_ttl = heartbeat_ttl
        self.span = minutes * 60
        self.keep = keep
        self.series: deque[tuple[float, int, float | None]] = deque()
        self._rates = RateWindow()
        self._seen: dict[str, tuple[float, dict[str, Any]]] = {}  # id -> (seen at, consumer)
        self._gone: dict[str, dict[str, Any]] = {}  # id -> its tile, state stopped/dead

    def add(self, view: dict[str, Any]) -> dict[str, Any]:
        """Take ``view`` in; return it with ``items_per_second_window``, ``series`` and
        the departed consumers appended to ``consumers``."""
        at = view["at"]
        rate = self._rate(view)
        self.series.append((at, view["length"], rate))
        while self.series and self.series[0][0] < at - self.span:
            self.series.popleft()
        view["items_per_second_window"] = rate
        view["series"] = [list(point) for point in self.series]
        view["consumers"] = view["consumers"] + self._departed(view["consumers"], at)
        return view

    def _rate(self, view: dict[str, Any]) -> float | None:
        total = view.get("acked_total")
        if total is None:  # the runs are not readable: the live consumers' own rates
            return view.get("items_per_second")
        return self._rates.add(view["at"], int(total))

    def _departed(self, present: list[dict[str, Any]], at: float) -> list[dict[str, Any]]:
        ids = {c["id"] for c in present}
        for gone_id in [i for i in self._seen if i not in ids]:
            seen_at, last = self._seen.pop(gone_id)
            age = last.get("heartbeat_age")
            died = not last["alive"] or age is None or age + (at - seen_at) >= self.heartbeat_ttl
            state = "dead" if died else "stopped"
            self._gone[gone_id] = {**last, "alive": False, "state": state, "in_flight": 0,
                                   "heartbeat_age": None, "rate": None, "left_at": at}  # fmt: skip
        for c in present:
            before = self._seen.get(c["id"])
            if c["acked"] is None and before is not None:  # expired beat: its last count
                c["acked"] = before[1]["acked"]
            self._seen[c["id"]] = (at, c)
            self._gone.pop(c["id"], None)  # came back (a restarted process with the same id)
        for old in [i for i, c in self._gone.items() if c["left_at"] < at - self.keep]:
            del self._gone[old]
        return sorted(self._gone.values(), key=lambda c: c["id"])
