"""The seed's basic ``os.fork`` demo, corrected.

The parent forks one child per request. The child says hello and leaves with
``os._exit``; the parent says hello too, then *reaps* the child with
``os.waitpid`` and reports how it ended. The seed never waited for its
children, so every one of them stayed in the process table as a zombie
(``<defunct>`` in ``ps``) until the parent itself exited.

Console lines keep the seed's wording::

    Hello from parent 87800 87802
    Hello from child 87802
    Child 87802 exited with status 0

The parent and child lines race (two processes write at once); the status
line always comes last because the parent prints it only after the child is
gone.
"""

from __future__ import annotations

import os
import signal
import sys
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass
from typing import TextIO

from pcq.core.console import Console
from pcq.core.errors import UsageProblem

__all__ = [
    "ChildResult",
    "Forker",
    "fork_available",
    "require_fork",
    "results_json",
    "run_count",
    "run_interactive",
]


@dataclass(frozen=True, slots=True)
class ChildResult:
    """How one child ended.

    Attributes:
        pid: The child's process id.
        exit_code: Its exit status, or ``None`` if a signal killed it.
        signal: The number of the signal that killed it, else ``None``.
    """

    pid: int
    exit_code: int | None
    signal: int | None

    def as_dict(self) -> dict[str, int | None]:
        """JSON-ready form."""
        return asdict(self)

    def describe(self) -> str:
        """The parent's status line for this child."""
        if self.signal is not None:
            try:
                name = signal.Signals(self.signal).name
            except ValueError:
                name = f"signal {self.signal}"
            return f"Child {self.pid} was killed by {name} ({self.signal})"
        return f"Child {self.pid} exited with status {self.exit_code}"


def fork_available() -> bool:
    """True where the platform has ``os.fork`` (not on Windows)."""
    return hasattr(os, "fork")


def require_fork() -> None:
    """Raise a one-line usage error when ``os.fork`` does not exist here."""
    if not fork_available():
        raise UsageProblem(
            "os.fork is not available on this platform; `pcq local --start-method spawn` "
            "shows processes without fork"
        )


def _child(console: Console) -> None:
    """Child side: say hello, then leave at once. Never returns."""
    code = 1
    try:
        console.line(f"Hello from child {os.getpid()}")
        code = 0
    finally:
        # os._exit, not sys.exit: sys.exit raises SystemExit, which would unwind
        # into the parent's code path in this copy of the process -- back into
        # its fork loop (the seed's bug: children forking grandchildren), through
        # its `finally` blocks, atexit handlers, and a flush of stdio buffers the
        # parent will flush again. os._exit ends the process right here. The
        # `finally` also covers a Ctrl-C that reaches the child mid-print.
        os._exit(code)


@contextmanager
def _sigint_blocked() -> Iterator[Callable[[], None]]:
    """Hold Ctrl-C (SIGINT) back for a few lines; yield a function that restores it.

    Between ``os.fork()`` returning and the parent recording the new pid, a
    KeyboardInterrupt would leave a child nobody knows to wait for. A blocked
    signal stays pending and is delivered (as KeyboardInterrupt) once unblocked.
    """
    if not hasattr(signal, "pthread_sigmask"):  # pragma: no cover - not on POSIX
        yield lambda: None
        return
    before = signal.pthread_sigmask(signal.SIG_BLOCK, [])  # read the mask, change nothing

    def restore() -> None:
        signal.pthread_sigmask(signal.SIG_SETMASK, before)

    try:
        signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT})
        yield restore
    finally:
        restore()


class Forker:
    """Fork children and reap every one of them.

    Call :meth:`reap_all` in a ``finally`` block: whatever ends the run
    (normal end, EOF, Ctrl-C or an error), it waits for every child still
    running, so none is left as a zombie.

    Attributes:
        forked: How many children were forked.
        pending: Children forked and not reaped yet.
        results: How each reaped child ended, in reaping order.
    """

    def __init__(self, console: Console, on_reaped: Callable[[ChildResult], None] | None = None):
        self.console = console
        self.on_reaped = on_reaped
        self.forked = 0
        self.pending: list[int] = []
        self.results: list[ChildResult] = []

    def fork(self) -> int:
        """Fork one child (which says hello and exits); return its pid."""
        # Flush before forking: the child gets a copy of any unwritten buffered
        # output, and its own flush would print that text a second time.
        for stream in (self.console.stream, sys.stdout, sys.stderr):
            if stream is not None:  # None: the stream was closed when Python started
                stream.flush()
        with _sigint_blocked() as unblock:
            pid = os.fork()
            if pid == 0:  # pragma: no cover - runs in the child, never returns
                unblock()
                _child(self.console)
            self.pending.append(pid)
            self.forked += 1
        self.console.line(f"Hello from parent {os.getpid()} {pid}")
        return pid

    def reap(self, pid: int) -> ChildResult:
        """Wait for ``pid`` to end, record and print how it ended."""
        _, status = os.waitpid(pid, 0)
        # Reaped: the kernel has dropped the child's process-table entry.
        self.pending.remove(pid)
        code = os.waitstatus_to_exitcode(status)
        result = ChildResult(pid, code if code >= 0 else None, -code if code < 0 else None)
        self.results.append(result)
        if self.on_reaped is not None:
            self.on_reaped(result)
        self.console.line(result.describe())
        return result

    def reap_all(self) -> None:
        """Reap every child not reaped yet, even if Ctrl-C arrives meanwhile."""
        interrupted: KeyboardInterrupt | None = None
        while self.pending:
            try:
                self.reap(self.pending[0])
            except KeyboardInterrupt as exc:  # keep reaping, re-raise afterwards
                interrupted = exc
            except ChildProcessError:  # already reaped (Ctrl-C right after waitpid)
                self.pending.pop(0)
        if interrupted is not None:
            raise interrupted


def run_count(count: int, forker: Forker) -> list[ChildResult]:
    """Fork ``count`` children one after another, reaping each; return how they ended."""
    return _run(range(count), forker)


def _requests(stdin: TextIO) -> Iterator[None]:
    """Yield once per line that is not ``q``; stop at ``q`` or end of input."""
    while True:
        line = stdin.readline()
        if not line or line.strip().lower() in {"q", "quit"}:
            return
        yield None


def run_interactive(stdin: TextIO, forker: Forker) -> list[ChildResult]:
    """The seed's loop: each line read forks a child; ``q`` or EOF quits."""
    return _run(_requests(stdin), forker)


def _run(requests: Iterable[object], forker: Forker) -> list[ChildResult]:
    """Fork and reap one child per request; every child is reaped, whatever ends the loop."""
    require_fork()
    try:
        for _ in requests:
            forker.reap(forker.fork())
    finally:
        forker.reap_all()
    return forker.results


def results_json(parent: int, results: list[ChildResult]) -> dict[str, object]:
    """The ``--json`` document: the parent's pid and every child's outcome."""
    return {"parent_pid": parent, "children": [r.as_dict() for r in results]}
