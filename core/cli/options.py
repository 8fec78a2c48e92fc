"""Command-line plumbing shared by ``pcq produce`` and ``pcq consume``."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from pcq.core.errors import UsageProblem
from pcq.core.ledger import ledger_dir

__all__ = ["LedgerOption", "QueueOption", "RedisUrlOption", "checked_ledger", "route_signals"]

QueueOption = Annotated[str | None, typer.Option("--queue", help="Queue name (env PCQ_QUEUE; pcq).")]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="redis://user:pass@host:port/db (env REDIS_URL)."),
]

LedgerOption = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        envvar="PCQ_LEDGER",
        file_okay=False,
        help="Also record every id in append-only files in DIR, outside Redis (env PCQ_LEDGER).",
    ),
]


def checked_ledger(path: Path | None) -> Path | None:
    """The ``--ledger`` directory, created if missing; a usage error if not writable."""
    if path is None:
        return None
    try:
        return ledger_dir(path)
    except OSError as exc:
        raise UsageProblem(f"--ledger {path}: {exc.strerror or exc}") from None


def route_signals(halt: threading.Event) -> list[int]:
    """Route SIGTERM/SIGINT to ``halt``; return the list the received signals are appended to.

    Only the main thread may install handlers (an in-process caller on another
    thread keeps the defaults and stops through ``halt`` itself).
    """
    received: list[int] = []

    def handler(signum: int, _frame: object) -> None:
        received.append(signum)
        halt.set()

    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGTERM, handler)
        signal.signal(signal.SIGINT, handler)
    return received
