"""Console output shared by producers and consumers in several processes.

Lines keep the seed article's wording (``Starting producer => PID``,
``PID got NAME`` ...). They go through one lock so that processes never write
over each other. The lock is taken with a timeout: a process SIGKILLed while
holding it must not silence every other process for good (the supervisor
releases such a lock; until then we write unlocked rather than hang).
"""

from __future__ import annotations

import os
import sys
from typing import Any, Protocol, TextIO

LOCK_TIMEOUT = 1.0


class _Lock(Protocol):
    def acquire(self, block: bool = ..., timeout: float | None = ...) -> bool: ...
    def release(self) -> None: ...


class Console:
    """Print demo lines, optionally prefixed with a host name (the container id)."""

    def __init__(
        self,
        lock: _Lock | None = None,
        stream: TextIO | None = None,
        *,
        quiet: bool = False,
        host: str | None = None,
    ) -> None:
        self.lock = lock
        self.stream = stream
        self.quiet = quiet
        self.prefix = f"[{host}] " if host else ""

    def __getstate__(self) -> dict[str, Any]:
        # Streams do not pickle (spawn start method); children re-resolve theirs.
        state = dict(self.__dict__)
        state["stream_name"] = "stderr" if self.stream is sys.stderr else "stdout"
        state["stream"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        name = state.pop("stream_name", "stdout")
        self.__dict__.update(state)
        self.stream = sys.stderr if name == "stderr" else sys.stdout

    def line(self, text: str) -> None:
        """Write one line under the lock (``quiet`` only hides per-item lines)."""
        stream = self.stream or sys.stdout
        locked = self.lock.acquire(True, LOCK_TIMEOUT) if self.lock is not None else False
        try:
            stream.write(f"{self.prefix}{text}\n")
            stream.flush()
        finally:
            if locked and self.lock is not None:
                self.lock.release()

    # The seed's lines -------------------------------------------------------
    def starting_producer(self) -> None:
        self.line(f"Starting producer => {os.getpid()}")

    def producer_exiting(self) -> None:
        self.line(f"Producer {os.getpid()} exiting...")

    def starting_consumer(self) -> None:
        self.line(f"Starting consumer => {os.getpid()}")

    def got(self, body: str) -> None:
        if not self.quiet:
            self.line(f"{os.getpid()} got {body}")

    def consumer_exiting(self) -> None:
        self.line(f"Consumer {os.getpid()} exiting...")

    def parent_exiting(self) -> None:
        self.line("Parent process exiting...")


class DemoConsole(Console):
    """The demo's console: a reader that went away (``pcq local | head``) silences
    the lines instead of killing, one by one, every process that prints."""

    def line(self, text: str) -> None:
        """Write like :meth:`Console.line`; on a closed pipe, discard from now on."""
        try:
            super().line(text)
        except BrokenPipeError:
            discard_stream(self.stream or sys.stdout)


class QuietConsole(Console):
    """The demo console minus the per-process chatter (a comparison draws progress bars).

    Lines that report trouble (a consumer died, an item dead-lettered) still print.
    """

    def starting_producer(self) -> None: ...
    def producer_exiting(self) -> None: ...
    def starting_consumer(self) -> None: ...
    def got(self, body: str) -> None: ...
    def consumer_exiting(self) -> None: ...
    def parent_exiting(self) -> None: ...


def discard_stream(stream: TextIO) -> None:
    """Point ``stream``'s descriptor at /dev/null (this process only), so that
    neither later writes nor the flush at exit fail again."""
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, stream.fileno())
    finally:
        os.close(devnull)
