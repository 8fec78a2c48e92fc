"""Signals and helper processes around the local run's children.

The terminal sends Ctrl-C to the whole process group; only the parent decides
what it means. So a child is started with SIGINT blocked (:func:`sigint_blocked`),
and its first act (:func:`ignore_sigint`) is to ignore the signal, then unblock
it: a Ctrl-C can never hit a child half-started.
"""

from __future__ import annotations

import signal
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

__all__ = ["ignore_sigint", "sigint_blocked", "stop_helpers"]


def ignore_sigint() -> None:
    """A child's first act: ignore Ctrl-C (the parent's to handle), then unblock it.

    SIGINT was blocked while the child was started, so a pending SIGINT is
    dropped here, not raised.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})


@contextmanager
def sigint_blocked() -> Iterator[None]:
    """Block SIGINT while a child starts: it inherits the mask and ignores the signal
    before unblocking; the parent gets the signal when the block lifts."""
    old = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
    try:
        yield
    finally:
        signal.pthread_sigmask(signal.SIG_SETMASK, old)


def stop_helpers() -> None:
    """Stop multiprocessing's forkserver and resource-tracker processes, if any.

    They outlive the run and exit on their own when this process exits, but
    then nobody waits for them: where PID 1 does not reap orphans (some
    containers) they linger as zombies. Call this just before exiting.
    """
    import gc
    from multiprocessing import forkserver, resource_tracker

    helpers: list[Any] = [forkserver._forkserver, resource_tracker._resource_tracker]
    try:  # neither started (start method fork): skip the collection, ~10 ms of a big heap
        server, tracker = helpers
        if server._forkserver_pid is None and tracker._pid is None:
            return
    except AttributeError:  # another Python's internals: collect and stop, as below
        pass
    gc.collect()  # semaphores unregister from the tracker when collected
    for helper in helpers:
        try:
            helper._stop()
        except (OSError, AttributeError, ChildProcessError):
            pass
