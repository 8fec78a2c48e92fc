"""Command-line options and plumbing shared by several ``pcq`` commands."""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from typing import Annotated

import typer

from pcq.core.errors import UsageProblem
from pcq.core.ledger import ledger_dir
from pcq.core.names import read_names_file

__all__ = [
    "LedgerOption", "NamesFileOption", "QueueOption", "RedisUrlOption", "checked_ledger",
    "names_from", "route_signals",
]

QueueOption = Annotated[str | None, typer.Option("--queue", help="Queue name (env PCQ_QUEUE; pcq).")]
RedisUrlOption = Annotated[
    str | None,
    typer.Option("--redis-url", help="redis://user:pass@host:port/db (env REDIS_URL)."),
]

NamesFileOption = Annotated[
    Path | None,
    typer.Option("--names-file", dir_okay=False, help="Read names from PATH, one per line."),
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


def names_from(items: int | None, names_file: Path | None) -> tuple[str, ...] | None:
    """The ``--names-file`` names (None without one); a usage error next to ``--items``."""
    if items is not None and names_file is not None:
        raise UsageProblem("--items and --names-file are mutually exclusive")
    return read_names_file(names_file) if names_file is not None else None


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
