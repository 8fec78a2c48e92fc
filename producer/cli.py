"""``pcq produce``: push a run of items onto the Redis list and print its tally."""

from __future__ import annotations

import json
import signal
import socket
import sys
import threading
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer
from rich.console import Console as RichConsole
from rich.table import Table

from pcq.core.cli.options import (
    LedgerOption,
    QueueOption,
    RedisUrlOption,
    checked_ledger,
    route_signals,
)
from pcq.core.console import Console
from pcq.core.errors import PcqError, UsageProblem
from pcq.core.names import read_names_file
from pcq.core.redis_common.settings import RedisSettings
from pcq.core.rq_jobs.producer import run_rq_producer
from pcq.producer.run import bodies, run_producer

__all__ = ["produce", "register", "render_tally"]


def render_tally(tally: dict[str, Any], stream: TextIO) -> None:
    """Print the tally as a Rich table: items per consumer, then the totals."""
    title = f"run {tally['run']} on queue {tally['queue']}"
    table = Table(title=title, min_width=len(title) + 4)
    table.add_column("consumer")
    table.add_column("items", justify="right")
    for consumer, count in tally["per_consumer"].items():
        table.add_row(consumer, str(count))
    table.add_section()
    for key in ("produced", "consumed", "lost", "duplicates", "redelivered", "dead_letters"):
        table.add_row(key.replace("_", " "), str(tally[key]))
    table.add_row("seconds", f"{tally['seconds']:.3f}")
    table.add_row("items/s", f"{tally['items_per_second']:.1f}")
    RichConsole(file=stream, highlight=False).print(table)


def produce(
    items: Annotated[
        int | None,
        typer.Option("--items", min=0, help="Generate N names (env PCQ_ITEMS; default: the seed's 14)."),
    ] = None,
    names_file: Annotated[
        Path | None,
        typer.Option("--names-file", dir_okay=False, help="Read names from PATH, one per line."),
    ] = None,
    batch: Annotated[
        int | None, typer.Option("--batch", help="Items per Redis round trip (env PCQ_BATCH; 1).")
    ] = None,
    queue: QueueOption = None,
    redis_url: RedisUrlOption = None,
    high_water: Annotated[
        int | None,
        typer.Option("--high-water", help="Wait while the queue is this long (env PCQ_HIGH_WATER; 10000)."),
    ] = None,
    timeout: Annotated[
        float,
        typer.Option("--timeout", min=0, help="Longest wait for the tally, seconds (0: do not wait)."),
    ] = 600.0,
    as_json: Annotated[
        bool, typer.Option("--json", help="One JSON tally on stdout; demo lines go to stderr.")
    ] = False,
    via: Annotated[
        str, typer.Option("--via", help="list: the reliable Redis list; rq: one RQ job per item.")
    ] = "list",
    ledger: LedgerOption = None,
) -> None:
    """Push items onto the Redis list, then print the run's tally read back from Redis."""
    if items is not None and names_file is not None:
        raise UsageProblem("--items and --names-file are mutually exclusive")
    if via not in ("list", "rq"):
        raise typer.BadParameter(f"{via!r} is not one of 'list', 'rq'", param_hint="'--via'")
    if ledger is not None and via != "list":
        raise UsageProblem("--ledger records list runs only (RQ keeps its own registries)")
    settings = RedisSettings.from_env().with_overrides(
        url=redis_url, queue=queue, batch=batch, high_water=high_water, items=items
    )
    audit = checked_ledger(ledger)
    names = read_names_file(names_file) if names_file is not None else None
    texts = bodies(settings.items, names)
    out = sys.stderr if as_json else sys.stdout
    console = Console(stream=out, host=socket.gethostname())
    halt = threading.Event()
    received = route_signals(halt)
    if via == "list":
        tally = run_producer(settings, texts, console, timeout=timeout, stop=halt, ledger=audit)
    else:
        tally = run_rq_producer(settings, texts, console, timeout=timeout, stop=halt)
    if as_json:
        sys.stdout.write(json.dumps(tally) + "\n")
        sys.stdout.flush()
    elif timeout > 0:
        render_tally(tally, sys.stdout)
    else:
        print(f"produced {tally['produced']} item(s) as run {tally['run']} (not waiting)")
    if received:
        print(f"pcq: interrupted: {tally['lost']} item(s) not yet accounted for", file=sys.stderr)
        raise typer.Exit(130 if signal.SIGINT in received else 143)
    if timeout > 0 and not tally["complete"]:
        raise PcqError(f"timed out after {timeout:g}s: {tally['lost']} item(s) not yet accounted for")


def register(app: typer.Typer) -> None:
    """Add ``pcq produce`` to the CLI."""
    app.command("produce")(produce)
