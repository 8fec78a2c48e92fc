"""Command-line plumbing shared by ``pcq produce`` and ``pcq consume``."""

from __future__ import annotations

import signal
import threading
from typing import Annotated

import typer

__all__ = ["QueueOption", "RedisUrlOption", "route_signals"]

QueueOption = Annotated[str | None, typer.Option("--queue", help="Queue name (env PCQ_QUEUE; pcq).")]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="redis://user:pass@host:port/db (env REDIS_URL)."),
]


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
