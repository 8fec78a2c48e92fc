"""The workload of a comparison: what each item carries and what handling it costs.

One :class:`Workload` is run unchanged through every transport, so the only
thing that differs between two rows of the report is the queue in between.

``--work`` takes one of:

* ``noop``      -- the handler returns at once: the run measures the transport;
* ``sleep:MS``  -- the handler sleeps MS milliseconds: I/O-bound work, which
  scales with the number of consumers even on few cores;
* ``cpu:MS``    -- the handler burns MS milliseconds of *CPU time* (measured
  with ``time.thread_time``, so a consumer that is descheduled does not get
  the time for free): CPU-bound work, which scales only up to the core count.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import Any

from pcq.core.errors import UsageProblem
from pcq.core.names import generated_name
from pcq.core.transport import Item

__all__ = [
    "MAX_PAYLOAD_BYTES", "TRANSPORTS", "Work", "Workload", "make_body", "make_work",
    "parse_consumers", "parse_transports", "parse_work", "stamping",
]

TRANSPORTS = ("local", "redis", "rq")
MAX_PAYLOAD_BYTES = 60_000  # below the local datagram and the Redis payload caps (64 KiB)
MAX_CONSUMERS = 64
MAX_WORK_MS = 60_000.0


@dataclass(frozen=True)
class Work:
    """A parsed ``--work`` value: ``kind`` is noop, sleep or cpu; ``ms`` per item."""

    kind: str
    ms: float = 0.0

    def __str__(self) -> str:
        return "noop" if self.kind == "noop" else f"{self.kind}:{self.ms:g}"


def parse_work(text: str) -> Work:
    """Parse ``noop``, ``sleep:MS`` or ``cpu:MS`` (a usage error otherwise)."""
    raw = text.strip().lower()
    if raw == "noop":
        return Work("noop")
    kind, sep, value = raw.partition(":")
    if kind not in ("sleep", "cpu") or not sep:
        raise UsageProblem(f"--work must be noop, sleep:MS or cpu:MS, not {text!r}")
    try:
        ms = float(value)
    except ValueError:
        raise UsageProblem(f"--work {text!r}: MS must be a number of milliseconds") from None
    if not math.isfinite(ms) or not 0 <= ms <= MAX_WORK_MS:
        raise UsageProblem(f"--work {text!r}: MS must be between 0 and {MAX_WORK_MS:g}")
    return Work(kind, ms)


def parse_consumers(text: str) -> tuple[int, ...]:
    """Parse ``1,2,4,8`` into sorted distinct counts, each 1..MAX_CONSUMERS."""
    counts: set[int] = set()
    for part in text.split(","):
        part = part.strip()
        try:
            n = int(part)
        except ValueError:
            raise UsageProblem(f"--consumers must be a list like 1,2,4,8, not {text!r}") from None
        if not 1 <= n <= MAX_CONSUMERS:
            raise UsageProblem(f"--consumers: {n} is out of range (1 to {MAX_CONSUMERS})")
        counts.add(n)
    return tuple(sorted(counts))


def parse_transports(text: str) -> tuple[str, ...]:
    """Parse ``local,redis,rq`` (any subset, any order; kept in canonical order)."""
    names = {part.strip().lower() for part in text.split(",") if part.strip()}
    unknown = sorted(names - set(TRANSPORTS))
    if unknown or not names:
        what = ", ".join(unknown) if unknown else "(none)"
        raise UsageProblem(f"--transports: unknown transport {what} (choose from {', '.join(TRANSPORTS)})")
    return tuple(t for t in TRANSPORTS if t in names)


@dataclass(frozen=True)
class Workload:
    """Everything that defines one comparison's items (the same for every transport)."""

    items: int
    payload_bytes: int
    work: Work
    batch: int = 1

    def __post_init__(self) -> None:
        if self.items < 1:
            raise UsageProblem(f"--items must be >= 1, got {self.items}")
        if not 1 <= self.payload_bytes <= MAX_PAYLOAD_BYTES:
            raise UsageProblem(f"--payload-bytes must be between 1 and {MAX_PAYLOAD_BYTES}")
        if not 1 <= self.batch <= 1000:
            raise UsageProblem(f"--batch must be between 1 and 1000, got {self.batch}")

    @property
    def title(self) -> str:
        """One line naming the workload (plot titles, report headings)."""
        return (
            f"{self.items} items, work {self.work}, {self.payload_bytes} B payload, batch {self.batch}"
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["work"] = str(self.work)
        return data


def make_body(index: int, size: int) -> str:
    """Body of item ``index``: a seed name and its number, padded/cut to ``size`` bytes (ASCII)."""
    name = generated_name(index)
    return name[:size] if len(name) >= size else name + "." * (size - len(name))


def _noop(item: Item) -> None:
    return None


@functools.lru_cache(maxsize=8)
def make_work(spec: str) -> Callable[[Item], None]:
    """The handler for ``spec`` (a ``str(Work)``); cached: RQ jobs look it up per item."""
    work = parse_work(spec)
    seconds = work.ms / 1000.0
    if work.kind == "noop" or seconds == 0:
        return _noop
    if work.kind == "sleep":

        def sleep(item: Item) -> None:
            time.sleep(seconds)

        return sleep

    def burn(item: Item) -> None:
        # Spin on this thread's CPU clock: being descheduled does not count as work.
        end = time.thread_time() + seconds
        x = 0
        while time.thread_time() < end:
            for i in range(200):
                x += i * i

    return burn


Stamp = tuple[str, float, float]  # (item id, produced_at, handled_at)


def stamping(spec: str) -> tuple[Callable[[Item], None], list[Stamp]]:
    """The handler for ``spec`` that also stamps each item when done, and the list of stamps."""
    work, clock = make_work(spec), time.time
    stamps: list[Stamp] = []

    def handle(item: Item) -> None:
        work(item)
        stamps.append((item.id, item.produced_at, clock()))

    return handle, stamps
