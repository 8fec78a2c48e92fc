"""The chaos loop shared by the reliability tests: SIGKILL a random victim every 1-3 s.

The RNG is seeded (``PCQ_CHAOS_SEED``, default 6), so a failing run can be
replayed with the same intervals and the same choice of victims (the victims'
pids differ from run to run, their positions in the sorted list do not).
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import psutil

__all__ = ["ChaosLog", "chaos_rng", "kill_loop", "live_pids"]

INTERVAL = (1.0, 3.0)


def chaos_rng() -> random.Random:
    """The seeded RNG of a chaos test."""
    return random.Random(int(os.environ.get("PCQ_CHAOS_SEED", "6")))


@dataclass
class ChaosLog:
    """What the loop did: victims killed (pid, seconds into the run)."""

    kills: list[tuple[int, float]] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.kills)


def live_pids(pids: Sequence[int]) -> list[int]:
    """The pids in ``pids`` that are still running (not zombies)."""
    alive = []
    for pid in pids:
        try:
            if psutil.Process(pid).status() != psutil.STATUS_ZOMBIE:
                alive.append(pid)
        except psutil.NoSuchProcess:
            pass
    return sorted(alive)


def kill_loop(
    candidates: Callable[[], Sequence[int]],
    *,
    kills: int,
    rng: random.Random,
    finished: Callable[[float], bool],
    deadline: float,
    interval: tuple[float, float] = INTERVAL,
) -> ChaosLog:
    """SIGKILL a random live candidate every ``interval`` seconds, ``kills`` times.

    Args:
        candidates: Current victim pids (e.g. the run's live consumers).
        kills: How many to kill; the loop stops after that many.
        rng: Seeded RNG: picks the intervals and the victims.
        finished: ``finished(timeout)`` waits up to ``timeout`` seconds for the
            run to end and says whether it has (e.g. ``Popen.wait``): the pause
            between two kills is that wait, so an early end is noticed at once.
        deadline: ``time.monotonic()`` value after which the loop gives up.
    """
    log = ChaosLog()
    started = time.monotonic()
    while len(log) < kills and time.monotonic() < deadline:
        if finished(rng.uniform(*interval)):
            break
        pool = live_pids(candidates())
        if not pool:
            continue
        victim = rng.choice(pool)
        try:
            os.kill(victim, signal.SIGKILL)
        except ProcessLookupError:
            continue
        log.kills.append((victim, round(time.monotonic() - started, 2)))
    return log


def popen_finished(proc: subprocess.Popen[str]) -> Callable[[float], bool]:
    """A ``finished`` callback for :func:`kill_loop` that waits on a subprocess."""

    def finished(timeout: float) -> bool:
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return False
        return True

    return finished
