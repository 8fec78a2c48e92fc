"""The supervisor's safety nets, driven by deliberately broken consumers."""

from __future__ import annotations

import os
import signal
import time
from multiprocessing.process import BaseProcess
from typing import Any

from pcq.core.local.channel import MAX_MESSAGE, Channel
from pcq.core.local.run import Launcher, LocalConfig, run_local


def _steal_and_die(channel: Channel, stolen: Any) -> None:
    """Take one message off the wire and die before recording the claim.

    This is the window no shared record can see (killed between recv and the first
    store): the items are in no queue and no in-flight record, and with a
    bounded queue the slot the message used is never given back either.
    """
    channel.rx.recv(MAX_MESSAGE + 1)
    stolen.set()
    os._exit(1)


class ThievingLauncher(Launcher):
    """Consumer serial 0 is a thief; every other consumer (and replacement) is normal.

    The others start only once the thief has its message, so it always gets one.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.stolen = self.ctx.Event()

    def consumer(self, slot: int, serial: int) -> BaseProcess:
        if serial == 0:
            return self._start(_steal_and_die, (self.channel, self.stolen), "pcq-thief")
        assert self.stolen.wait(10.0)
        return super().consumer(slot, serial)


def test_items_lost_outside_any_record_are_found_and_resent() -> None:
    cfg = LocalConfig(
        producers=1, consumers=2, items=30, batch=3, max_delay=0, quiet=True, json=True,
        start_method="fork",
    )
    result = run_local(cfg, ThievingLauncher)
    assert result.exit_code == 0
    assert (result.consumed, result.lost, result.missing) == (30, 0, [])
    assert result.replacements == 1
    assert result.redelivered == 3  # exactly the stolen message, found by reconciliation


def test_a_leaked_queue_slot_does_not_stall_producers_for_good() -> None:
    """--queue-size 1: the theft also leaks the only slot; the producer would block forever."""
    cfg = LocalConfig(
        producers=1, consumers=2, items=30, batch=3, queue_size=1, max_delay=0, quiet=True,
        json=True, start_method="fork",
    )
    result = run_local(cfg, ThievingLauncher)
    assert result.exit_code == 0
    assert (result.consumed, result.lost, result.missing) == (30, 0, [])
    assert result.redelivered == 3


def _die_holding_the_console_lock(console: Any, locked: Any) -> None:
    console.lock.acquire()
    locked.set()
    os.kill(os.getpid(), signal.SIGKILL)


class LockHoldingLauncher(Launcher):
    """Consumer serial 0 dies (SIGKILL) while it holds the console lock; the others
    start only after it took the lock (else they might finish before it dies)."""

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.locked = self.ctx.Event()

    def consumer(self, slot: int, serial: int) -> BaseProcess:
        if serial == 0:
            args = (self.console, self.locked)
            return self._start(_die_holding_the_console_lock, args, "pcq-locker")
        assert self.locked.wait(10.0)
        return super().consumer(slot, serial)


def test_console_lock_held_by_a_dead_consumer_is_released() -> None:
    """Without the repair every later line would wait out Console's 1 s lock timeout."""
    cfg = LocalConfig(
        producers=1, consumers=2, items=20, max_delay=0, json=True, start_method="fork",
    )
    started = time.monotonic()
    result = run_local(cfg, LockHoldingLauncher)
    assert result.exit_code == 0
    assert (result.consumed, result.lost, result.replacements) == (20, 0, 1)
    # 20 "got" lines and more: 20+ seconds if each waited for the dead holder
    assert time.monotonic() - started < 10
