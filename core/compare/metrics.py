"""What one run measured, and how the figures are computed.

Definitions (the same for every transport, documented in README "Compare"):

* **throughput** -- distinct items handled / (last item handled - first item
  produced), in items/s. Consumers are started and registered *before* the
  first item is produced where the transport allows it (Redis list, RQ), so
  start-up costs are not charged to the queue.
* **latency** -- per item, the wall-clock time from ``produced_at`` (stamped by
  the producer when the item is made) to the moment its handler returned;
  p50/p95/p99/max over all items, in milliseconds.
* **fairness** -- Jain's index of the items per consumer: 1.0 when every
  consumer handled the same number, ``1/n`` when one did everything.
* **redelivered** -- deliveries beyond the first (handler failures, dead
  consumers); **duplicates** -- items handled more than once.
* **peak RSS** -- the largest resident set size any consumer process (or, for
  RQ, its work horse) reached, sampled with psutil every 50 ms (100 ms for RQ).
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import TYPE_CHECKING, Any

import psutil

if TYPE_CHECKING:
    from typing_extensions import Self

__all__ = ["RssSampler", "RunMetrics", "Ticker", "fairness", "latency_ms", "percentile", "summarize"]

SAMPLE_EVERY = 0.05


def percentile(sorted_values: Sequence[float], q: float) -> float:
    """The ``q``-th percentile (0-100) of already sorted values, linear interpolation."""
    if not sorted_values:
        return math.nan
    pos = (len(sorted_values) - 1) * q / 100.0
    lo = math.floor(pos)
    hi = min(lo + 1, len(sorted_values) - 1)
    return sorted_values[lo] + (sorted_values[hi] - sorted_values[lo]) * (pos - lo)


def latency_ms(seconds: Iterable[float]) -> dict[str, float]:
    """p50/p95/p99/max of latencies given in seconds, in milliseconds (rounded to µs)."""
    ordered = sorted(seconds)
    out = {f"p{q}": percentile(ordered, q) for q in (50, 95, 99)}
    out["max"] = ordered[-1] if ordered else math.nan
    return {k: round(v * 1000.0, 3) for k, v in out.items()}


def fairness(counts: Iterable[int]) -> float:
    """Jain's fairness index of per-consumer counts (1.0 = perfectly even)."""
    xs = [float(c) for c in counts]
    total = sum(xs)
    if not xs or total == 0:
        return 0.0
    return round(total * total / (len(xs) * sum(x * x for x in xs)), 4)


@dataclass
class RunMetrics:
    """One measured run: one transport, one consumer count, one repetition."""

    transport: str
    consumers: int
    repeat: int
    items: int
    consumed: int
    lost: int
    duplicates: int
    redelivered: int
    dead_letters: int
    seconds: float
    wall_seconds: float
    items_per_second: float
    latency_ms: dict[str, float]
    per_consumer: dict[str, int]
    fairness: float
    peak_rss_mib: float | None
    notes: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["latency_ms"] = {k: _finite(v) for k, v in self.latency_ms.items()}
        return data

    @classmethod
    def build(
        cls,
        *,
        transport: str,
        consumers: int,
        repeat: int,
        items: int,
        stamps: Sequence[tuple[float, float]],
        per_consumer: dict[str, int],
        wall_seconds: float,
        peak_rss: int | None,
        lost: int,
        duplicates: int = 0,
        redelivered: int = 0,
        dead_letters: int = 0,
        notes: list[str] | None = None,
        consumed: int | None = None,
    ) -> RunMetrics:
        """Compute the figures from ``stamps``: one ``(produced_at, handled_at)`` per item.

        ``consumed`` defaults to ``len(stamps)``; pass the transport's own count when it
        is the authority (a consumer that died may not have reported its stamps).
        """
        consumed = len(stamps) if consumed is None else consumed
        seconds = 0.0
        if stamps:
            seconds = max(h for _, h in stamps) - min(p for p, _ in stamps)
        return cls(
            transport=transport,
            consumers=consumers,
            repeat=repeat,
            items=items,
            consumed=consumed,
            lost=lost,
            duplicates=duplicates,
            redelivered=redelivered,
            dead_letters=dead_letters,
            seconds=round(seconds, 6),
            wall_seconds=round(wall_seconds, 3),
            items_per_second=round(len(stamps) / seconds, 1) if seconds > 0 else 0.0,
            latency_ms=latency_ms(max(0.0, h - p) for p, h in stamps),
            per_consumer=dict(sorted(per_consumer.items())),
            fairness=fairness(per_consumer.values()),
            peak_rss_mib=None if peak_rss is None else round(peak_rss / 2**20, 1),
            notes=notes or [],
        )


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None


def _median(values: list[float]) -> float:
    return percentile(sorted(values), 50)


def summarize(runs: Sequence[RunMetrics]) -> list[dict[str, Any]]:
    """One row per (transport, consumers): medians over repetitions, worst-case counts."""
    groups: dict[tuple[str, int], list[RunMetrics]] = {}
    for run in runs:
        groups.setdefault((run.transport, run.consumers), []).append(run)
    rows = []
    for (transport, consumers), group in groups.items():
        rss = [r.peak_rss_mib for r in group if r.peak_rss_mib is not None]
        rows.append({
            "transport": transport,
            "consumers": consumers,
            "repeats": len(group),
            "items_per_second": round(_median([r.items_per_second for r in group]), 1),
            "latency_ms": {
                q: _finite(round(_median([r.latency_ms[q] for r in group]), 3))
                for q in ("p50", "p95", "p99")
            },
            "fairness": round(_median([r.fairness for r in group]), 4),
            "redelivered": sum(r.redelivered for r in group),
            "lost": sum(r.lost for r in group),
            "peak_rss_mib": max(rss) if rss else None,
        })
    return rows


class Ticker:
    """Calls ``tick()`` every ``every`` seconds in a thread while the block runs, once more at its end."""

    def __init__(self, tick: Callable[[], None], every: float = 0.1, name: str = "pcq-tick") -> None:
        self._tick, self._every = tick, every
        self._halt = threading.Event()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)

    def __enter__(self) -> Self:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._halt.set()
        self._thread.join(5.0)
        self._tick()  # one last time (short runs may end between two ticks)

    def _run(self) -> None:
        while not self._halt.wait(self._every):
            self._tick()


class RssSampler(Ticker):
    """Samples the RSS of a changing set of processes (and their children) in a thread.

    ``pids()`` is called at every sample, so consumers that start late or are
    replaced are picked up. :attr:`peak` is the largest single-process RSS seen.
    """

    def __init__(
        self, pids: Callable[[], Iterable[int]], every: float = SAMPLE_EVERY, children: bool = False
    ) -> None:
        super().__init__(self.sample, every, name="pcq-rss")
        self._pids = pids
        # Listing children scans all of /proc (~2 ms a process): only where they exist (RQ).
        self._children = children
        self.peak: int | None = None

    def sample(self) -> None:
        """Take one sample now."""
        for pid in list(self._pids()):
            try:
                proc = psutil.Process(pid)
                family = [proc, *proc.children(recursive=True)] if self._children else [proc]
            except (psutil.Error, ProcessLookupError):
                continue
            for member in family:
                try:
                    rss = member.memory_info().rss
                except (psutil.Error, ProcessLookupError):
                    continue
                if self.peak is None or rss > self.peak:
                    self.peak = rss
